"""Pairwise ground costs, named explicitly.

The paper's theory uses ``0.5 |x - y|^2``; its MNIST section, the reference code's
"Gaussian" kernel and ott-jax's ``SqEuclidean`` use ``|x - y|^2``; Deng et al.'s
"Laplacian" kernel uses ``|x - y|``. With ``cost='sqeuclidean'`` our ``tau`` is exactly
ott-jax's ``epsilon``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["block_rows", "canonical_cost", "COST_ALIASES", "COSTS", "DIRECT_MAX_DIM",
           "HIGHEST", "mean_cost", "pairwise_cost", "row_constant", "row_shifted_logits",
           "shifted_logits", "shifts_rows", "squared_distances", "summed_cost",
           "tile_entries", "TILE_ENTRIES"]

#: The precision of every product of the drift and its costs: at small tau an error in a
#: cost is amplified by 1 / tau, and GPUs would otherwise use TF32 for float32 matmuls.
HIGHEST = jax.lax.Precision.HIGHEST

#: Canonical cost names.
COSTS = ("sqeuclidean", "half_sqeuclidean", "euclidean")
#: Kernel names accepted as aliases of a cost (the kernel is ``exp(-cost / tau)``).
COST_ALIASES = {"gaussian": "sqeuclidean", "laplacian": "euclidean"}


def canonical_cost(cost: str) -> str:
  """Returns the canonical cost name for ``cost`` or an alias; raises on unknown names."""
  if not isinstance(cost, str):
    raise ValueError(f"cost must be a string, one of {COSTS + tuple(COST_ALIASES)}; got {cost!r}")
  name = COST_ALIASES.get(cost, cost)
  if name not in COSTS:
    raise ValueError(
        f"unknown cost {cost!r}: expected one of {COSTS} or the kernel aliases "
        f"{tuple(COST_ALIASES)}")
  return name


#: Up to this dimension distances are summed from coordinate differences: exact at zero
#: distance, and one fused N x M pass (timings: docs/notes.md). Above it the matmul
#: expansion is used, whose rounding is about ``1e-7 * (|x|^2 + |y|^2)``.
DIRECT_MAX_DIM = 16


def squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """Pairwise ``|x_i - y_j|^2``.

  Args:
    x: array of shape ``[N, d]``.
    y: array of shape ``[M, d]``.

  Returns:
    Array of shape ``[N, M]``, clipped at zero against rounding.
  """
  if x.shape[-1] <= DIRECT_MAX_DIM:
    sq = jnp.zeros((x.shape[0], y.shape[0]), jnp.result_type(x, y))
    for k in range(x.shape[-1]):
      diff = x[:, k, None] - y[None, :, k]
      sq = sq + diff * diff
    return sq
  # The expansion |x|^2 + |y|^2 - 2 x.y turns the N*M*d work into one matmul.
  # HIGHEST precision: at small tau an error in the cost is amplified by 1 / tau, and
  # GPUs would otherwise use TF32 for float32 matmuls.
  xx = jnp.sum(x * x, axis=-1)
  yy = jnp.sum(y * y, axis=-1)
  xy = jnp.matmul(x, y.T, precision=HIGHEST)
  return jnp.maximum(xx[:, None] + yy[None, :] - 2.0 * xy, 0.0)


def shifts_rows(cost: str, d: int) -> bool:
  """Whether :func:`row_shifted_logits` leaves a row constant out at dimension ``d``."""
  return canonical_cost(cost) != "euclidean" and d > DIRECT_MAX_DIM


def _inverse_temperature(cost: str, tau):
  """``c / tau`` with ``C = c |x - y|^2`` for the squared costs."""
  return (1.0 if canonical_cost(cost) == "sqeuclidean" else 0.5) / tau


def row_shifted_logits(x: jax.Array, y: jax.Array, tau, cost: str):
  """``-C(x, y) / tau`` up to a constant per row, or None where that is no cheaper.

  For the squared costs above :data:`DIRECT_MAX_DIM`, ``-|x_i - y_j|^2`` is
  ``2 x_i.y_j - |y_j|^2`` minus the row constant ``|x_i|^2``. A row softmax and a
  Sinkhorn coupling (whose row scaling absorbs it) do not see a row constant, so their
  callers may drop it: one add and the clip at zero fewer per entry, and no rounding
  from ``|x_i|^2``. The logits are then at most ``|x_i|^2 / tau`` instead of at most 0.
  Returns None for the Euclidean cost and at small ``d`` (the direct form is exact at
  zero distance there).
  """
  if not shifts_rows(cost, x.shape[-1]):
    return None
  xy = jnp.matmul(x, y.T, precision=HIGHEST)
  return (2.0 * xy - jnp.sum(y * y, axis=-1)[None, :]) * _inverse_temperature(cost, tau)


def shifted_logits(x: jax.Array, y: jax.Array, tau, cost: str) -> jax.Array:
  """``-C(x, y) / tau`` up to a constant per row (:func:`row_constant`): the row-shifted
  logits where they are cheaper, else the logits themselves. For row softmaxes and
  row log-sum-exps, which see a row constant only as that constant."""
  shifted = row_shifted_logits(x, y, tau, cost)
  return -pairwise_cost(x, y, cost) / tau if shifted is None else shifted


def row_constant(x: jax.Array, tau, cost: str) -> jax.Array:
  """The row constant :func:`shifted_logits` leaves out: ``-C(x, y) / tau`` is
  ``shifted_logits(x, y, tau, cost) + row_constant(x, tau, cost)[:, None]`` (up to the
  clip of the squared distance at zero); zeros where nothing is left out."""
  if not shifts_rows(cost, x.shape[-1]):
    return jnp.zeros(x.shape[:1], x.dtype)
  return -jnp.sum(x * x, axis=-1) * _inverse_temperature(cost, tau)


def pairwise_cost(x: jax.Array, y: jax.Array, cost: str = "sqeuclidean") -> jax.Array:
  """Pairwise cost matrix ``C[i, j] = c(x_i, y_j)``.

  Args:
    x: array of shape ``[N, d]``.
    y: array of shape ``[M, d]``.
    cost: ``'sqeuclidean'`` (``|x - y|^2``), ``'half_sqeuclidean'``
      (``0.5 |x - y|^2``) or ``'euclidean'`` (``|x - y|``); ``'gaussian'`` and
      ``'laplacian'`` are aliases of the first and the last.

  Returns:
    Array of shape ``[N, M]``.
  """
  name = canonical_cost(cost)
  sq = squared_distances(x, y)
  if name == "sqeuclidean":
    return sq
  if name == "half_sqeuclidean":
    return 0.5 * sq
  return jnp.sqrt(sq)


# Target number of entries of one [block, M] logit tile (float32: 16 MiB). Tiles stay
# under glibc's largest mmap threshold (32 MiB), so the CPU allocator reuses their memory
# between calls instead of mapping fresh pages that fault in every time: at N = M = 65536,
# d = 64, T = 3, 2^24-entry tiles took 177 s (151 s of it in the kernel), 2^22 65 s.
TILE_ENTRIES = 1 << 22
def tile_entries(n: int, m: int) -> int:
  """Entries per tile of an ``n x m`` problem: :data:`TILE_ENTRIES`, or an eighth of the
  problem when that is smaller, so that a small problem is not computed as one tile the
  size of its whole matrix (memory linear in ``n + m`` at every size)."""
  return int(max(m, min(TILE_ENTRIES, (n * m) // 8)))


def block_rows(n: int, m: int, entries: int | None = None) -> int:
  """Rows per block so that a ``[block, m]`` tile has about ``entries`` entries
  (default :func:`tile_entries`)."""
  entries = tile_entries(n, m) if entries is None else entries
  return int(max(1, min(n, entries // max(m, 1))))


def summed_cost(x, y, cost, mask_diagonal=False):
  """``sum_ij C(x_i, y_j)`` over row tiles (no ``N x M`` matrix beyond one tile)."""
  n, m = x.shape[0], y.shape[0]
  block = block_rows(n, m)
  nb = -(-n // block)
  pad = nb * block - n
  xs = jnp.concatenate([x, jnp.zeros((pad, x.shape[1]), x.dtype)]).reshape(nb, block, -1)
  rows = jnp.arange(nb * block).reshape(nb, block)

  def tile(args):
    xb, ib = args
    c = pairwise_cost(xb, y, cost)
    keep = (ib < n)[:, None]
    if mask_diagonal:
      keep = keep & (ib[:, None] != jnp.arange(m)[None, :])
    return jnp.sum(jnp.where(keep, c, 0.0))

  return jnp.sum(jax.lax.map(tile, (xs, rows)))


def mean_cost(x, y_pos, y_neg, cost, mask_self):
  """Mean cost over the pairs ``(x_i, y_pos_j)`` and ``(x_i, y_neg_j)``, self pairs left
  out when ``mask_self``: the unit of a relative temperature."""
  n = x.shape[0]
  total = (summed_cost(x, y_pos, cost, False) + summed_cost(x, y_neg, cost, mask_self))
  count = n * y_pos.shape[0] + n * y_neg.shape[0] - (n if mask_self else 0)
  return total / count
