"""Sinkhorn drifts without the ``N x M`` matrix: memory ``O((N + M) d + block * M)``.

The dense paths hold a few ``N x M`` matrices (logits, kernel, coupling); at
``N = M = 65536`` one of them is 16 GiB in float32. Here the particles ``x`` are cut into
row blocks and every half-step recomputes each block's costs from ``x`` and ``y``:

* row half-step: per block of ``x``, ``f = log a - logsumexp_j(L + g)`` (a ``lax.map``);
* column half-step: the same row step on the transposed problem, per block of ``y``,
  ``g = log b - logsumexp_i(L^T + f)``: each tile is reduced along its contiguous axis
  and no running state is carried (an online column reduction over row tiles, carrying
  a (max, sum) pair per column, was slower per entry: docs/notes.md, "Blocked mode");
* drift: per block of ``x``, ``E @ y / E 1`` with ``E = exp(L + g - max_j(L + g))``.

Past ``SPLIT_COLS_ABOVE`` columns a tile is also cut along ``y`` (blocks of at most
``MAX_TILE_COLS``): the log-sum-exp and the drift's softmax are then carried over the
blocks of ``y`` per row, so that a tile and its block of ``y`` share the cache.

It is the log-domain iteration of :mod:`sdrift_jax.solvers.ot` (same half-step count and
order), so it matches the dense drift to float32 rounding, at the price of recomputing
the costs (a matmul for ``d > 16``) in every half-step. :func:`mean_cost`, the unit of a
relative temperature, is summed over the same row tiles.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax.costs import TILE_ENTRIES, block_rows
from sdrift_jax.solvers import problem as problem_lib
from sdrift_jax.solvers.problem import Problem, Result

__all__ = ["barycentric_map", "coupling", "solve"]

_HI = costs_lib.HIGHEST

# Above this many columns the tiles are cut along y too (:func:`_row_scalings_2d`,
# :func:`_drift_2d`), in blocks of at most MAX_TILE_COLS: a tile of about 1024 rows and its
# block of y then stay in cache together (docs/notes.md, "Blocked mode", for the
# measurements behind both numbers).
SPLIT_COLS_ABOVE = 1 << 15
MAX_TILE_COLS = 1 << 12


def _tiles(x, log_a, block):
  n, d = x.shape
  nb = -(-n // block)
  pad = nb * block - n
  # Padded rows carry zero mass (log a = -inf): they drop out of every column sum.
  x = jnp.concatenate([x, jnp.zeros((pad, d), x.dtype)]).reshape(nb, block, d)
  log_a = jnp.concatenate([log_a, jnp.full((pad,), -jnp.inf, log_a.dtype)]).reshape(nb, block)
  return x, log_a, nb


def _tile_logits(xb, yb, log_b, tau, cost, mask_diagonal, row_start, col_start):
  """A tile's ``-C / tau + log_b`` up to a constant per row (``costs.row_constant``),
  with ``L[i, i] = -inf`` where ``mask_diagonal`` (rows and columns numbered from
  ``row_start`` and ``col_start``)."""
  L = costs_lib.shifted_logits(xb, yb, tau, cost) + log_b
  if mask_diagonal:
    rows = row_start + jnp.arange(xb.shape[0])
    cols = col_start + jnp.arange(yb.shape[0])
    L = jnp.where(rows[:, None] == cols[None, :], -jnp.inf, L)
  return L


def _row_scalings(x, y, log_a, log_b_other, tau, cost, mask_diagonal, block):
  """``log_a - logsumexp_j(-C(x, y) / tau + log_b_other)`` over row tiles of ``x``.

  Args:
    x: array of shape ``[N, d]``; its rows are tiled.
    y: array of shape ``[M, d]``.
    log_a: array of shape ``[N]``.
    log_b_other: array of shape ``[M]``, the other side's current log-scaling.
    tau: temperature (scalar array).
    cost: canonical cost name.
    mask_diagonal: ``L[i, i] = -inf`` (``y`` is ``x``; symmetric, so the transposed
      problem masks the same entries).
    block: rows per tile (static).

  Returns:
    Array of shape ``[N]``.
  """
  n, m = x.shape[0], y.shape[0]
  if m > SPLIT_COLS_ABOVE:
    return _row_scalings_2d(x, y, log_a, log_b_other, tau, cost, mask_diagonal)
  xt, lat, nb = _tiles(x, log_a, block)
  starts = jnp.arange(nb) * block

  def one(t):
    start, la, xb = t
    L = _tile_logits(xb, y, log_b_other, tau, cost, mask_diagonal, start, 0)
    return la - (logsumexp(L, axis=1) + costs_lib.row_constant(xb, tau, cost))

  return jax.lax.map(one, (starts, lat, xt)).reshape(-1)[:n]


def _tile_shape(n: int, m: int) -> tuple[int, int]:
  """``(rows, cols)`` of the tiles cut along both axes: ``y`` in the fewest blocks of at
  most :data:`MAX_TILE_COLS` columns, of equal size (so that padding stays under one
  column per block), and rows for about :data:`TILE_ENTRIES` entries per tile."""
  blocks = -(-m // MAX_TILE_COLS)
  cols = -(-m // blocks)
  return block_rows(n, cols), cols


def _online_block(mx, L):
  """One block of a row softmax taken over blocks of columns: ``(new, scale, E)`` with
  the new running max per row, the factor that rescales sums kept against the old one,
  and ``E = exp(L - new)`` (rows with no finite entry yet take 0 as their max)."""
  new = jnp.maximum(mx, jnp.max(L, axis=1))
  ref = jnp.where(jnp.isfinite(new), new, 0.0)
  return new, jnp.exp(mx - ref), jnp.exp(L - ref[:, None])


def _row_scalings_2d(x, y, log_a, log_b_other, tau, cost, mask_diagonal):
  """:func:`_row_scalings` over tiles cut along both ``x`` and ``y``.

  Tiles are :func:`_tile_shape`; per row tile the log-sum-exp is carried over the blocks
  of ``y`` as a running (max, sum) pair per row. With whole rows per tile instead, a
  large ``M`` leaves few rows per tile, all of ``y`` is reread for each, and ``y`` and
  the tile no longer share the last-level cache (``M = 65536``, ``d = 64``: 16 MiB each).
  """
  n = x.shape[0]
  rows, cols = _tile_shape(n, y.shape[0])
  xt, lat, nb = _tiles(x, log_a, rows)
  yt, lbt, nc = _tiles(y, log_b_other, cols)  # padded columns: log b = -inf
  row_starts, col_starts = jnp.arange(nb) * rows, jnp.arange(nc) * cols

  def one(t):
    start, la, xb = t

    def step(carry, u):
      mx, total = carry
      cstart, lb, yb = u
      new, scale, E = _online_block(
          mx, _tile_logits(xb, yb, lb, tau, cost, mask_diagonal, start, cstart))
      return (new, total * scale + jnp.sum(E, axis=1)), None

    init = (jnp.full((rows,), -jnp.inf, x.dtype), jnp.zeros((rows,), x.dtype))
    (mx, total), _ = jax.lax.scan(step, init, (col_starts, lbt, yt))
    ref = jnp.where(jnp.isfinite(mx), mx, 0.0)
    return la - (ref + jnp.log(total) + costs_lib.row_constant(xb, tau, cost))

  return jax.lax.map(one, (row_starts, lat, xt)).reshape(-1)[:n]


def _drift_2d(x, y, log_a, g, tau, cost, mask_diagonal, with_col_error, values):
  """``(P @ y, a^T P)`` of :func:`barycentric_map` over tiles cut along ``x`` and ``y``.

  Per row tile, the row softmax is accumulated over the blocks of ``y`` online: a
  running max, mass and ``E @ y`` per row, rescaled when the max grows. The column mass
  needs each row's final mass, so it takes a second pass over the blocks (only when
  asked for).
  """
  n, m = x.shape[0], y.shape[0]
  rows, cols = _tile_shape(n, m)
  xt, lat, nb = _tiles(x, log_a, rows)
  yt, gt, nc = _tiles(y, g, cols)  # padded columns: g = -inf, no mass
  vt = _tiles(values, g, cols)[0]
  row_starts, col_starts = jnp.arange(nb) * rows, jnp.arange(nc) * cols
  a_tiles = jnp.exp(lat - logsumexp(log_a))  # padded rows: zero

  def row_tile(col_mass, t):
    start, ab, xb = t

    def tile_logits(cstart, gb, yb):  # a row softmax: the row constant drops out
      return _tile_logits(xb, yb, gb, tau, cost, mask_diagonal, start, cstart)

    def accumulate(carry, u):
      mx, mass, acc = carry
      new, scale, E = _online_block(mx, tile_logits(*u[:3]))
      return (new, mass * scale + jnp.sum(E, axis=1),
              acc * scale[:, None] + jnp.matmul(E, u[3], precision=_HI)), None

    init = (jnp.full((rows,), -jnp.inf, x.dtype), jnp.zeros((rows,), x.dtype),
            jnp.zeros((rows, values.shape[1]), x.dtype))
    (mx, mass, acc), _ = jax.lax.scan(accumulate, init, (col_starts, gt, yt, vt))
    if with_col_error:
      ref = jnp.where(jnp.isfinite(mx), mx, 0.0)
      weights = ab / mass

      def column_part(_, u):
        E = jnp.exp(tile_logits(*u) - ref[:, None])
        return None, jnp.matmul(weights, E, precision=_HI)

      col_mass = col_mass + jax.lax.scan(column_part, None, (col_starts, gt, yt))[1]
    return col_mass, acc / mass[:, None]

  col_mass, out = jax.lax.scan(row_tile, jnp.zeros((nc, cols), x.dtype),
                               (row_starts, a_tiles, xt))
  return out.reshape(nb * rows, -1)[:n], col_mass.reshape(-1)[:m]


def _solve(x, y, log_a, log_b, tau, T: int, cost: str, mask_diagonal: bool, block: int,
           with_col_error: bool, col_bias=None, values=None, g_init=None, tol=None):
  """``(P @ values, column_error, g, half_steps)`` for one problem
  (:func:`barycentric_map`; ``values`` ``[M, k]`` defaults to ``y``)."""
  n, m = x.shape[0], y.shape[0]
  values = y if values is None else values
  col_block = block_rows(m, n, block * m)
  target = jnp.exp(log_b - logsumexp(log_b))
  # With column biases the iteration runs on h = g + col_bias against -C / tau: it starts
  # at g_init + col_bias, and a column step gives h = log_b - logsumexp_i(-C / tau + f).
  g0 = log_b if g_init is None else g_init
  h0 = g0 if col_bias is None else g0 + col_bias
  row = lambda h: _row_scalings(x, y, log_a, h, tau, cost, mask_diagonal, block)
  col = lambda f: _row_scalings(y, x, log_b, f, tau, cost, mask_diagonal, col_block)
  if tol is None:
    h = jax.lax.fori_loop(0, T // 2, lambda _, h: col(row(h)), h0)
    half = jnp.int32(T)
  else:
    # The column step's sums lse_i(-C / tau + f) = log_b - h_new measure the coupling of
    # the h it started from (problem.tolerance_error).
    def body(carry):
      t, h, _ = carry
      f = row(h)
      h_new = col(f)
      done = problem_lib.tolerance_error(h, log_b - h_new, log_a, log_b) <= tol
      return jnp.where(done, t, t + 2), jnp.where(done, h, h_new), done

    t, h, done = jax.lax.while_loop(lambda c: (~c[2]) & (c[0] < 2 * (T // 2)), body,
                                    (jnp.int32(0), h0, jnp.array(False)))
    half = jnp.where(done, t + 1, T).astype(jnp.int32)
  g = h if col_bias is None else h - col_bias
  if m > SPLIT_COLS_ABOVE:
    out, col_mass = _drift_2d(x, y, log_a, h, tau, cost, mask_diagonal, with_col_error, values)
    col_error = jnp.sum(jnp.abs(col_mass - target))
    return out, jnp.where(with_col_error, col_error, 0.0), g, half

  xt, lat, nb = _tiles(x, log_a, block)
  starts = jnp.arange(nb) * block
  a_tiles = jnp.exp(lat - logsumexp(log_a))  # padded rows: zero

  def drift_block(col_mass, t):
    start, ab, xb = t
    # A row softmax: the row constant drops out.
    L = _tile_logits(xb, y, h, tau, cost, mask_diagonal, start, 0)
    E = jnp.exp(L - jnp.max(L, axis=1, keepdims=True))
    mass = jnp.sum(E, axis=1)
    if with_col_error:
      col_mass = col_mass + jnp.matmul(ab / mass, E, precision=_HI)
    return col_mass, jnp.matmul(E, values, precision=_HI) / mass[:, None]

  col_mass, out = jax.lax.scan(drift_block, jnp.zeros((m,), x.dtype), (starts, a_tiles, xt))
  col_error = jnp.sum(jnp.abs(col_mass - target))
  return (out.reshape(nb * block, -1)[:n], jnp.where(with_col_error, col_error, 0.0), g,
          half)


def barycentric_map(x, y, log_a, log_b, tau, T: int, cost: str, mask_diagonal: bool,
                    block: int, with_col_error: bool = True
                    ) -> tuple[jax.Array, jax.Array]:
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
    block: rows per tile of ``x`` (static); the column half-step tiles ``y`` into
      tiles of the same number of entries.
    with_col_error: also compute the column error (one more product per tile); else it
      is returned as zero.

  Returns:
    ``(P @ y, column_error)``: an array of shape ``[N, d]`` and the L1 error of the column
    marginal of ``a_i P[i, j]`` against ``b`` (both normalized to mass one).
  """
  return _solve(x, y, log_a, log_b, tau, T, cost, mask_diagonal, block, with_col_error)[:2]


def solve(problem: Problem, T: int, y=None, *, with_error: bool = False, tol=None) -> Result:
  """``T`` half-steps over row tiles, costs recomputed from the problem's points (the
  contract: :mod:`sdrift_jax.solvers.problem`). ``y`` ``[..., M, k]``: the values the
  coupling averages (default: none, barycenter None)."""
  if problem.is_dense:
    raise ValueError("algorithm='blocked' recomputes costs from points and never holds an "
                     "N x M matrix: it needs a point problem (Problem.points), not logits")
  n, m = problem.shape
  block = block_rows(n, m)
  batch = problem.batch_shape
  values = problem.y[..., :1] * 0 if y is None else jnp.broadcast_to(y, batch + y.shape[-2:])
  tols = None if tol is None else jnp.broadcast_to(jnp.asarray(tol, problem.log_b.dtype),
                                                   batch)

  def one(x, yp, la, lb, bias, v, g0, tl):
    return _solve(x, yp, la, lb, problem.tau, T, problem.cost, problem.mask_diagonal, block,
                  with_error, bias, v, g0, tl)

  fn = one
  optional = lambda a: None if a is None else 0
  for _ in batch:
    fn = jax.vmap(fn, in_axes=(0, 0, 0, 0, optional(problem.col_bias), 0,
                               optional(problem.g_init), optional(tols)))
  out, err, g, half = fn(problem.x, problem.y, problem.log_a, problem.log_b, problem.col_bias,
                         values, problem.g_init, tols)
  return Result(g, None if y is None else out, err, jnp.broadcast_to(half, batch))


def coupling(problem: Problem, T: int) -> jax.Array:
  raise ValueError("algorithm='blocked' never forms the N x M coupling; use 'log' or "
                   "'scaling' where the coupling itself is needed")
