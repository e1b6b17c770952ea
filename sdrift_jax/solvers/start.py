"""Where a solve starts: warm starts carried as functions, and epsilon annealing.

Every engine starts its half-steps from a column log-scaling ``g_init``
(:class:`~sdrift_jax.solvers.Problem`); these functions compute one.

**Warm starts.** A solve's result is kept as a function of the points, not as values by
index (the points are new at the next call): the row points ``x``, their log weights
``log a`` and the row dual potential ``F = tau (f - log a)`` in cost units
(:func:`row_potential`, one pass over the costs after the solve). At the next problem,
on new columns ``y'``, the column scaling to start from is the soft c-transform of
``F`` over the old rows (:func:`column_start`, one pass):

    g0(y'_j) = log b'_j - logsumexp_i(log a_i + (F_i - C(x_i, y'_j)) / tau).

It is the column step of the previous problem evaluated at the new columns: on a
persistent column support (the same positives, or a memory bank coupled whole) it is
the previous solve continued by one half-step; on new columns it interpolates. Cost
units (not ``f``) keep it meaningful when ``tau`` changes between calls (a relative
temperature follows the batch's mean cost). Both passes use the full costs (no row
constant dropped) and run over row tiles (no ``N x M`` matrix), for every engine.

**Annealing** (epsilon scaling): one full iteration at each temperature
``tau * s_k``, ``s_k = start * decay**k`` while ``s_k > 1``, in the log domain (a new
temperature needs a new kernel anyway), the dual potentials carried in cost units from
one level to the next; the engine then runs the remaining half-steps at ``tau``. It
only chooses a start: the fixed point, and so the converged coupling, is the same.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax.costs import block_rows
from sdrift_jax.solvers import blocked
from sdrift_jax.solvers.problem import Problem

__all__ = ["anneal_levels", "annealed_start", "column_start", "row_potential"]


def _batched(fn, n_batch, in_axes=0):
  for _ in range(n_batch):
    fn = jax.vmap(fn, in_axes=in_axes)
  return fn


def row_potential(x, y, h, tau, cost: str, mask_diagonal: bool = False) -> jax.Array:
  """``F [..., N] = -tau logsumexp_j(-C(x_i, y_j) / tau + h_j)``: the row dual potential,
  in cost units, of the plan ``exp(-C / tau + f + h)`` after its row step (``h`` the
  column log-scaling plus any log column weights of the kernel)."""
  def one(xx, yy, hh):
    zeros = jnp.zeros(xx.shape[:1], xx.dtype)
    block = block_rows(xx.shape[0], yy.shape[0])
    return tau * blocked._row_scalings(xx, yy, zeros, hh, tau, cost, mask_diagonal, block)
  return _batched(one, x.ndim - 2)(x, y, h)


def column_start(x_prev, log_a_prev, F_prev, y, log_b, tau, cost: str) -> jax.Array:
  """``g0 [..., M]``: the soft c-transform of the row potential ``F_prev`` over the rows
  ``x_prev`` (log weights ``log_a_prev``), evaluated at the columns ``y`` with marginal
  ``log_b`` (module docstring)."""
  def one(xp, lap, Fp, yy, lb):
    block = block_rows(yy.shape[0], xp.shape[0])
    return blocked._row_scalings(yy, xp, lb, lap + Fp / tau, tau, cost, False, block)
  return _batched(one, y.ndim - 2)(x_prev, log_a_prev, F_prev, y, log_b)


def anneal_levels(start: float, decay: float) -> tuple[float, ...]:
  """The temperature factors ``s_k = start * decay**k > 1`` of an annealing schedule
  (static; empty when ``start <= 1``)."""
  if not (start >= 1.0 and 0.0 < decay < 1.0 and math.isfinite(start)):
    raise ValueError(f"anneal=(start, decay) needs start >= 1 and 0 < decay < 1, got "
                     f"({start!r}, {decay!r})")
  levels, s = [], float(start)
  while s > 1.0 + 1e-12:
    levels.append(s)
    s *= decay
  return tuple(levels)


def annealed_start(problem: Problem, levels: tuple[float, ...]) -> jax.Array:
  """``g [..., M]`` at the problem's temperature after one full log-domain iteration at
  each factor of ``levels`` (descending, > 1), from ``problem.g_start``."""
  if not levels:
    return problem.g_start
  s = jnp.asarray(levels, problem.log_b.dtype)
  ratio = jnp.concatenate([s[:-1] / s[1:], s[-1:]])  # to the next level, then to tau
  log_a, log_b, g = problem.log_a, problem.log_b, problem.g_start
  g = log_b + (g - log_b) / s[0]
  if problem.is_dense:
    L = problem.logits

    def level(g, sr):
      scale, r = sr
      Ls = L / scale
      f = log_a - logsumexp(Ls + g[..., None, :], axis=-1)
      g = log_b - logsumexp(Ls + f[..., :, None], axis=-2)
      return log_b + (g - log_b) * r, None
  else:
    bias = 0.0 if problem.col_bias is None else problem.col_bias
    n, m = problem.shape
    rows, cols = block_rows(n, m), block_rows(m, n)

    def one(x, y, la, lb, h, tau, mask):
      f = blocked._row_scalings(x, y, la, h, tau, problem.cost, mask, rows)
      return blocked._row_scalings(y, x, lb, f, tau, problem.cost, mask, cols)

    def level(g, sr):
      scale, r = sr
      fn = _batched(lambda x, y, la, lb, h: one(x, y, la, lb, h, problem.tau * scale,
                                                problem.mask_diagonal),
                    len(problem.batch_shape))
      g = fn(problem.x, problem.y, log_a, log_b, g + bias) - bias
      return log_b + (g - log_b) * r, None

  g, _ = jax.lax.scan(level, g, (s, ratio))
  return g
