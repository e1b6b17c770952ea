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
from sdrift_jax.drift import checks
from sdrift_jax.drift import field
from sdrift_jax.drift import warm
from sdrift_jax.solvers import select

__all__ = ["DriftSpec", "NORMALIZATIONS", "controls_of"]

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
    tol: stop each coupling at this L1 column error (None: exactly ``T`` half-steps).
    anneal: ``(start, decay)`` of epsilon annealing, or None.

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
  tol: Optional[float] = None
  anneal: Optional[tuple] = None

  def __post_init__(self):
    normalization, form, T, cost = checks.check_options(
        self.normalization, self.form, self.T, self.cost, self.mask_self, self.algorithm,
        self.relative_tau)
    for name, value in (("normalization", normalization), ("form", form), ("T", T),
                        ("cost", cost)):
      object.__setattr__(self, name, value)
    warm.check_convergence(self.tol, self.anneal, T, normalization, False)
    if self.tol is not None:
      object.__setattr__(self, "tol", float(self.tol))
    if self.anneal is not None:
      object.__setattr__(self, "anneal", tuple(float(v) for v in self.anneal))
    if isinstance(self.copies, bool) or not isinstance(self.copies, (int, np.integer)) or (
        self.copies < 1):
      raise ValueError(f"copies must be an int >= 1, got {self.copies!r}")

  @classmethod
  def from_config(cls, drift_config, copies: int = 1) -> "DriftSpec":
    """The spec of a ``config.drift`` block (``tau`` is not part of it; ``tol = 0`` and
    ``anneal_start = 0`` are off; ``warm_start`` is the trainer's)."""
    return cls(normalization=drift_config.normalization, T=drift_config.T,
               cost=drift_config.cost, mask_self=drift_config.mask_self,
               algorithm=drift_config.get("algorithm", "auto"),
               relative_tau=drift_config.get("relative_tau", False), copies=copies,
               form=drift_config.get("form", "split"), **controls_of(drift_config))

  def replace(self, **changes) -> "DriftSpec":
    return dataclasses.replace(self, **changes)

  def resolve_algorithm(self, n: int, m: int, itemsize: int, weights=()) -> str:
    """The engine a call on ``n`` particles and ``m`` targets (per copy) runs
    (:func:`sdrift_jax.solvers.resolve_algorithm` with this spec's copies)."""
    return solvers.resolve_algorithm(
        self.algorithm, n, m, itemsize, copies=self.copies,
        positive=all(select.positive_weights(w) for w in weights),
        blocked_ok=checks.has_blocked_path(self.normalization, self.form))

  def _options(self):
    return dict(normalization=self.normalization, form=self.form, T=self.T, cost=self.cost,
                mask_self=self.mask_self, algorithm=self.algorithm,
                relative_tau=self.relative_tau, copies=self.copies, tol=self.tol,
                anneal=self.anneal)

  def __call__(self, x, y_pos, y_neg, tau, *, weights_x=None, weights_pos=None,
               weights_neg=None, check_finite: Optional[bool] = None, init=None):
    """The drift ``[N, d]`` (:func:`sdrift_jax.drift_field` with this spec)."""
    return field.compute(x, y_pos, y_neg, tau, weights_x=weights_x, weights_pos=weights_pos,
                         weights_neg=weights_neg, check_finite=check_finite, init=init,
                         **self._options()).drift

  def with_info(self, x, y_pos, y_neg, tau, *, weights_x=None, weights_pos=None,
                weights_neg=None, check_finite: Optional[bool] = None, init=None,
                with_state: bool = False, with_error: bool = True):
    """The drift, the couplings' marginal errors and half-steps (and with
    ``with_state`` the state for ``init=``), a :class:`sdrift_jax.DriftInfo`."""
    return field.compute(x, y_pos, y_neg, tau, weights_x=weights_x, weights_pos=weights_pos,
                         weights_neg=weights_neg, check_finite=check_finite, with_info=True,
                         with_state=with_state, with_error=with_error, init=init,
                         **self._options())


def controls_of(drift_config) -> dict:
  """``{tol, anneal}`` from a ``config.drift`` block: ``tol`` (0 = off) and
  ``anneal_start`` (0 = off) / ``anneal_decay``; ranges checked here, one line each."""
  tol = drift_config.get("tol", 0.0)
  if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol <= 2:
    raise ValueError(f"config.drift.tol must be a number in [0, 2] (0 = off), got {tol!r}")
  start = drift_config.get("anneal_start", 0.0)
  decay = drift_config.get("anneal_decay", 0.8)
  for name, v in (("anneal_start", start), ("anneal_decay", decay)):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
      raise ValueError(f"config.drift.{name} must be a finite number, got {v!r}")
  if start != 0 and start < 1:
    raise ValueError(f"config.drift.anneal_start must be 0 (off) or >= 1 (a multiple of "
                     f"tau), got {start!r}")
  if not 0 < decay < 1:
    raise ValueError(f"config.drift.anneal_decay must be in (0, 1), got {decay!r}")
  return dict(tol=float(tol) if tol else None,
              anneal=(float(start), float(decay)) if start else None)
