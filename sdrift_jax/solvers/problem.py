"""The contract every Sinkhorn engine serves: a :class:`Problem` in, a :class:`Result` out.

A problem is one entropic coupling problem, or a batch of them along leading axes
``...``: the reference kernel ``pi_0[i, j] = a_i b_j exp(L[i, j])`` with logits ``L``
given either densely (``[..., N, M]``) or as points whose costs an engine recomputes
where it needs them (``L = -C(x_i, y_j) / tau + col_bias_j``, optionally with
``L[i, i] = -inf``). ``T`` half-steps of Sinkhorn scaling follow (rows, columns, rows,
...; paper eq. 11) from the column log-scaling ``g_init`` (default ``log_b``: the
reference kernel itself; a warm start gives another), and every engine returns the same
:class:`Result`.

Engines (``sdrift_jax.solvers.log``, ``.scaling``, ``.blocked``) are modules with

* ``solve(problem, T, y=None, *, with_error=False, tol=None) -> Result``; with ``tol``
  the half-steps stop at the first full iteration whose row-normalized coupling has an
  L1 column error ``<= tol`` (checked in the column step, from the sums it computes
  anyway), or at ``T``;
* ``coupling(problem, T) -> [..., N, M]``, the row-normalized coupling (dense engines;
  ``blocked`` refuses: it never forms an ``N x M`` matrix).

The row-normalized coupling after ``T`` half-steps is ``P = softmax_j(L + g)`` with ``g``
the column log-scaling after the last column step (``2 (T // 2)`` half-steps): a final
row step only normalizes rows, so ``T = 2k`` and ``T = 2k + 1`` give the same ``P``.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib

__all__ = ["Problem", "Result", "column_error", "normalized", "plain_half_steps",
           "tolerance_error"]


@dataclasses.dataclass(frozen=True)
class Problem:
  """Sinkhorn problem(s) over leading batch axes ``...``.

  Build with :meth:`dense` or :meth:`points`. Not a pytree: it lives inside one traced
  function, its arrays may be tracers.

  Attributes:
    log_a: ``[..., N]`` log row marginal (any total mass; engines normalize errors).
    log_b: ``[..., M]`` log column marginal.
    logits: ``[..., N, M]`` logits ``L`` (dense problems), ``-inf`` allowed.
    x: ``[..., N, d]`` row points (point problems).
    y: ``[..., M, d]`` column points (point problems).
    tau: temperature of the point costs (scalar array).
    cost: canonical cost name of the point costs (static).
    mask_diagonal: ``L[i, i] = -inf`` for ``i < min(N, M)`` (static; the self-mask when
      the first columns are the rows' own points).
    col_bias: optional ``[..., M]`` added to the point logits (log column weights).
    g_init: optional ``[..., M]`` column log-scaling the first row step starts from
      (default ``log_b``).
  """
  log_a: jax.Array
  log_b: jax.Array
  logits: Optional[jax.Array] = None
  x: Optional[jax.Array] = None
  y: Optional[jax.Array] = None
  tau: Optional[jax.Array] = None
  cost: str = "sqeuclidean"
  mask_diagonal: bool = False
  col_bias: Optional[jax.Array] = None
  g_init: Optional[jax.Array] = None

  @classmethod
  def dense(cls, logits, log_a, log_b) -> "Problem":
    """A problem on given logits ``[..., N, M]``; ``log_a``, ``log_b`` broadcast."""
    batch, (n, m) = logits.shape[:-2], logits.shape[-2:]
    return cls(log_a=jnp.broadcast_to(log_a, batch + (n,)),
               log_b=jnp.broadcast_to(log_b, batch + (m,)), logits=logits)

  def starting_from(self, g_init) -> "Problem":
    """The same problem, its half-steps starting from ``g_init`` ``[..., M]`` (None:
    from ``log_b``)."""
    if g_init is not None:
      g_init = jnp.broadcast_to(g_init, self.log_b.shape).astype(self.log_b.dtype)
    return dataclasses.replace(self, g_init=g_init)

  @property
  def g_start(self) -> jax.Array:
    """``[..., M]``: where the half-steps start (``g_init``, else ``log_b``)."""
    return self.log_b if self.g_init is None else self.g_init

  @classmethod
  def points(cls, x, y, tau, cost, log_a, log_b, *, mask_diagonal=False,
             col_bias=None) -> "Problem":
    """A problem on the costs of ``x [..., N, d]`` to ``y [..., M, d]`` at ``tau``."""
    batch, n, m = x.shape[:-2], x.shape[-2], y.shape[-2]
    return cls(log_a=jnp.broadcast_to(log_a, batch + (n,)),
               log_b=jnp.broadcast_to(log_b, batch + (m,)), x=x, y=y,
               tau=jnp.asarray(tau, x.dtype), cost=costs_lib.canonical_cost(cost),
               mask_diagonal=bool(mask_diagonal), col_bias=col_bias)

  @property
  def is_dense(self) -> bool:
    return self.logits is not None

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self.log_a.shape[:-1]

  @property
  def shape(self) -> tuple[int, int]:
    """``(N, M)``."""
    return self.log_a.shape[-1], self.log_b.shape[-1]

  def dense_logits(self, row_shift_ok: bool = False) -> jax.Array:
    """The logits ``[..., N, M]``. With ``row_shift_ok`` (callers that only row-normalize
    or run Sinkhorn, which a constant per row does not change), point problems may leave
    a row constant out where that is cheaper (:func:`sdrift_jax.costs.shifted_logits`)."""
    if self.is_dense:
      return self.logits
    logit_fn = costs_lib.shifted_logits if row_shift_ok else (
        lambda a, b, t, c: -costs_lib.pairwise_cost(a, b, c) / t)
    fn = lambda a, b: logit_fn(a, b, self.tau, self.cost)
    for _ in self.batch_shape:
      fn = jax.vmap(fn)
    L = fn(self.x, self.y)
    if self.col_bias is not None:
      L = L + self.col_bias[..., None, :]
    if self.mask_diagonal:
      n, m = self.shape
      L = jnp.where(jnp.eye(n, m, dtype=bool), -jnp.inf, L)
    return L

  def as_dense(self, row_shift_ok: bool = False) -> "Problem":
    return Problem.dense(self.dense_logits(row_shift_ok), self.log_a,
                         self.log_b).starting_from(self.g_init)


class Result(NamedTuple):
  """What every engine's ``solve`` returns.

  Attributes:
    g: ``[..., M]`` column log-scaling after the last column half-step (``2 (T // 2)``
      half-steps; ``log_b`` for ``T = 1``): the row-normalized coupling is
      ``P = softmax_j(L + g)``.
    barycenter: ``[..., N, d]``, ``P @ y`` for the row-normalized coupling ``P`` (None
      when no ``y`` was given).
    col_error: ``[...]``, L1 error of the column marginal of ``a_i P[i, j]`` against
      ``b`` (both normalized to mass one); zeros unless ``with_error``.
    half_steps: ``[...]`` int32, the half-steps whose coupling this is: ``T`` without a
      tolerance; with one, ``2k + 1`` when the coupling after ``2k`` half-steps (and the
      row normalization) met it (the same coupling a call with ``T = 2k + 1`` returns).
      The check itself costs one column pass more.
  """
  g: jax.Array
  barycenter: Optional[jax.Array]
  col_error: jax.Array
  half_steps: Optional[jax.Array] = None


def plain_half_steps(batch_shape, T: int) -> jax.Array:
  return jnp.full(batch_shape, T, jnp.int32)


def tolerance_error(g, log_col_sums, log_a, log_b) -> jax.Array:
  """``[...]``: the L1 column error of the row-normalized coupling of ``g``, from the log
  column sums ``lse_i(L + f)`` its row step left (``f`` the row scaling of ``g``): the
  plan's columns are ``exp(g + log_col_sums)`` and its mass is ``sum(a)``."""
  col = jnp.exp(g + log_col_sums - logsumexp(log_a, axis=-1, keepdims=True))
  return jnp.sum(jnp.abs(col - normalized(log_b)), axis=-1)


def normalized(log_w: jax.Array) -> jax.Array:
  """``exp(log_w)`` normalized to mass one along the last axis."""
  return jax.nn.softmax(log_w, axis=-1)


def column_error(P: jax.Array, log_a: jax.Array, log_b: jax.Array) -> jax.Array:
  """``[...]``: ``sum_j |sum_i a_i P[i, j] - b_j|`` for a row-stochastic ``P [..., N, M]``
  (``a``, ``b`` normalized)."""
  col = jnp.einsum("...n,...nm->...m", normalized(log_a), P,
                   precision=costs_lib.HIGHEST)
  return jnp.sum(jnp.abs(col - normalized(log_b)), axis=-1)
