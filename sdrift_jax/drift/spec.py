""":class:`DriftSpec`: how a drift is computed, as one value that checks itself.

Everything :func:`sdrift_jax.drift_field` needs besides the point clouds, the weights and
the temperature: the normalization and form, ``T``, the cost, the self-mask, the
algorithm, whether ``tau`` is relative, and how many copies of the problem run at once
(``copies``: the seeds and groups a trainer vmaps over), so that ``algorithm='auto'``
sizes memory for the batch it will really run. The trainer, the benchmarks and the tests
pass a spec around; ``spec(x, y_pos, y_neg, tau)`` is the drift.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from sdrift_jax import solvers
from sdrift_jax.drift import field
from sdrift_jax.solvers import select

__all__ = ["DriftSpec", "NORMALIZATIONS"]

NORMALIZATIONS = field.NORMALIZATIONS


@dataclasses.dataclass(frozen=True)
class DriftSpec:
  """How a drift is computed (see :func:`sdrift_jax.drift_field` for each field).

  Attributes:
    normalization: ``'sinkhorn'``, ``'one_sided'`` or ``'two_sided'``; the alias
      ``'two_sided_joint'`` is stored as ``'two_sided'`` with ``form='joint'``.
    T: Sinkhorn half-iterations (``'sinkhorn'`` only).
    cost: a cost name or kernel alias; stored canonical (``'gaussian'`` ->
      ``'sqeuclidean'``).
    mask_self: mask the self-pairs of ``y_neg = x``.
    algorithm: ``'auto'``, ``'log'``, ``'scaling'`` or ``'blocked'``.
    relative_tau: ``tau`` in units of the batch's mean cost.
    copies: how many copies of the problem run at once (vmapped seeds and groups);
      ``'auto'`` needs the dense matrices of all of them to fit.
    form: ``'split'`` or ``'joint'``.

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
  form: str = "split"

  def __post_init__(self):
    normalization, form, T, cost = field.check_options(
        self.normalization, self.form, self.T, self.cost, self.mask_self, self.algorithm,
        self.relative_tau)
    for name, value in (("normalization", normalization), ("form", form), ("T", T),
                        ("cost", cost)):
      object.__setattr__(self, name, value)
    if isinstance(self.copies, bool) or not isinstance(self.copies, (int, np.integer)) or (
        self.copies < 1):
      raise ValueError(f"copies must be an int >= 1, got {self.copies!r}")

  @classmethod
  def from_config(cls, drift_config, copies: int = 1) -> "DriftSpec":
    """The spec of a ``config.drift`` block (``tau`` is not part of it)."""
    return cls(normalization=drift_config.normalization, T=drift_config.T,
               cost=drift_config.cost, mask_self=drift_config.mask_self,
               algorithm=drift_config.get("algorithm", "auto"),
               relative_tau=drift_config.get("relative_tau", False), copies=copies,
               form=drift_config.get("form", "split"))

  def replace(self, **changes) -> "DriftSpec":
    return dataclasses.replace(self, **changes)

  def resolve_algorithm(self, n: int, m: int, itemsize: int, weights=()) -> str:
    """The engine a call on ``n`` particles and ``m`` targets (per copy) runs
    (:func:`sdrift_jax.solvers.resolve_algorithm` with this spec's copies)."""
    return solvers.resolve_algorithm(
        self.algorithm, n, m, itemsize, copies=self.copies,
        positive=all(select.positive_weights(w) for w in weights),
        blocked_ok=field._has_blocked_path(self.normalization, self.form))  # pylint: disable=protected-access

  def _options(self):
    return dict(normalization=self.normalization, form=self.form, T=self.T, cost=self.cost,
                mask_self=self.mask_self, algorithm=self.algorithm,
                relative_tau=self.relative_tau, copies=self.copies)

  def __call__(self, x, y_pos, y_neg, tau, *, weights_x=None, weights_pos=None,
               weights_neg=None, check_finite: Optional[bool] = None):
    """The drift ``[N, d]`` (:func:`sdrift_jax.drift_field` with this spec)."""
    return field.compute(x, y_pos, y_neg, tau, weights_x=weights_x, weights_pos=weights_pos,
                         weights_neg=weights_neg, check_finite=check_finite,
                         **self._options()).drift

  def with_info(self, x, y_pos, y_neg, tau, *, weights_x=None, weights_pos=None,
                weights_neg=None, check_finite: Optional[bool] = None):
    """The drift and the couplings' marginal errors, a :class:`sdrift_jax.DriftInfo`."""
    return field.compute(x, y_pos, y_neg, tau, weights_x=weights_x, weights_pos=weights_pos,
                         weights_neg=weights_neg, check_finite=check_finite, with_info=True,
                         **self._options())
