"""The plain log-domain engine: every half-step a log-sum-exp over the logits.

``log pi = L + f[:, None] + g[None, :]`` throughout, so nothing under- or overflows in
float32 at small ``tau``. The reference implementation the other engines are tested
against, and the one derivatives go through.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax.solvers import problem as problem_lib
from sdrift_jax.solvers.problem import Problem, Result

__all__ = ["col_step", "column_scaling_to", "coupling", "potentials", "row_step",
           "sinkhorn_scaling", "solve"]

_HI = costs_lib.HIGHEST


def row_step(logits: jax.Array, g: jax.Array, log_a: jax.Array) -> jax.Array:
  """Odd half-step: the row log-scaling ``f`` that makes the rows sum to ``a``."""
  return log_a - logsumexp(logits + g[None, :], axis=1)


def col_step(logits: jax.Array, f: jax.Array, log_b: jax.Array) -> jax.Array:
  """Even half-step: the column log-scaling ``g`` that makes the columns sum to ``b``."""
  return log_b - logsumexp(logits + f[:, None], axis=0)


def sinkhorn_scaling(logits: jax.Array, T: int, log_a: jax.Array, log_b: jax.Array,
                     g_init=None) -> tuple[jax.Array, jax.Array]:
  """Runs ``T`` half-iterations of log-domain Sinkhorn scaling on a logit matrix.

  Args:
    logits: array of shape ``[N, M]``, ``-C / tau`` (entries may be ``-inf``).
    T: number of half-iterations (static), ``T >= 0``.
    log_a: array of shape ``[N]``, log row marginal.
    log_b: array of shape ``[M]``, log column marginal.
    g_init: optional ``[M]``, the column log-scaling to start from (default ``log_b``).

  Returns:
    ``(f, g)`` of shapes ``[N]`` and ``[M]`` with ``log pi = logits + f[:, None] + g``
    after the ``T``-th half-step (a row step when ``T`` is odd, a column step when even;
    the start ``(log_a, g_init)`` when ``T = 0``).
  """
  def full_iteration(_, fg):
    _, g = fg
    f = row_step(logits, g, log_a)
    return f, col_step(logits, f, log_b)

  f, g = jax.lax.fori_loop(0, T // 2, full_iteration,
                           (log_a, log_b if g_init is None else g_init))
  if T % 2 == 1:
    f = row_step(logits, g, log_a)
  return f, g


def _batched(fn, n_batch):
  for _ in range(n_batch):
    fn = jax.vmap(fn)
  return fn


def potentials(problem: Problem, T: int, tol=None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(f [..., N], g [..., M], half_steps [...])`` after ``T`` half-steps (or fewer, at
  ``tol``): ``pi = exp(L + f + g)`` (the joint form uses the plan itself)."""
  def one(L, la, lb, g0, *tols):
    if not tols:
      f, g = sinkhorn_scaling(L, T, la, lb, g0)
      return f, g, jnp.int32(T)
    g, half = column_scaling_to(L, la, lb, g0, T, tols[0])
    return row_step(L, g, la), g, half
  args = (problem.dense_logits(), problem.log_a, problem.log_b, problem.g_start)
  if tol is not None:
    args += (jnp.broadcast_to(jnp.asarray(tol, problem.log_b.dtype), problem.batch_shape),)
  return _batched(one, len(problem.batch_shape))(*args)


def column_scaling_to(L, log_a, log_b, g0, T: int, tol):
  """``(g, half_steps)``: the column log-scaling after ``2 (T // 2)`` half-steps from
  ``g0``, or the first ``g`` (after ``2k``) whose row-normalized coupling has an L1
  column error ``<= tol``, found by the column step that follows it (its sums give the
  error): then ``half_steps = 2k + 1``, else ``T``."""
  t_end = 2 * (T // 2)

  def body(carry):
    t, g, _ = carry
    f = row_step(L, g, log_a)
    log_sums = logsumexp(L + f[:, None], axis=0)
    done = problem_lib.tolerance_error(g, log_sums, log_a, log_b) <= tol
    return (jnp.where(done, t, t + 2), jnp.where(done, g, log_b - log_sums), done)

  t, g, done = jax.lax.while_loop(lambda c: (~c[2]) & (c[0] < t_end), body,
                                  (jnp.int32(0), g0, jnp.array(False)))
  return g, jnp.where(done, t + 1, T).astype(jnp.int32)


def _column_scaling(L, log_a, log_b, g0, T, tol=None):
  if tol is None:
    return sinkhorn_scaling(L, 2 * (T // 2), log_a, log_b, g0)[1], jnp.int32(T)
  return column_scaling_to(L, log_a, log_b, g0, T, tol)


def coupling(problem: Problem, T: int) -> jax.Array:
  """The row-normalized coupling ``[..., N, M]`` after ``T`` half-steps."""
  one = lambda L, la, lb, g0: jax.nn.softmax(L + _column_scaling(L, la, lb, g0, T)[0][None, :],
                                             axis=-1)
  return _batched(one, len(problem.batch_shape))(problem.dense_logits(), problem.log_a,
                                                 problem.log_b, problem.g_start)


def solve(problem: Problem, T: int, y=None, *, with_error: bool = False, tol=None) -> Result:
  """``T`` half-steps in the log domain (module docstring of
  :mod:`sdrift_jax.solvers.problem` for the contract)."""
  def one(L, la, lb, g0, tol, *ys):
    g, half = _column_scaling(L, la, lb, g0, T, tol)
    # One exp pass (softmax), not a log-sum-exp followed by a second exp.
    P = jax.nn.softmax(L + g[None, :], axis=-1)
    bary = jnp.matmul(P, ys[0], precision=_HI) if ys else None
    err = problem_lib.column_error(P, la, lb) if with_error else jnp.zeros((), L.dtype)
    return Result(g, bary, err, half)

  args = [problem.dense_logits(), problem.log_a, problem.log_b, problem.g_start]
  if tol is None:
    fn = lambda L, la, lb, g0, *ys: one(L, la, lb, g0, None, *ys)
  else:
    fn = one
    args.append(jnp.broadcast_to(jnp.asarray(tol, problem.log_b.dtype), problem.batch_shape))
  if y is not None:
    args.append(jnp.broadcast_to(y, problem.batch_shape + y.shape[-2:]))
  return _batched(fn, len(problem.batch_shape))(*args)
