"""Sinkhorn drifts without the ``N x M`` matrix: memory ``O((N + M) d + block * M)``.

The dense paths hold a few ``N x M`` matrices (logits, kernel, coupling); at
``N = M = 65536`` one of them is 16 GiB in float32. Here the particles ``x`` are cut into
row blocks and every half-step recomputes each block's costs from ``x`` and ``y``:

* row half-step: per block, ``f = log a - logsumexp_j(L + g)`` (a ``lax.map``);
* column half-step: a ``lax.scan`` over the blocks carrying a running (max, sum) per
  column, the online form of ``logsumexp_i(L + f)``;
* drift: per block, ``softmax_j(L + g) @ y``.

It is the log-domain iteration of :mod:`sdrift_jax.sinkhorn` (same half-step count and
order), so it matches the dense drift to float32 rounding, at the price of recomputing
the costs (a matmul for ``d > 16``) in every half-step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib

_HI = jax.lax.Precision.HIGHEST

# Target number of entries of one [block, M] logit tile (float32: 64 MiB).
TILE_ENTRIES = 1 << 24


def block_rows(n: int, m: int, tile_entries: int | None = None) -> int:
  """Rows per block so that a ``[block, m]`` tile has about ``tile_entries`` entries
  (default :data:`TILE_ENTRIES`)."""
  tile_entries = TILE_ENTRIES if tile_entries is None else tile_entries
  return int(max(1, min(n, tile_entries // max(m, 1))))


def _tiles(x, log_a, block):
  n, d = x.shape
  nb = -(-n // block)
  pad = nb * block - n
  # Padded rows carry zero mass (log a = -inf): they drop out of every column sum.
  x = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)]).reshape(nb, block, d)
  log_a = jnp.concatenate([log_a, jnp.full((pad,), -jnp.inf, log_a.dtype)]).reshape(nb, block)
  return x, log_a, nb


def barycentric_map(x, y, log_a, log_b, tau, T: int, cost: str, mask_diagonal: bool,
                    block: int) -> jax.Array:
  """``P @ y`` for the row-normalized coupling after ``T`` half-steps, blockwise.

  Args:
    x: array of shape ``[N, d]``.
    y: array of shape ``[M, d]``.
    log_a: array of shape ``[N]``, log row marginal.
    log_b: array of shape ``[M]``, log column marginal.
    tau: temperature (scalar array).
    T: half-iterations (static).
    cost: canonical cost name.
    mask_diagonal: set ``L[i, i] = -inf`` (``y`` is ``x``; the self-mask).
    block: rows per tile (static).

  Returns:
    ``(P @ y, column_error)``: an array of shape ``[N, d]`` and the L1 error of the column
    marginal of ``a_i P[i, j]`` against ``b`` (both normalized to mass one).
  """
  n, m = x.shape[0], y.shape[0]
  xt, lat, nb = _tiles(x, log_a, block)
  starts = jnp.arange(nb) * block
  cols = jnp.arange(m)

  def logits(start, xb):
    L = -costs_lib.pairwise_cost(xb, y, cost) / tau
    if mask_diagonal:
      rows = start + jnp.arange(block)
      L = jnp.where(rows[:, None] == cols[None, :], -jnp.inf, L)
    return L

  def row_step(g):
    return jax.lax.map(lambda t: t[1] - logsumexp(logits(t[0], t[2]) + g, axis=1),
                       (starts, lat, xt))

  def col_step(f):
    def accumulate(carry, t):
      run_max, run_sum = carry
      start, fb, xb = t
      Z = logits(start, xb) + fb[:, None]
      new_max = jnp.maximum(run_max, jnp.max(Z, axis=0))
      shift = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
      run_sum = run_sum * jnp.exp(run_max - shift) + jnp.sum(jnp.exp(Z - shift), axis=0)
      return (new_max, run_sum), None

    init = (jnp.full((m,), -jnp.inf, x.dtype), jnp.zeros((m,), x.dtype))
    (run_max, run_sum), _ = jax.lax.scan(accumulate, init, (starts, f, xt))
    return log_b - (jnp.where(jnp.isfinite(run_max), run_max, 0.0) + jnp.log(run_sum))

  def full_iteration(_, g):
    return col_step(row_step(g))

  g = jax.lax.fori_loop(0, T // 2, full_iteration, log_b)

  a_tiles = jnp.exp(lat - logsumexp(log_a))  # padded rows: zero

  def drift_block(col_mass, t):
    start, ab, xb = t
    P = jax.nn.softmax(logits(start, xb) + g, axis=1)
    col_mass = col_mass + jnp.matmul(ab, P, precision=_HI)
    return col_mass, jnp.matmul(P, y, precision=_HI)

  col_mass, out = jax.lax.scan(drift_block, jnp.zeros((m,), x.dtype), (starts, a_tiles, xt))
  col_error = jnp.sum(jnp.abs(col_mass - jnp.exp(log_b - logsumexp(log_b))))
  return out.reshape(nb * block, -1)[:n], col_error
