"""The state a drift call hands to the next: its couplings' dual potentials, as functions.

:class:`DriftState` holds the rows ``x`` of the last call (generated points, or their
features), their log weights and, per temperature and per coupling (positive,
negative), the row dual potential ``F`` in cost units. The next call, on new points of
the same dimension, starts each coupling from the soft c-transform of ``F`` evaluated at
its new columns (:mod:`sdrift_jax.solvers.start`, which says why functions and not
values by index). ``valid = False`` (:meth:`DriftState.cold`) starts from the reference
kernel, as a call without ``init`` does, so that a training loop can carry one state
from its first step.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sdrift_jax.solvers import start as start_lib

__all__ = ["DriftState", "check_state", "side_start"]


class DriftState(NamedTuple):
  """What ``init=`` takes and ``.state`` returns.

  Attributes:
    x: ``[N, d]`` (``drift_field``) or ``[L, N, C]`` (``feature_drift``, raw features):
      the rows of the last solve.
    log_a: ``[N]``, their log weights (normalized).
    potentials: ``[K, 2, N]`` (``[K, 2, L, N]``): per temperature, the row dual
      potentials of the positive and the negative coupling, in the units of the cost.
    valid: ``[]`` bool; False: no solve yet (the call starts cold).
  """
  x: jax.Array
  log_a: jax.Array
  potentials: jax.Array
  valid: jax.Array

  @classmethod
  def cold(cls, x_shape, num_taus: int = 1, dtype=jnp.float32) -> "DriftState":
    """A state that starts cold, shaped for rows ``x_shape`` (``[N, d]`` or ``[L, N,
    C]``) and ``num_taus`` temperatures."""
    x_shape = tuple(x_shape)
    n = x_shape[-2]
    lead = x_shape[:-2]
    return cls(jnp.zeros(x_shape, dtype), jnp.full((n,), -jnp.log(n), dtype),
               jnp.zeros((num_taus, 2) + lead + (n,), dtype), jnp.array(False))


def check_state(init, x_rank: int, d: int, num_taus: int, front: str) -> None:
  """Refuses an ``init`` that no call of this shape could have returned (one line)."""
  if not isinstance(init, DriftState):
    raise ValueError(f"init must be the .state of an earlier {front} call (a DriftState), "
                     f"got {type(init).__name__}")
  if init.x.ndim != x_rank or init.x.shape[-1] != d:
    raise ValueError(f"init holds rows of shape {tuple(init.x.shape)}: this call's points "
                     f"have dimension {d} (rank {x_rank})")
  if init.potentials.shape[0] != num_taus:
    raise ValueError(f"init holds potentials for {init.potentials.shape[0]} temperature(s); "
                     f"this call has {num_taus}")


def side_start(state_side, state: DriftState, y, log_b, bias, tau, cost: str):
  """``g0``: where one coupling of the next call starts: the c-transform of its
  potential ``state_side`` over ``state.x`` at the new columns ``y`` (less the kernel's
  log column weights ``bias``), or ``log_b`` when the state is cold."""
  g = start_lib.column_start(state.x, jnp.broadcast_to(state.log_a, state_side.shape),
                             state_side, y, log_b, tau, cost)
  if bias is not None:
    g = g - bias
  return jnp.where(state.valid, g, log_b)
