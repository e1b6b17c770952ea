"""Evaluation metrics: W2^2 by exact optimal transport (POT), k-NN precision and recall,
drift diagnostics."""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist  # SciPy: a dependency of JAX

__all__ = ["knn_precision_recall", "w2_squared"]


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


def _knn_set(name: str, x, k: int) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[1] < 1:
    raise ValueError(f"{name} must have shape [n, d], got {x.shape}")
  if x.shape[0] <= k:
    raise ValueError(f"{name} needs more than k = {k} samples, got {x.shape[0]}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains NaN or inf")
  return x


def _knn_radii(x: np.ndarray, k: int, batch: int) -> np.ndarray:
  """Distance of each row of ``x`` to its k-th nearest neighbour in ``x``, itself
  excluded: entry ``k`` of the sorted distance row, whose entry 0 is the self-distance
  (exactly 0 from ``cdist``); a duplicate of the row counts as a neighbour at 0."""
  radii = np.empty(len(x))
  for i in range(0, len(x), batch):
    d = cdist(x[i:i + batch], x)
    radii[i:i + batch] = np.partition(d, k, axis=1)[:, k]
  return radii


def _share_inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                  batch: int) -> float:
  """The share of ``points`` within distance ``<= radii[j]`` of some ``centres[j]``."""
  inside = 0
  for i in range(0, len(points), batch):
    d = cdist(points[i:i + batch], centres)
    inside += int(np.count_nonzero(np.any(d <= radii[None, :], axis=1)))
  return inside / len(points)


def knn_precision_recall(real, fake, k: int = 3, batch: int = 1024) -> tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019).

  Each sample of a set is the centre of a ball whose radius is its Euclidean distance to
  its ``k``-th nearest neighbour in the same set, itself excluded; the union of the balls
  estimates that set's manifold. Precision is the share of ``fake`` samples inside the
  manifold of ``real``, recall the share of ``real`` samples inside the manifold of
  ``fake``. As in the authors' reference code, "inside" is ``distance <= radius`` (a
  sample on a ball's boundary counts), and the self-distance is excluded by taking the
  ``k``-th entry of the sorted distances whose entry 0 is the sample itself, so a
  duplicate of a sample is a neighbour at distance 0. The reference compares squared
  distances; the square root does not change the comparisons.

  Distances are computed in float64 (``scipy.spatial.distance.cdist``) in row chunks of
  ``batch``, so memory is ``O(batch * max(n_real, n_fake))``; the result does not depend
  on ``batch``.

  Args:
    real: array of shape ``[N, d]`` (held-out samples or their features), ``N > k``.
    fake: array of shape ``[M, d]`` (generated samples or their features), ``M > k``.
    k: the neighbourhood size, ``>= 1``.
    batch: rows of the distance matrix computed at once, ``>= 1``.

  Returns:
    ``(precision, recall)``, both in ``[0, 1]``.

  Raises:
    ValueError: if ``k`` or ``batch`` is not a positive integer, an input is not 2-d,
      has too few samples or non-finite values, or the feature dimensions differ.
  """
  for name, v in (("k", k), ("batch", batch)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"{name} must be a positive integer, got {v!r}")
  k, batch = int(k), int(batch)
  real = _knn_set("real", real, k)
  fake = _knn_set("fake", fake, k)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
  precision = _share_inside(fake, real, _knn_radii(real, k, batch), batch)
  recall = _share_inside(real, fake, _knn_radii(fake, k, batch), batch)
  return precision, recall
