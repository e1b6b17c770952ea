"""Which engine ``algorithm='auto'`` runs, one rule for every front."""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

from sdrift_jax import validation

__all__ = ["ALGORITHMS", "DENSE_MATRICES", "memory_budget_bytes", "positive_weights",
           "resolve_algorithm"]

#: ``'auto'`` or an engine of :data:`sdrift_jax.solvers.ENGINES`.
ALGORITHMS = ("auto", "log", "scaling", "blocked")
#: Dense paths hold about this many N x M matrices at once (logits, kernels, couplings).
DENSE_MATRICES = 8


@functools.lru_cache(maxsize=None)
def memory_budget_bytes() -> int:
  """Half the memory of the default device (GPU/TPU limit, or host RAM on CPU); read once."""
  try:
    stats = jax.devices()[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    stats = {}
  total = stats.get("bytes_limit")
  if not total:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return int(total) // 2


def positive_weights(w) -> bool:
  """True when weights are known at trace time to be strictly positive (``None`` is
  uniform); traced weights are not known."""
  if w is None:
    return True
  if validation.is_traced(w):
    return False
  return bool(np.all(np.asarray(w) > 0))


def resolve_algorithm(algorithm: str, n: int, m: int, itemsize: int, *, copies: int = 1,
                      positive: bool = True, blocked_ok: bool = True) -> str:
  """The engine a call on ``n`` rows and ``m`` columns per problem runs.

  ``'auto'``: ``'blocked'`` when ``copies`` dense problems (:data:`DENSE_MATRICES`
  ``n x m`` matrices each) exceed :func:`memory_budget_bytes` and the call has a blocked
  path (``blocked_ok``); else ``'log'`` on a GPU; else ``'scaling'`` when the marginals
  are known positive (``positive``), else ``'log'``. The speeds behind the rule:
  docs/performance.md.

  Raises:
    ValueError: ``'scaling'`` asked with marginals not known positive; ``'blocked'``
      asked where the call has no blocked path.
  """
  validation.check_choice(algorithm, ALGORITHMS, "algorithm")
  if algorithm == "auto":
    dense_bytes = DENSE_MATRICES * n * m * itemsize * copies
    if blocked_ok and dense_bytes > memory_budget_bytes():
      return "blocked"
    if jax.default_backend() == "gpu":
      return "log"
    return "scaling" if positive else "log"
  if algorithm == "scaling" and not positive:
    raise ValueError("algorithm='scaling' needs strictly positive, concrete weights; "
                     "use algorithm='log' (or 'auto') with zero or traced weights")
  if algorithm == "blocked" and not blocked_ok:
    raise ValueError("algorithm='blocked' serves the split form's 'sinkhorn' and "
                     "'one_sided' couplings only (no N x M matrix is ever formed)")
  return algorithm
