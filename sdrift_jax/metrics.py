"""Evaluation metrics: W2^2 by exact optimal transport (POT), drift diagnostics."""
from __future__ import annotations

import numpy as np


def _pot():
  try:
    import ot  # POT
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("W2^2 needs POT (exact optimal transport): "
                      "pip install 'sdrift_jax[experiments]'") from e
  return ot


def w2_squared(x, y) -> float:
  """Squared 2-Wasserstein distance between two uniform empirical measures.

  Exact OT (POT's network simplex) with the cost ``|x - y|^2``, in float64.

  Args:
    x: array of shape ``[N, d]``.
    y: array of shape ``[M, d]``.

  Returns:
    ``min_pi sum pi_ij |x_i - y_j|^2`` over couplings of the uniform weights.
  """
  ot = _pot()
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f"w2_squared needs [N, d] and [M, d] arrays, got {x.shape}, {y.shape}")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    return float("nan")
  a = np.full(len(x), 1.0 / len(x))
  b = np.full(len(y), 1.0 / len(y))
  cost = ot.dist(x, y, metric="sqeuclidean")
  return float(ot.emd2(a, b, cost, numItermax=10_000_000))
