"""Entropic OT between two point clouds with the paper's half-iteration count, and the
debiased Sinkhorn divergence built on it (log domain, :mod:`sdrift_jax.solvers.log`).

Conventions (paper eq. 11): the scaling starts from the Gibbs kernel of the reference
measure ``a (x) b``, ``pi_0[i, j] = a_i b_j exp(-C[i, j] / tau)``; odd half-steps scale
the rows to ``a``, even half-steps scale the columns to ``b``. ``T`` counts half-steps,
so ``T = 1`` is a single row normalization (Deng et al.'s one-sided coupling).

Everything is kept as log-scalings: ``log pi[i, j] = logits[i, j] + f[i] + g[j]`` with
``logits = -C / tau``, so nothing under- or overflows in float32 at small ``tau``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax import validation
from sdrift_jax.solvers.log import col_step, row_step, sinkhorn_scaling

__all__ = ["SinkhornOutput", "col_step", "marginal_errors", "row_step", "sinkhorn",
           "sinkhorn_divergence", "sinkhorn_scaling"]


def marginal_errors(logits: jax.Array, f: jax.Array, g: jax.Array, a: jax.Array,
                    b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """L1 errors of the row and column marginals of ``pi = exp(logits + f + g)``."""
  log_pi = logits + f[:, None] + g[None, :]
  row = jnp.sum(jnp.abs(jnp.exp(logsumexp(log_pi, axis=1)) - a))
  col = jnp.sum(jnp.abs(jnp.exp(logsumexp(log_pi, axis=0)) - b))
  return row, col


class SinkhornOutput(NamedTuple):
  """Result of :func:`sinkhorn`.

  Attributes:
    f: array of shape ``[N]``, row log-scaling.
    g: array of shape ``[M]``, column log-scaling.
    logits: array of shape ``[N, M]``, ``-C / tau``; ``log plan = logits + f[:, None] + g``.
    row_error: L1 error of the plan's row marginal against ``a``.
    col_error: L1 error of the plan's column marginal against ``b``.
    reg_ot_cost: the entropic OT value ``OT_tau(a, b)`` (dual objective, paper eq. 9).
  """
  f: jax.Array
  g: jax.Array
  logits: jax.Array
  row_error: jax.Array
  col_error: jax.Array
  reg_ot_cost: jax.Array

  @property
  def plan(self) -> jax.Array:
    """The coupling ``pi`` of shape ``[N, M]``."""
    return jnp.exp(self.logits + self.f[:, None] + self.g[None, :])


def _log_weights(w: Optional[jax.Array], n: int, dtype) -> tuple[jax.Array, jax.Array]:
  if w is None:
    w = jnp.full((n,), 1.0 / n, dtype)
  else:
    w = w.astype(dtype) / jnp.sum(w)
  return w, jnp.log(w)


@functools.partial(jax.jit, static_argnames=("T", "cost"))
def _sinkhorn(x, y, tau, a, b, T, cost):
  dtype = x.dtype
  a, log_a = _log_weights(a, x.shape[0], dtype)
  b, log_b = _log_weights(b, y.shape[0], dtype)
  tau = jnp.asarray(tau, dtype)
  logits = -costs_lib.pairwise_cost(x, y, cost) / tau
  f, g = sinkhorn_scaling(logits, T, log_a, log_b)
  row_error, col_error = marginal_errors(logits, f, g, a, b)
  # Dual potentials relative to a (x) b: F = tau (f - log a), G = tau (g - log b).
  # The dual objective <a, F> + <b, G> - tau (mass(pi) - 1) equals OT_tau at convergence.
  safe = lambda w, lw, s: jnp.where(w > 0, s - lw, 0.0)
  mass = jnp.exp(logsumexp(logits + f[:, None] + g[None, :]))
  value = tau * (jnp.sum(a * safe(a, log_a, f)) + jnp.sum(b * safe(b, log_b, g)) - (mass - 1.0))
  return SinkhornOutput(f, g, logits, row_error, col_error, value)


def _prepare(x, y, tau, T, cost, a, b, check_finite=None):
  x = validation.as_point_cloud(x, "x")
  y = validation.as_point_cloud(y, "y")
  validation.check_finite(check_finite, x=x, y=y)
  validation.check_same_dim(x=x, y=y)
  T = validation.check_T(T)
  taus, is_seq = validation.as_tau(tau)
  if is_seq:
    raise ValueError("tau must be a single temperature here, got a sequence")
  cost = costs_lib.canonical_cost(cost)
  a = validation.as_weights(a, x.shape[0], "a")
  b = validation.as_weights(b, y.shape[0], "b")
  dtype = jnp.result_type(x.dtype, y.dtype)
  return x.astype(dtype), y.astype(dtype), taus[0], T, cost, a, b


def sinkhorn(x, y, tau, T: int = 101, *, cost: str = "sqeuclidean", a=None, b=None,
             check_finite: Optional[bool] = None) -> SinkhornOutput:
  """Entropic OT coupling between two point clouds by ``T`` Sinkhorn half-iterations.

  Args:
    x: array of shape ``[N, d]``.
    y: array of shape ``[M, d]``.
    tau: entropic temperature (> 0); with ``cost='sqeuclidean'`` it is ott-jax's
      ``epsilon``.
    T: half-iterations (the paper's count; odd ``T`` ends with a row step).
    cost: ground cost name, see :func:`sdrift_jax.costs.pairwise_cost`.
    a: optional weights of shape ``[N]`` (normalized to sum 1); uniform if None.
    b: optional weights of shape ``[M]``; uniform if None.
    check_finite: refuse NaN or inf in the inputs with a ValueError naming the argument
      and its first bad row. ``None`` (default): on when the inputs are concrete (a call
      outside ``jax.jit``; one fused reduction and one host sync), off when they are
      traced, where the values do not exist yet and a bad row silently makes the
      whole coupling NaN. ``True`` with traced inputs raises; ``False`` skips.

  Returns:
    A :class:`SinkhornOutput`.
  """
  x, y, tau, T, cost, a, b = _prepare(x, y, tau, T, cost, a, b, check_finite)
  return _sinkhorn(x, y, tau, a, b, T=T, cost=cost)


def sinkhorn_divergence(x, y, tau, T: int = 101, *, cost: str = "sqeuclidean", a=None,
                        b=None, check_finite: Optional[bool] = None) -> jax.Array:
  """Debiased Sinkhorn divergence ``OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2`` (eq. 10).

  Args:
    x: array of shape ``[N, d]``.
    y: array of shape ``[M, d]``.
    tau: entropic temperature (> 0).
    T: half-iterations for each of the three problems; use enough to converge.
    cost: ground cost name.
    a: optional weights of shape ``[N]``.
    b: optional weights of shape ``[M]``.
    check_finite: refuse NaN or inf in concrete inputs (as :func:`sinkhorn`).

  Returns:
    A scalar.
  """
  x, y, tau, T, cost, a, b = _prepare(x, y, tau, T, cost, a, b, check_finite)
  return _divergence(x, y, tau, a, b, T=T, cost=cost)


@functools.partial(jax.jit, static_argnames=("T", "cost"))
def _divergence(x, y, tau, a, b, T, cost):
  xy = _sinkhorn(x, y, tau, a, b, T=T, cost=cost).reg_ot_cost
  xx = _sinkhorn(x, x, tau, a, a, T=T, cost=cost).reg_ot_cost
  yy = _sinkhorn(y, y, tau, b, b, T=T, cost=cost).reg_ot_cost
  return xy - 0.5 * (xx + yy)
