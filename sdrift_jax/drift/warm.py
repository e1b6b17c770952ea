"""The state a drift call hands to the next: its couplings, kept as functions.

:class:`DriftState` holds what defines the last call's Sinkhorn couplings: its rows
``x`` (generated points, or their raw features) with their log weights, its columns
(positives, negatives), per temperature the columns' log-scalings ``h`` (with any log
column weights of the kernel) and the temperature. Returning it costs nothing; a call
given it as ``init`` evaluates the previous couplings at its new points (two passes over
the costs per coupling and temperature, :mod:`sdrift_jax.solvers.start`, which says why
functions and not values by index):

1. the previous row potential ``F = -tau' logsumexp_j(-C(x'_i, y'_j) / tau' + h_j)`` at
   the previous temperature ``tau'`` (cost units: meaningful at a new ``tau``);
2. its soft c-transform at the new columns, where the new coupling starts.

``valid = False`` (:meth:`DriftState.cold`) starts from the reference kernel, as a call
without ``init`` does, so that a training loop can carry one state from its first step.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sdrift_jax import validation
from sdrift_jax.solvers import start as start_lib

__all__ = ["DriftState", "check_convergence", "check_state", "starts"]


class DriftState(NamedTuple):
  """What ``init=`` takes and ``.state`` returns.

  Attributes:
    x: ``[N, d]`` (``drift_field``) or ``[L, N, C]`` (``feature_drift``, raw features):
      the rows of the last solve.
    log_a: ``[N]``, their log weights (normalized).
    y_pos: ``[M_pos, d]`` (``[L, P, C]``), the positive columns.
    y_neg: ``[M_neg, d]`` (``[L, M, C]``), the negative columns.
    h_pos: ``[K, M_pos]`` (``[K, L, P]``): per temperature, the positive coupling's
      column log-scaling plus the kernel's log column weights.
    h_neg: ``[K, M_neg]`` (``[K, L, M]``): the same for the negative coupling (for the
      joint form, ``h_pos`` and ``h_neg`` are the two blocks of its one coupling).
    tau: ``[K]``, the temperatures in the units of the cost.
    valid: ``[]`` bool; False: no solve yet (the call starts cold).
  """
  x: jax.Array
  log_a: jax.Array
  y_pos: jax.Array
  y_neg: jax.Array
  h_pos: jax.Array
  h_neg: jax.Array
  tau: jax.Array
  valid: jax.Array

  @classmethod
  def cold(cls, x_shape, num_taus: int = 1, dtype=jnp.float32, y_pos_shape=None,
           y_neg_shape=None) -> "DriftState":
    """A state that starts cold, shaped for rows ``x_shape`` (``[N, d]`` or ``[L, N,
    C]``), columns ``y_pos_shape`` and ``y_neg_shape`` (default: the rows' shape) and
    ``num_taus`` temperatures. Shapes matter only where the state is a loop carry."""
    x_shape = tuple(x_shape)
    yp = tuple(y_pos_shape or x_shape)
    yn = tuple(y_neg_shape or x_shape)
    n = x_shape[-2]
    z = lambda shape: jnp.zeros(shape, dtype)
    return cls(z(x_shape), jnp.full((n,), -jnp.log(n), dtype), z(yp), z(yn),
               z((num_taus,) + yp[:-1]), z((num_taus,) + yn[:-1]), jnp.ones((num_taus,), dtype),
               jnp.array(False))


def check_state(init, x_rank: int, d: int, num_taus: int, front: str) -> None:
  """Refuses an ``init`` that no call of this shape could have returned (one line)."""
  if not isinstance(init, DriftState):
    raise ValueError(f"init must be the .state of an earlier {front} call (a DriftState), "
                     f"got {type(init).__name__}")
  if init.x.ndim != x_rank or init.x.shape[-1] != d:
    raise ValueError(f"init holds rows of shape {tuple(init.x.shape)}: this call's points "
                     f"have dimension {d} (rank {x_rank})")
  if init.h_pos.shape[0] != num_taus:
    raise ValueError(f"init holds couplings for {init.h_pos.shape[0]} temperature(s); "
                     f"this call has {num_taus}")
  for name in ("x", "h_pos", "h_neg", "tau"):
    value = getattr(init, name)
    if not validation.is_traced(value) and not np.all(np.isfinite(np.asarray(value))):
      raise ValueError(f"init holds NaN or inf in {name}: a state from a call that went "
                       "non-finite; start cold (init=None)")


def starts(state: DriftState, k: tuple, new: tuple, tau, cost: str, joint: bool):
  """Where the couplings of the next call start: ``(g0_pos, g0_neg)`` (split) or
  ``(g0_joint, None)`` (joint form), ``log_b`` where the state is cold.

  Args:
    state: the previous call's state.
    k: ``(h_pos, h_neg, tau_prev)``, the state's slices at this temperature.
    new: ``((y_pos, log_b_pos, bias_pos), (y_neg, log_b_neg, bias_neg))`` of the new
      couplings (``bias``: the kernel's log column weights, or None).
    tau: the new temperature.
    cost: the cost name.
    joint: one coupling over ``[pos | neg]``.
  """
  h_pos, h_neg, tau_prev = k
  F_pos = start_lib.row_potential(state.x, state.y_pos, h_pos, tau_prev, cost)
  F_neg = start_lib.row_potential(state.x, state.y_neg, h_neg, tau_prev, cost)
  log_a = jnp.broadcast_to(state.log_a, F_pos.shape)

  def one(F, y, log_b, bias):
    g = start_lib.column_start(state.x, log_a, F, y, log_b, tau, cost)
    g = g if bias is None else g - bias
    return jnp.where(state.valid, g, log_b)

  (yp, lbp, bp), (yn, lbn, bn) = new
  if joint:
    F = -tau_prev * jnp.logaddexp(-F_pos / tau_prev, -F_neg / tau_prev)
    cat = lambda a, b: None if a is None else jnp.concatenate([a, b], axis=-1)
    return one(F, jnp.concatenate([yp, yn], axis=-2), cat(lbp, lbn),
               None if bp is None else cat(bp, bn)), None
  return one(F_pos, yp, lbp, bp), one(F_neg, yn, lbn, bn)


def check_convergence(tol, anneal, T, normalization, warm_start):
  """``(tol as an array or None, annealing levels)``, checked: ``tol`` a finite number
  ``> 0`` (None: off), ``anneal`` None or ``(start, decay)`` with ``start >= 1``,
  ``0 < decay < 1`` and its levels leaving at least one half-step of ``T``; all three
  need the Sinkhorn normalization."""
  if (tol is not None or anneal is not None or warm_start) and normalization != "sinkhorn":
    raise ValueError(f"tol, init and anneal control Sinkhorn half-steps; normalization "
                     f"{normalization!r} has none")
  if tol is not None and not isinstance(tol, jax.core.Tracer):
    try:
      value = None if isinstance(tol, bool) else float(tol)
    except (TypeError, ValueError):
      value = None
    if value is None or not 0 < value < float("inf"):
      raise ValueError(f"tol must be a finite number > 0 (an L1 marginal error, at most 2) "
                       f"or None (off), got {tol!r}")
    tol = jnp.asarray(value)
  levels = ()
  if anneal is not None:
    if not isinstance(anneal, (tuple, list)) or len(anneal) != 2:
      raise ValueError(f"anneal must be (start, decay), got {anneal!r}")
    levels = start_lib.anneal_levels(float(anneal[0]), float(anneal[1]))
    if 2 * len(levels) >= T:
      raise ValueError(f"anneal={tuple(anneal)} takes {2 * len(levels)} half-steps "
                       f"({len(levels)} temperatures); T={T} must leave at least one more")
  return tol, levels
