"""The Sinkhorn drift in fused Pallas kernels for low dimensions (GPU).

Each half-step of the log-domain iteration is one kernel: a program takes a block of
rows, walks over the columns in blocks, recomputes each tile's costs from the points
(direct differences, ``d <= costs.DIRECT_MAX_DIM``) and keeps a running maximum and sum
per row, so that neither the costs nor the kernel are ever written to memory. The column
half-step is the row step of the transposed problem (the costs are symmetric in the two
clouds). The last pass also accumulates the softmax-weighted mean of ``y``, the
barycentric map ``P @ y``. This is the GPU counterpart of :mod:`sdrift_jax.blocked`,
which does the same with XLA tiles, and the same iteration as
:mod:`sdrift_jax.sinkhorn_solver`: same half-step count and order, same drift to float32
rounding.

On a GPU the kernels run through Pallas' Triton backend; elsewhere they run in Pallas'
interpreter (for tests: correct, not fast). The points enter transposed (``[d, N]``),
so that a program loads one contiguous vector per coordinate.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from sdrift_jax import costs as costs_lib

# Scores are clipped from below at this value: a row whose every column is masked or
# padded then gets finite (unused) scalings instead of NaN from (-inf) - (-inf).
_NEG = -1e30
BLOCK_ROWS = 64
BLOCK_COLS = 128


def _interpret() -> bool:
  return jax.default_backend() != "gpu"


def _lse_kernel(xt_ref, yt_ref, bias_ref, lse_ref, *mean_refs, d, euclidean, block_n,
                block_m, num_col_blocks, mask_diagonal):
  """Per row i of this program's block: ``lse_i = logsumexp_j(bias_j - c(x_i, y_j))``
  and, with ``mean_refs``, ``mean_i = sum_j softmax_j(...) y_j`` (stored transposed)."""
  i = pl.program_id(0)
  rows = pl.dslice(i * block_n, block_n)
  xs = [xt_ref[k, rows] for k in range(d)]
  with_mean = bool(mean_refs)
  row_ids = i * block_n + jnp.arange(block_n)

  def body(j, carry):
    run_max, run_sum, accs = carry
    cols = pl.dslice(j * block_m, block_m)
    ys = [yt_ref[k, cols] for k in range(d)]
    sq = jnp.zeros((block_n, block_m), jnp.float32)
    for xk, yk in zip(xs, ys):
      diff = xk[:, None] - yk[None, :]
      sq = sq + diff * diff
    c = jnp.sqrt(sq) if euclidean else sq
    s = bias_ref[cols][None, :] - c
    if mask_diagonal:
      col_ids = j * block_m + jnp.arange(block_m)
      s = jnp.where(row_ids[:, None] == col_ids[None, :], _NEG, s)
    s = jnp.maximum(s, _NEG)
    new_max = jnp.maximum(run_max, jnp.max(s, axis=1))
    correction = jnp.exp(run_max - new_max)
    p = jnp.exp(s - new_max[:, None])
    run_sum = run_sum * correction + jnp.sum(p, axis=1)
    if with_mean:
      accs = tuple(acc * correction + jnp.sum(p * yk[None, :], axis=1)
                   for acc, yk in zip(accs, ys))
    return new_max, run_sum, accs

  init = (jnp.full((block_n,), _NEG, jnp.float32), jnp.zeros((block_n,), jnp.float32),
          tuple(jnp.zeros((block_n,), jnp.float32) for _ in range(d if with_mean else 0)))
  run_max, run_sum, accs = jax.lax.fori_loop(0, num_col_blocks, body, init)
  lse_ref[...] = run_max + jnp.log(run_sum)
  if with_mean:
    for k, acc in enumerate(accs):
      mean_refs[0][k, rows] = acc / run_sum


def _lse_rows(xt, yt, bias, *, euclidean, mask_diagonal, with_mean, block_n, block_m,
              num_warps=4, num_stages=2):
  """``logsumexp_j(bias_j - c(x_i, y_j))`` for every column ``x_i`` of ``xt``
  (``[d, N]``, N a multiple of ``block_n``; ``yt`` ``[d, M]``, M a multiple of
  ``block_m``), and the softmax-weighted means of ``y`` (``[d, N]``) if asked."""
  d, n = xt.shape
  m = yt.shape[1]
  kernel = functools.partial(
      _lse_kernel, d=d, euclidean=euclidean, block_n=block_n,
      block_m=block_m, num_col_blocks=m // block_m, mask_diagonal=mask_diagonal)
  out_shape = [jax.ShapeDtypeStruct((n,), jnp.float32)]
  out_specs = [pl.BlockSpec((block_n,), lambda i: (i,))]
  if with_mean:
    out_shape.append(jax.ShapeDtypeStruct((d, n), jnp.float32))
    out_specs.append(pl.BlockSpec((d, n), lambda i: (0, 0)))
  interpret = _interpret()
  params = {}
  if not interpret:
    from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
    params["compiler_params"] = plgpu.CompilerParams(num_warps=num_warps,
                                                     num_stages=num_stages)
  full = lambda shape: pl.BlockSpec(shape, lambda i: (0,) * len(shape))
  out = pl.pallas_call(
      kernel, out_shape=out_shape, grid=(n // block_n,),
      in_specs=[full(xt.shape), full(yt.shape), full(bias.shape)],
      out_specs=out_specs, interpret=interpret, name="sinkhorn_lse_rows", **params,
  )(xt, yt, bias)
  return out if with_mean else (out[0], None)


def _padded_transpose(x, size):
  return jnp.pad(x.astype(jnp.float32), ((0, size - x.shape[0]), (0, 0))).T


def barycentric_map(x, y, log_a, log_b, tau, T: int, cost: str, mask_diagonal: bool,
                    with_col_error: bool = True, block_n: int | None = None,
                    block_m: int | None = None, num_warps: int = 4):
  """``P @ y`` for the row-normalized coupling after ``T`` half-steps, in fused kernels.

  Arguments and result as :func:`sdrift_jax.blocked.barycentric_map` (``block_n`` and
  ``block_m``: rows and columns of a kernel's tile, powers of two; default
  :data:`BLOCK_ROWS` and :data:`BLOCK_COLS`). With
  ``with_col_error`` one more column pass gives the column marginal of ``a_i P[i, j]``.
  """
  n, d = x.shape
  m = y.shape[0]
  block_n = BLOCK_ROWS if block_n is None else block_n
  block_m = BLOCK_COLS if block_m is None else block_m
  if d > costs_lib.DIRECT_MAX_DIM:
    raise ValueError(f"algorithm='fused' computes costs by direct differences and takes "
                     f"d <= {costs_lib.DIRECT_MAX_DIM}; got d = {d}")
  name = costs_lib.canonical_cost(cost)
  euclidean = name == "euclidean"
  scale = (1.0 / tau if euclidean else costs_lib._inverse_temperature(name, tau))  # pylint: disable=protected-access
  scale = jnp.asarray(scale, jnp.float32)
  step = max(block_n, block_m)
  npad, mpad = -(-n // step) * step, -(-m // step) * step
  xt, yt = _padded_transpose(x, npad), _padded_transpose(y, mpad)
  ok_a, ok_b = jnp.arange(npad) < n, jnp.arange(mpad) < m
  la = jnp.where(ok_a, jnp.pad(log_a.astype(jnp.float32), (0, npad - n)), _NEG)
  lb = jnp.where(ok_b, jnp.pad(log_b.astype(jnp.float32), (0, mpad - m)), _NEG)
  run = functools.partial(_lse_rows, euclidean=euclidean, mask_diagonal=mask_diagonal,
                          block_n=block_n, block_m=block_m, num_warps=num_warps)
  # The temperature (traced) enters through the points' units: c(x, y) / tau is
  # c(s x, s y) with s = sqrt(c / tau) for the squared costs, s = 1 / tau for the
  # Euclidean one.
  s = scale if euclidean else jnp.sqrt(scale)
  xt, yt = xt * s, yt * s

  def full_iteration(_, g):
    f, _ = run(xt, yt, g, with_mean=False)
    f = jnp.where(ok_a, la - f, _NEG)
    g, _ = run(yt, xt, f, with_mean=False)
    return jnp.where(ok_b, lb - g, _NEG)

  g = jax.lax.fori_loop(0, T // 2, full_iteration, lb)
  lse, mean = run(xt, yt, g, with_mean=True)
  out = (mean / s).T[:n].astype(x.dtype)
  if not with_col_error:
    return out, jnp.zeros((), x.dtype)
  # Column mass of a_i P_ij with P_ij = exp(L_ij + g_j - lse_i): exp(g_j + logsumexp_i(
  # log a_i - lse_i + L_ij)), one more row pass on the transposed problem.
  a_norm = la - jax.scipy.special.logsumexp(la)
  col, _ = run(yt, xt, jnp.where(ok_a, a_norm - lse, _NEG), with_mean=False)
  col_mass = jnp.exp(g + col)[:m]
  b = jnp.exp(log_b - jax.scipy.special.logsumexp(log_b))
  return out, jnp.sum(jnp.abs(col_mass - b)).astype(x.dtype)
