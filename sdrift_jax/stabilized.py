"""Sinkhorn couplings in the scaling (kernel) domain with log-domain absorption.

The plain log-domain iteration (:mod:`sdrift_jax.sinkhorn`) pays, per half-step, a max
pass and an exp pass over the ``N x M`` logits. Here the coupling is kept as

    pi = diag(u) K diag(v),      K = exp(logits + f[:, None] + g[None, :]),

so that a half-step is one matrix-vector product (``u = a / (K v)`` or
``v = b / (K^T u)``): a multiply-add per entry instead of an exp. Float32 stability at
small ``tau`` comes from absorption (Schmitzer, 2019): whenever a new scaling leaves
``[1 / BOUND, BOUND]``, it is absorbed into ``(f, g)`` and ``K`` is rebuilt as the current
coupling with ``u = v = 1`` (one exp pass); when the half-step itself was not exact (a
row or column of ``K`` summed to almost nothing, or underflowed), it is first redone in
the log domain from ``logits``, ``f + log u`` and ``g + log v``.
Entries of ``K`` that flush to zero can then carry at most ``1e-38 * BOUND**2`` of mass,
far below float32 resolution of any row or column mass.

Whether to absorb is one predicate for the whole batch (``lax.cond``), so the cheap
branch really is cheap. Under ``jax.vmap`` a per-example predicate would turn the
``cond`` into a ``select`` that runs both branches; :func:`row_normalized_coupling` is
therefore a ``custom_vmap`` whose batching rule folds every vmapped axis into one
explicit batch axis. Derivatives (rarely wanted: training takes the drift under
``stop_gradient``) go through the plain log-domain path by a ``custom_jvp``.

The marginals must be strictly positive; callers fall back to the log domain otherwise.
"""
from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

# The module, not the function ``sdrift_jax.sinkhorn`` that the package exports.
sinkhorn_lib = importlib.import_module("sdrift_jax.sinkhorn")

BOUND = 1e10  # scalings are kept in [1 / BOUND, BOUND] between absorptions
# A row of K diag(v) with less mass is normalized from the logits instead: its entries
# that matter (within float32 resolution of its largest) stay in the normal range.
_TINY_MASS = 1e-25
# A half-step whose sums K v (or K^T u) all exceed this is exact in float32 even when its
# scalings leave the bounds: they are then absorbed without a log-domain step.
_TINY_SUM = 1e-30

_HI = jax.lax.Precision.HIGHEST


def _in_bounds(s, bound):
  # NaN and inf fail both comparisons.
  return jnp.all((s > 1.0 / bound) & (s < bound))


def _matvec(K, v):
  return jnp.einsum("bnm,bm->bn", K, v, precision=_HI)


def _rmatvec(K, u):
  return jnp.einsum("bnm,bn->bm", K, u, precision=_HI)


def _batched_coupling(logits, log_a, log_b, T, bound, exact_sum):
  """``[B, N, M]`` logits -> the row-normalized coupling after ``T`` half-steps.

  Half-steps are counted by ``t`` (``t`` done so far): step ``t + 1`` is a row step when
  ``t`` is even and a column step when ``t`` is odd. Only the column scaling after the
  last column step (``t_end = 2 (T // 2)``) matters: the final row step of an odd ``T``
  is the row normalization. ``K`` is built from ``(f, g)`` (one exp pass); the inner loop
  runs matrix-vector half-steps on it (a constant of that loop, not copied per step) until
  done or until a scaling leaves its bounds; the outer loop then absorbs the scalings
  into ``(f, g)`` (redoing the half-step in the log domain first if it was not exact) and
  rebuilds ``K``. The outer loop carries ``K`` so that the final normalization reuses it.
  """
  a, b = jnp.exp(log_a), jnp.exp(log_b)
  t_end = 2 * (T // 2)
  if t_end == 0:
    return jax.nn.softmax(logits + log_b[:, None, :], axis=2)

  def rebuild(f, g):
    return jnp.exp(logits + f[..., None] + g[:, None, :])

  # Row stabilizer: every row of K has its largest entry equal to a_i, so the first row
  # step (u = a / K 1, in [1 / M, 1]) already runs in the scaling domain.
  g = log_b
  f = log_a - jnp.max(logits + g[:, None, :], axis=2)
  ones_u, ones_v = jnp.ones_like(a), jnp.ones_like(b)
  # flag: 0 = scalings in bounds; 1 = the last half-step is exact but left the bounds
  # (absorb it: one exp pass); 2 = the next half-step must be redone in the log domain.
  state = (jnp.int32(0), f, g, rebuild(f, g), ones_u, ones_v, jnp.int32(0))

  def classify(sums, new):
    in_bounds = _in_bounds(new, bound)
    exact = jnp.all(jnp.isfinite(new) & (sums > exact_sum))
    return jnp.where(in_bounds, 0, jnp.where(exact, 1, 2)).astype(jnp.int32)

  def outer(state):
    t, f, g, K, u, v, _ = state

    def half_step(inner):
      t, u, v, _ = inner

      def col():
        sums = _rmatvec(K, u)
        v_new = b / sums
        flag = classify(sums, v_new)
        return u, jnp.where(flag < 2, v_new, v), flag

      def row():
        sums = _matvec(K, v)
        u_new = a / sums
        flag = classify(sums, u_new)
        return jnp.where(flag < 2, u_new, u), v, flag

      u, v, flag = jax.lax.cond(t % 2 == 1, col, row)
      return t + (flag < 2).astype(t.dtype), u, v, flag

    t, u, v, flag = jax.lax.while_loop(lambda s: (s[3] == 0) & (s[0] < t_end), half_step,
                                       (t, u, v, jnp.int32(0)))

    def keep():
      return t, f, g, K, u, v, jnp.int32(0)

    def absorb():
      f2, g2 = f + jnp.log(u), g + jnp.log(v)
      return t, f2, g2, rebuild(f2, g2), ones_u, ones_v, jnp.int32(0)

    def log_step():
      # Half-step t + 1 is not representable in the scaling domain (a row or column of
      # K diag(v) underflowed): do it in the log domain.
      f2, g2 = f + jnp.log(u), g + jnp.log(v)
      col = t % 2 == 1
      g3 = jnp.where(col, log_b - logsumexp(logits + f2[..., None], axis=1), g2)
      f3 = jnp.where(col, f2, log_a - logsumexp(logits + g2[:, None, :], axis=2))
      return t + 1, f3, g3, rebuild(f3, g3), ones_u, ones_v, jnp.int32(0)

    return jax.lax.switch(flag, (keep, absorb, log_step))

  _, _, g, K, _, v, _ = jax.lax.while_loop(lambda s: s[0] < t_end, outer, state)
  # Row normalization of K diag(v). A row whose mass is below float32's normal range
  # (possible after an absorption at tiny tau) is redone from the logits.
  W = K * v[:, None, :]
  mass = jnp.sum(W, axis=2, keepdims=True)
  return jax.lax.cond(
      jnp.all(mass > _TINY_MASS), lambda: W / mass,
      lambda: jax.nn.softmax(logits + (g + jnp.log(v))[:, None, :], axis=2))


@functools.lru_cache(maxsize=None)
def _batched(T: int, bound: float, exact_sum: float):
  """``custom_vmap`` coupling on explicit ``[B, ...]`` inputs; vmaps fold into ``B``."""

  @jax.custom_batching.custom_vmap
  def fn(logits, log_a, log_b):
    return _batched_coupling(logits, log_a, log_b, T, bound, exact_sum)

  @fn.def_vmap
  def rule(axis_size, in_batched, logits, log_a, log_b):
    args = [x if bat else jnp.broadcast_to(x, (axis_size,) + x.shape)
            for x, bat in zip((logits, log_a, log_b), in_batched)]
    out = fn(*[x.reshape((-1,) + x.shape[2:]) for x in args])
    return out.reshape(args[0].shape), True

  return fn


def _log_domain_coupling(logits, log_a, log_b, T):
  _, g = sinkhorn_lib.sinkhorn_scaling(logits, 2 * (T // 2), log_a, log_b)
  return jax.nn.softmax(logits + g[None, :], axis=1)


@functools.lru_cache(maxsize=None)
def _differentiable(T: int, bound: float, exact_sum: float):

  @jax.custom_jvp
  def fn(logits, log_a, log_b):
    return _batched(T, bound, exact_sum)(logits, log_a, log_b)

  @fn.defjvp
  def jvp(primals, tangents):
    plain = jax.vmap(functools.partial(_log_domain_coupling, T=T))
    return jax.jvp(plain, primals, tangents)

  return fn


def row_normalized_coupling(logits: jax.Array, log_a: jax.Array, log_b: jax.Array,
                            T: int, *, bound: float = BOUND,
                            exact_sum: float = _TINY_SUM) -> jax.Array:
  """Row-normalized Sinkhorn coupling after ``T`` half-steps, in the scaling domain.

  Equal (to float32 rounding) to ``row_softmax(logits + g)`` where ``g`` is the column
  log-scaling of :func:`sdrift_jax.sinkhorn.sinkhorn_scaling` after ``2 (T // 2)``
  half-steps; the same value the drift needs for any ``T``. Leading batch axes are
  allowed (and ``jax.vmap`` folds into them): the problems share one loop.

  Args:
    logits: array of shape ``[..., N, M]``, ``-C / tau`` (``-inf`` allowed, not whole
      rows).
    log_a: array of shape ``[..., N]``, log of a strictly positive row marginal.
    log_b: array of shape ``[..., M]``, log of a strictly positive column marginal.
    T: half-iterations (static), ``T >= 1``.
    bound: scalings are absorbed once they leave ``[1 / bound, bound]``; smaller values
      absorb more often (tests use this to exercise the absorption branches).
    exact_sum: a half-step whose sums all exceed this is absorbed without a log-domain
      step; ``inf`` sends every absorption through the log domain.

  Returns:
    Array of shape ``[..., N, M]`` whose rows sum to one.
  """
  batch = logits.shape[:-2]
  n, m = logits.shape[-2:]
  log_a = jnp.broadcast_to(log_a, batch + (n,)).reshape(-1, n)
  log_b = jnp.broadcast_to(log_b, batch + (m,)).reshape(-1, m)
  out = _differentiable(int(T), float(bound), float(exact_sum))(logits.reshape(-1, n, m), log_a, log_b)
  return out.reshape(logits.shape)
