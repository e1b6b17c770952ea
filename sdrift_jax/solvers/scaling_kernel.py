"""The scaling-domain half-steps with log-domain absorption, on explicit batches
``[B, N, M]`` (the maths of :mod:`sdrift_jax.solvers.scaling`, whose docstring states
the method; that module adds the batching rule, the derivatives and the contract).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib

__all__ = ["BOUND", "GROUPED_MIN_ENTRIES", "TINY_SUM", "barycenter", "coupling"]

BOUND = 1e10  # scalings are kept in [1 / BOUND, BOUND] between absorptions
# A row of K diag(v) with less mass is normalized from the logits instead: its entries
# that matter (within float32 resolution of its largest) stay in the normal range.
_TINY_MASS = 1e-25
# A half-step whose sums K v (or K^T u) all exceed this is exact in float32 even when its
# scalings leave the bounds: they are then absorbed without a log-domain step.
TINY_SUM = 1e-30

_HI = costs_lib.HIGHEST
_ROW_GROUPS = 8  # row blocks of K^T u (see _rmatvec) ...
GROUPED_MIN_ENTRIES = 2**21  # ... for problems of at least this many entries


def _in_bounds(s, bound):
  # NaN and inf fail both comparisons.
  return jnp.all((s > 1.0 / bound) & (s < bound))


def _matvec(K, v):
  return jnp.einsum("bnm,bm->bn", K, v, precision=_HI)


def _rmatvec(K, u):
  """``K^T u`` per batch. For problems of at least ``GROUPED_MIN_ENTRIES`` entries,
  taken as ``_ROW_GROUPS`` partial products over blocks of rows (a batched product, then
  a sum of a few rows), which XLA:CPU runs at the speed of ``K v``; below that size one
  product over all rows is faster (measurements: docs/notes.md)."""
  bsz, n, m = K.shape
  if n % _ROW_GROUPS or n * m < GROUPED_MIN_ENTRIES:
    return jnp.einsum("bnm,bn->bm", K, u, precision=_HI)
  h = _ROW_GROUPS
  parts = jnp.einsum("bhnm,bhn->bhm", K.reshape(bsz, h, n // h, m), u.reshape(bsz, h, n // h),
                     precision=_HI)
  return jnp.sum(parts, axis=1)


def _scaled_kernel(logits, log_a, log_b, g0, T, bound, exact_sum, tol=None):
  """``[B, N, M]`` logits -> ``(K, g, v, half_steps [B])`` after the first ``2 (T // 2)``
  half-steps from the column log-scaling ``g0``.

  The row-normalized coupling is then ``K diag(v)`` with its rows normalized, where
  ``K = exp(logits + f + g)`` for some row log-scaling ``f`` (which the normalization
  cancels). Requires ``T >= 2``.

  Half-steps are counted by ``t`` (``t`` done so far): step ``t + 1`` is a row step when
  ``t`` is even and a column step when ``t`` is odd. Only the column scaling after the
  last column step (``t_end = 2 (T // 2)``) matters: the final row step of an odd ``T``
  is the row normalization. ``K`` is built from ``(f, g)`` (one exp pass); the inner loop
  runs matrix-vector half-steps on it (a constant of that loop, not copied per step) until
  done or until a scaling leaves its bounds; the outer loop then absorbs the scalings
  into ``(f, g)`` (redoing the half-step in the log domain first if it was not exact) and
  rebuilds ``K``. The outer loop carries ``K`` so that the final normalization reuses it.

  With ``tol`` ``[B]``, each column step first measures the column error of the current
  row-normalized coupling (``v * K^T u`` are its columns); a problem that meets ``tol``
  keeps its scalings from then on (``half_steps`` = the ``t`` it stopped at) and the loops
  end when every problem has.
  """
  a, b = jnp.exp(log_a), jnp.exp(log_b)
  t_end = 2 * (T // 2)
  track = tol is not None
  if track:
    b_unit = b / jnp.sum(b, axis=1, keepdims=True)
    a_mass = jnp.sum(a, axis=1, keepdims=True)
  def rebuild(f, g):
    return jnp.exp(logits + f[..., None] + g[:, None, :])

  # Row stabilizer: every row of K has its largest entry at most a_i (equal to it for
  # uniform b), so the first row step (u = a / K 1) already runs in the scaling domain.
  # max(logits) + max(g) bounds max(logits + g) without a pass over their sum, for which
  # XLA:CPU materialized an N x M broadcast of g.
  g = g0
  f = log_a - jnp.max(logits, axis=2) - jnp.max(g, axis=1, keepdims=True)
  ones_u, ones_v = jnp.ones_like(a), jnp.ones_like(b)
  # flag: 0 = scalings in bounds; 1 = the last half-step is exact but left the bounds
  # (absorb it: one exp pass); 2 = the next half-step must be redone in the log domain.
  # stop: (done [B], half_steps [B]) with a tolerance, else ().
  stop = (jnp.zeros(a.shape[:1], bool), jnp.full(a.shape[:1], T, jnp.int32)) if track else ()
  state = (jnp.int32(0), f, g, rebuild(f, g), ones_u, ones_v, stop)

  def classify(sums, new):
    in_bounds = _in_bounds(new, bound)
    exact = jnp.all(jnp.isfinite(new) & (sums > exact_sum))
    return jnp.where(in_bounds, 0, jnp.where(exact, 1, 2)).astype(jnp.int32)

  def running(t, stop):
    return (t < t_end) & (~jnp.all(stop[0]) if track else True)

  def outer(state):
    t, f, g, K, u, v, stop = state

    def half_step(inner):
      t, u, v, _, stop = inner

      def col():
        sums = _rmatvec(K, u)
        v_new = b / sums
        new_stop = stop
        if track:
          done, half = stop
          err = jnp.sum(jnp.abs(v * sums / a_mass - b_unit), axis=1)
          met = (~done) & (err <= tol)
          v_new = jnp.where((done | met)[:, None], v, v_new)
          new_stop = (done | met, jnp.where(met, t, half))
        flag = classify(sums, v_new)
        return u, jnp.where(flag < 2, v_new, v), flag, new_stop

      def row():
        sums = _matvec(K, v)
        u_new = a / sums
        flag = classify(sums, u_new)
        return jnp.where(flag < 2, u_new, u), v, flag, stop

      u, v, flag, new_stop = jax.lax.cond(t % 2 == 1, col, row)
      if track:  # a half-step redone in the log domain is checked at the next column
        new_stop = jax.tree.map(lambda n, o: jnp.where(flag < 2, n, o), new_stop, stop)
      return t + (flag < 2).astype(t.dtype), u, v, flag, new_stop

    t, u, v, flag, stop = jax.lax.while_loop(
        lambda s: (s[3] == 0) & running(s[0], s[4]), half_step,
        (t, u, v, jnp.int32(0), stop))

    def keep():
      return t, f, g, K, u, v, stop

    def absorb():
      f2, g2 = f + jnp.log(u), g + jnp.log(v)
      return t, f2, g2, rebuild(f2, g2), ones_u, ones_v, stop

    def log_step():
      # Half-step t + 1 is not representable in the scaling domain (a row or column of
      # K diag(v) underflowed): do it in the log domain.
      f2, g2 = f + jnp.log(u), g + jnp.log(v)
      col = t % 2 == 1
      if track:  # problems that met the tolerance keep their scaling
        col = col & ~stop[0][:, None]
      g3 = jnp.where(col, log_b - logsumexp(logits + f2[..., None], axis=1), g2)
      f3 = jnp.where(t % 2 == 1, f2, log_a - logsumexp(logits + g2[:, None, :], axis=2))
      return t + 1, f3, g3, rebuild(f3, g3), ones_u, ones_v, stop

    return jax.lax.switch(flag, (keep, absorb, log_step))

  _, _, g, K, _, v, stop = jax.lax.while_loop(lambda s: running(s[0], s[6]), outer, state)
  half = stop[1] if track else jnp.full(a.shape[:1], T, jnp.int32)
  return K, g, v, half


def coupling(logits, log_a, log_b, g0, T, bound, exact_sum, tol=None):
  """``[B, N, M]`` logits -> the row-normalized coupling after ``T`` half-steps from
  ``g0``."""
  if T < 2:
    return jax.nn.softmax(logits + g0[:, None, :], axis=2)
  K, g, v, _ = _scaled_kernel(logits, log_a, log_b, g0, T, bound, exact_sum, tol)
  # Row normalization of K diag(v). A row whose mass is below float32's normal range
  # (possible after an absorption at tiny tau) is redone from the logits.
  W = K * v[:, None, :]
  mass = jnp.sum(W, axis=2, keepdims=True)
  return jax.lax.cond(
      jnp.all(mass > _TINY_MASS), lambda: W / mass,
      lambda: jax.nn.softmax(logits + (g + jnp.log(v))[:, None, :], axis=2))


def _one_sided_barycenter(logits, log_a, log_b, g0, y, with_col_mass):
  """``T = 1``: the row softmax and its product with ``y``. Written as a softmax followed
  by a product, XLA's CPU backend fuses the whole drift into one kernel, which the
  unnormalized form ``E @ y / E 1`` did not (docs/notes.md)."""
  P = jax.nn.softmax(logits + g0[:, None, :], axis=2)
  col = (jnp.einsum("bn,bnm->bm", jnp.exp(log_a), P, precision=_HI) if with_col_mass
         else jnp.zeros_like(log_b))
  return (jnp.einsum("bnm,bmk->bnk", P, y, precision=_HI), col, g0,
          jnp.ones(log_a.shape[:1], jnp.int32))


def barycenter(logits, log_a, log_b, g0, y, tol, T, bound, exact_sum, with_col_mass):
  """``(P @ y, a^T P, g, half_steps)`` for the row-normalized coupling ``P = softmax(L +
  g)`` after ``T`` half-steps from ``g0`` (or fewer, at ``tol``; None: no tolerance).

  ``P = diag(1 / K v) K diag(v)`` is never formed: ``P @ y = K (v * y) / K v`` is one
  matrix product and one matrix-vector product on ``K``, where forming ``P`` costs a
  write and a read of an ``N x M`` matrix more. The column mass
  ``a^T P = ((a / K v)^T K) * v`` is one more pass, paid only when asked for (else zeros).
  """
  if T < 2:
    return _one_sided_barycenter(logits, log_a, log_b, g0, y, with_col_mass)
  K, g, v, half = _scaled_kernel(logits, log_a, log_b, g0, T, bound, exact_sum, tol)
  a = jnp.exp(log_a)
  mass = _matvec(K, v)

  def fast():
    Py = jnp.einsum("bnm,bmk->bnk", K, v[..., None] * y, precision=_HI) / mass[..., None]
    col = _rmatvec(K, a / mass) * v if with_col_mass else jnp.zeros_like(v)
    return Py, col, g + jnp.log(v)

  def from_logits():
    # A row of K diag(v) with almost no mass (possible after an absorption at tiny tau).
    P = jax.nn.softmax(logits + (g + jnp.log(v))[:, None, :], axis=2)
    col = jnp.einsum("bn,bnm->bm", a, P, precision=_HI) if with_col_mass else jnp.zeros_like(v)
    return jnp.einsum("bnm,bmk->bnk", P, y, precision=_HI), col, g + jnp.log(v)

  return (*jax.lax.cond(jnp.all(mass > _TINY_MASS), fast, from_logits), half)
