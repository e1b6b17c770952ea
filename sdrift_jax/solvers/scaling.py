"""Sinkhorn couplings in the scaling (kernel) domain with log-domain absorption.

The plain log-domain iteration (:mod:`sdrift_jax.solvers.ot`) pays, per half-step, a max
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
``cond`` into a ``select`` that runs both branches; the functions behind
:func:`row_normalized_coupling` and :func:`barycentric_map` are therefore
``custom_vmap``s whose batching rule folds every vmapped axis into one explicit batch
axis. Derivatives (rarely wanted: training takes the drift under
``stop_gradient``) go through the plain log-domain path by a ``custom_jvp``.

The marginals must be strictly positive; callers fall back to the log domain otherwise.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from sdrift_jax import costs as costs_lib
from sdrift_jax.solvers import log as log_engine
from sdrift_jax.solvers import scaling_kernel as kernel
from sdrift_jax.solvers import problem as problem_lib
from sdrift_jax.solvers.problem import Problem, Result

__all__ = ["BOUND", "barycentric_map", "coupling", "row_normalized_coupling", "solve"]

BOUND = kernel.BOUND
_HI = costs_lib.HIGHEST


def _fold_batch(fn):
  """``custom_vmap`` of ``fn`` (explicit ``[B, ...]`` inputs): vmaps fold into ``B``.

  Every vmapped axis becomes part of the one batch axis, so the absorption predicate stays
  one scalar for all problems (a per-example predicate would turn each ``cond`` into a
  ``select`` that runs both branches).
  """
  folded = jax.custom_batching.custom_vmap(fn)

  @folded.def_vmap
  def rule(axis_size, in_batched, *args):
    args = [x if bat else jnp.broadcast_to(x, (axis_size,) + x.shape)
            for x, bat in zip(args, in_batched)]
    out = folded(*[x.reshape((-1,) + x.shape[2:]) for x in args])
    lead = args[0].shape[:2]
    out = jax.tree.map(lambda o: o.reshape(lead + o.shape[1:]), out)
    return out, jax.tree.map(lambda _: True, out)

  return folded


def _log_domain_g(logits, log_a, log_b, g0, T, tol=None):
  """Column log-scaling of the plain log-domain iteration, batched: ``([B, M], [B])``."""
  if tol is None:
    one = lambda l, la, lb, g: (log_engine.sinkhorn_scaling(l, 2 * (T // 2), la, lb, g)[1],
                                jnp.int32(T))
    return jax.vmap(one)(logits, log_a, log_b, g0)
  one = lambda l, la, lb, g, e: log_engine.column_scaling_to(l, la, lb, g, T, e)
  return jax.vmap(one)(logits, log_a, log_b, g0, tol)


def _plain_coupling(logits, log_a, log_b, g0, T):
  g = _log_domain_g(logits, log_a, log_b, g0, T)[0]
  return jax.nn.softmax(logits + g[:, None, :], axis=2)


def _plain_barycenter(logits, log_a, log_b, g0, y, *tol, T, with_col_mass):
  g, half = _log_domain_g(logits, log_a, log_b, g0, T, *tol)
  P = jax.nn.softmax(logits + g[:, None, :], axis=2)
  col = (jnp.einsum("bn,bnm->bm", jnp.exp(log_a), P, precision=_HI) if with_col_mass
         else jnp.zeros_like(log_b))
  return jnp.einsum("bnm,bmk->bnk", P, y, precision=_HI), col, g, half


@functools.lru_cache(maxsize=None)
def _coupling_fn(T: int, bound: float, exact_sum: float):
  """Batched coupling: scaling domain forward, plain log domain for derivatives."""
  fast = _fold_batch(functools.partial(kernel.coupling, T=T, bound=bound, exact_sum=exact_sum))

  @jax.custom_jvp
  def fn(logits, log_a, log_b, g0):
    return fast(logits, log_a, log_b, g0)

  @fn.defjvp
  def jvp(primals, tangents):
    return jax.jvp(functools.partial(_plain_coupling, T=T), primals, tangents)

  return fn


@functools.lru_cache(maxsize=None)
def _barycenter_fn(T: int, bound: float, exact_sum: float, with_col_mass: bool,
                   with_tol: bool = False):
  """Batched barycentric map: scaling domain forward, plain log domain for derivatives.
  Arguments ``(logits, log_a, log_b, g0, y[, tol])``."""
  def forward(logits, log_a, log_b, g0, y, *tol):
    return kernel.barycenter(logits, log_a, log_b, g0, y, tol[0] if tol else None, T=T,
                             bound=bound, exact_sum=exact_sum, with_col_mass=with_col_mass)
  fast = _fold_batch(forward)

  @jax.custom_jvp
  def fn(*args):
    return fast(*args)

  @fn.defjvp
  def jvp(primals, tangents):
    plain = functools.partial(_plain_barycenter, T=T, with_col_mass=with_col_mass)
    return jax.jvp(plain, primals, tangents)

  return fn


def row_normalized_coupling(logits: jax.Array, log_a: jax.Array, log_b: jax.Array,
                            T: int, *, bound: float = kernel.BOUND,
                            exact_sum: float = kernel.TINY_SUM) -> jax.Array:
  """Row-normalized Sinkhorn coupling after ``T`` half-steps, in the scaling domain.

  Equal (to float32 rounding) to ``row_softmax(logits + g)`` where ``g`` is the column
  log-scaling of :func:`sdrift_jax.solvers.ot.sinkhorn_scaling` after ``2 (T // 2)``
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
  fn = _coupling_fn(int(T), float(bound), float(exact_sum))
  return fn(logits.reshape(-1, n, m), log_a, log_b, log_b).reshape(logits.shape)


def barycentric_map(logits: jax.Array, log_a: jax.Array, log_b: jax.Array, y: jax.Array,
                    T: int, *, with_col_mass: bool = False, bound: float = kernel.BOUND,
                    exact_sum: float = kernel.TINY_SUM) -> tuple[jax.Array, jax.Array]:
  """``P @ y`` for the row-normalized coupling ``P`` of :func:`row_normalized_coupling`,
  without forming ``P``.

  The same value as ``row_normalized_coupling(logits, log_a, log_b, T) @ y`` to float32
  rounding, with two fewer passes over the ``N x M`` matrix: the row normalization is
  folded into ``K (v * y) / K v``. ``T = 1`` (the one-sided drift) is the row softmax
  times ``y``.

  Args:
    logits: array of shape ``[..., N, M]``, ``-C / tau`` (``-inf`` allowed, not whole
      rows).
    log_a: array of shape ``[..., N]``, log of a strictly positive row marginal.
    log_b: array of shape ``[..., M]``, log of a strictly positive column marginal.
    y: array of shape ``[..., M, d]``, the points the coupling averages.
    T: half-iterations (static), ``T >= 1``.
    with_col_mass: also return the column mass ``a^T P`` (one more pass over ``K``);
      zeros otherwise.
    bound: as in :func:`row_normalized_coupling`.
    exact_sum: as in :func:`row_normalized_coupling`.

  Returns:
    ``(P @ y, a^T P)`` of shapes ``[..., N, d]`` and ``[..., M]``; ``a = exp(log_a)``.
  """
  batch = logits.shape[:-2]
  n, m = logits.shape[-2:]
  d = y.shape[-1]
  log_a = jnp.broadcast_to(log_a, batch + (n,)).reshape(-1, n)
  log_b = jnp.broadcast_to(log_b, batch + (m,)).reshape(-1, m)
  y = jnp.broadcast_to(y, batch + (m, d)).reshape(-1, m, d)
  fn = _barycenter_fn(int(T), float(bound), float(exact_sum), bool(with_col_mass))
  Py, col, _, _ = fn(logits.reshape(-1, n, m), log_a, log_b, log_b, y)
  return Py.reshape(batch + (n, d)), col.reshape(batch + (m,))


def solve(problem: Problem, T: int, y=None, *, with_error: bool = False, tol=None) -> Result:
  """``T`` half-steps in the scaling domain (the contract:
  :mod:`sdrift_jax.solvers.problem`). Needs strictly positive marginals."""
  L = problem.dense_logits()
  batch = problem.batch_shape
  n, m = problem.shape
  y_in = jnp.zeros(batch + (m, 1), L.dtype) if y is None else y
  d = y_in.shape[-1]
  y_in = jnp.broadcast_to(y_in, batch + (m, d)).reshape(-1, m, d)
  fn = _barycenter_fn(int(T), float(kernel.BOUND), float(kernel.TINY_SUM), bool(with_error),
                      tol is not None)
  tols = () if tol is None else (
      jnp.broadcast_to(jnp.asarray(tol, L.dtype), batch).reshape(-1),)
  Py, col, g, half = fn(L.reshape(-1, n, m), problem.log_a.reshape(-1, n),
                        problem.log_b.reshape(-1, m), problem.g_start.reshape(-1, m), y_in,
                        *tols)
  if with_error:
    mass = jnp.sum(jnp.exp(problem.log_a), axis=-1, keepdims=True).reshape(-1, 1)
    err = jnp.sum(jnp.abs(col / mass - problem_lib.normalized(problem.log_b.reshape(-1, m))),
                  axis=-1).reshape(batch)
  else:
    err = jnp.zeros(batch, L.dtype)
  return Result(g.reshape(batch + (m,)), None if y is None else Py.reshape(batch + (n, d)), err,
                half.reshape(batch))


def coupling(problem: Problem, T: int) -> jax.Array:
  """The row-normalized coupling ``[..., N, M]`` after ``T`` half-steps."""
  L = problem.dense_logits()
  n, m = problem.shape
  fn = _coupling_fn(int(T), float(kernel.BOUND), float(kernel.TINY_SUM))
  return fn(L.reshape(-1, n, m), problem.log_a.reshape(-1, n), problem.log_b.reshape(-1, m),
            problem.g_start.reshape(-1, m)).reshape(L.shape)
