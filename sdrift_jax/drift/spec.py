""":class:`DriftSpec`: how a drift is computed, as one value that checks itself.

Everything :func:`sdrift_jax.drift_field` needs besides the point clouds, the weights and
the temperature: the normalization, ``T``, the cost, the self-mask, the algorithm, whether
``tau`` is relative, and how many copies of the problem run at once (``copies``: the
seeds and groups a trainer vmaps over), so that ``algorithm='auto'`` sizes memory for the
batch it will really run. The trainer, the benchmarks and the tests pass a spec around;
``spec(x, y_pos, y_neg, tau)`` is the drift.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional

import jax
import numpy as np

from sdrift_jax import costs as costs_lib
from sdrift_jax import validation

NORMALIZATIONS = ("sinkhorn", "one_sided", "two_sided", "two_sided_joint")
# How the Sinkhorn half-steps run: 'log' (log domain, two passes of max/exp per
# half-step), 'scaling' (scaling domain with log-domain absorption, one matrix-vector
# product per half-step; needs strictly positive weights), 'blocked' (log domain over row
# tiles, never holding an N x M matrix; 'sinkhorn' and 'one_sided' only), 'auto'
# (blocked when the dense matrices would not fit in memory, else scaling when allowed).
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


@dataclasses.dataclass(frozen=True)
class DriftSpec:
  """How a drift is computed (see :func:`sdrift_jax.drift_field` for each field).

  Attributes:
    normalization: ``'sinkhorn'``, ``'one_sided'``, ``'two_sided'``,
      ``'two_sided_joint'``.
    T: Sinkhorn half-iterations (``'sinkhorn'`` only).
    cost: a cost name or kernel alias; stored canonical (``'gaussian'`` ->
      ``'sqeuclidean'``).
    mask_self: mask the self-pairs of ``y_neg = x``.
    algorithm: ``'auto'``, ``'log'``, ``'scaling'`` or ``'blocked'``.
    relative_tau: ``tau`` in units of the batch's mean cost.
    copies: how many copies of the problem run at once (vmapped seeds and groups);
      ``'auto'`` needs the dense matrices of all of them to fit.

  Raises:
    ValueError: on construction, naming the bad field.
  """
  normalization: str = "sinkhorn"
  T: int = 41
  cost: str = "sqeuclidean"
  mask_self: bool = False
  algorithm: str = "auto"
  relative_tau: bool = False
  copies: int = 1

  def __post_init__(self):
    validation.check_choice(self.normalization, NORMALIZATIONS, "normalization")
    object.__setattr__(self, "T", validation.check_T(self.T))
    object.__setattr__(self, "cost", costs_lib.canonical_cost(self.cost))
    validation.check_choice(self.algorithm, ALGORITHMS, "algorithm")
    for name in ("mask_self", "relative_tau"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
    if isinstance(self.copies, bool) or not isinstance(self.copies, (int, np.integer)) or (
        self.copies < 1):
      raise ValueError(f"copies must be an int >= 1, got {self.copies!r}")
    if self.algorithm == "blocked" and self.normalization not in ("sinkhorn", "one_sided"):
      raise ValueError(f"algorithm='blocked' supports normalization 'sinkhorn' and "
                       f"'one_sided', got {self.normalization!r}")

  @classmethod
  def from_config(cls, drift_config, copies: int = 1) -> "DriftSpec":
    """The spec of a ``config.drift`` block (``tau`` is not part of it)."""
    return cls(normalization=drift_config.normalization, T=drift_config.T,
               cost=drift_config.cost, mask_self=drift_config.mask_self,
               algorithm=drift_config.get("algorithm", "auto"),
               relative_tau=drift_config.get("relative_tau", False), copies=copies)

  def replace(self, **changes) -> "DriftSpec":
    return dataclasses.replace(self, **changes)

  def resolve_algorithm(self, n: int, m: int, itemsize: int, weights=()) -> str:
    """The algorithm a call on ``n`` particles and ``m`` targets (per copy) runs.

    ``'auto'``: ``'blocked'`` when ``copies`` dense problems (:data:`DENSE_MATRICES`
    ``n x m`` matrices each) exceed :func:`memory_budget_bytes` and the normalization
    has a blocked path; else, on a GPU, ``'log'``; elsewhere ``'scaling'`` when every
    weight is known positive, else ``'log'``.

    On a GPU ``'log'`` took 6-23 % less time than ``'scaling'`` in every case timed
    on an H200 (N = M from 4096 to 16384, d from 2 to 512, T = 31 and 41; equal at
    T = 1). On a CPU the scaling domain was up to 4.7x faster (N = M = 4096, d = 2,
    T = 41). Both: docs/performance.md.
    """
    positive = all(positive_weights(w) for w in weights)
    if self.algorithm == "auto":
      dense_bytes = DENSE_MATRICES * n * m * itemsize * self.copies
      if self.normalization in ("sinkhorn", "one_sided") and dense_bytes > memory_budget_bytes():
        return "blocked"
      if jax.default_backend() == "gpu":
        return "log"
      return "scaling" if positive else "log"
    if self.algorithm == "scaling" and not positive:
      raise ValueError("algorithm='scaling' needs strictly positive, concrete weights; "
                       "use algorithm='log' (or 'auto') with zero or traced weights")
    return self.algorithm

  def __call__(self, x, y_pos, y_neg, tau, *, weights_x=None, weights_pos=None,
               weights_neg=None, check_finite: Optional[bool] = None):
    """The drift ``[N, d]`` (:func:`sdrift_jax.drift_field` with this spec)."""
    from sdrift_jax.drift import field as drift  # pylint: disable=g-import-not-at-top
    return drift.apply_spec(self, x, y_pos, y_neg, tau, weights_x, weights_pos,
                            weights_neg, check_finite, with_info=False).drift

  def with_info(self, x, y_pos, y_neg, tau, *, weights_x=None, weights_pos=None,
                weights_neg=None, check_finite: Optional[bool] = None):
    """The drift and the couplings' marginal errors, a :class:`sdrift_jax.DriftInfo`."""
    from sdrift_jax.drift import field as drift  # pylint: disable=g-import-not-at-top
    return drift.apply_spec(self, x, y_pos, y_neg, tau, weights_x, weights_pos,
                            weights_neg, check_finite, with_info=True)
