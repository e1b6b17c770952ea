"""The blocked (no N x M matrix) drift against the dense paths, and its memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.references import numpy_reference as ref
from tests.conftest import clouds
from sdrift_jax import DriftSpec, drift_field, drift_field_with_info
from sdrift_jax import costs as costs_lib
from sdrift_jax.solvers import blocked
from sdrift_jax.solvers import select as drift_spec


@pytest.fixture
def small_tiles(monkeypatch):
  # 7 rows per tile for the clouds below: several tiles and a padded last one.
  monkeypatch.setattr(blocked, "TILE_ENTRIES", 7 * 37)


@pytest.fixture
def tiles_cut_along_y(monkeypatch):
  # The half-steps cut y into blocks of 8 columns (a padded last one), 32 rows per tile.
  monkeypatch.setattr(blocked, "TILE_ENTRIES", 7 * 37)
  monkeypatch.setattr(blocked, "SPLIT_COLS_ABOVE", 8)
  monkeypatch.setattr(blocked, "MAX_TILE_COLS", 8)
  jax.clear_caches()  # tile sizes are read when tracing: no program from other sizes
  yield
  jax.clear_caches()


@pytest.mark.parametrize("normalization,T,cost,mask_self", [
    ("sinkhorn", 41, "sqeuclidean", False), ("sinkhorn", 8, "euclidean", True),
    ("sinkhorn", 3, "half_sqeuclidean", False), ("one_sided", 41, "sqeuclidean", True)])
@pytest.mark.parametrize("tau_rel", [1e-3, 0.05, 1.0])
def test_blocked_equals_dense(small_tiles, normalization, T, cost, mask_self, tau_rel):
  x, y_pos, y_neg = clouds(21, n=46, m=30, d=3)
  y_neg = None if mask_self else y_neg
  tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
  kw = dict(T=T, normalization=normalization, cost=cost, mask_self=mask_self)
  got = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="blocked", **kw)
  dense = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="log", **kw)
  assert np.all(np.isfinite(got.drift))
  np.testing.assert_allclose(got.drift, dense.drift, rtol=2e-5, atol=2e-5 * np.abs(dense.drift).max())
  np.testing.assert_allclose(got.marginal_error_pos, dense.marginal_error_pos, atol=1e-5)
  np.testing.assert_allclose(got.marginal_error_neg, dense.marginal_error_neg, atol=1e-5)
  expected = ref.drift(x, y_pos, y_neg, tau, T, normalization, cost, mask_self=mask_self)
  err = np.linalg.norm(got.drift - expected) / np.linalg.norm(expected)
  # Measured worst: 4.5e-6 at tau_rel = 1e-3 (float32 costs over a small tau), 3.3e-7
  # above; the bounds are ~5x that.
  assert err < (2e-5 if tau_rel < 0.01 else 2e-6)


# Above costs.DIRECT_MAX_DIM the squared costs leave the row constant -|x_i|^2 / tau out
# of each tile and add it once per row (the drift tile, a row softmax, drops it). Float64
# worst over d = 17 / 64, both squared costs, T = 1 / 2 / 9 / 41, masks, clouds at 0.5 and
# 3 from the origin: 2.9e-5 / 2.7e-6 / 1.5e-7 at tau_rel = 1e-3 / 1e-2 / 0.5 (the full
# costs gave 2.7e-5 / 3.6e-6 / 1.6e-7). The cases below measured 1.3e-6 / 2.7e-6 / 1.2e-7
# / 9.1e-7; bounds about 5x that.
@pytest.mark.parametrize("d,cost,normalization,mask_self,tau_rel,T,shift,bound", [
    (17, "sqeuclidean", "sinkhorn", False, 1e-3, 9, 3.0, 6e-6),
    (64, "half_sqeuclidean", "sinkhorn", True, 1e-2, 41, 0.5, 1.4e-5),
    (64, "sqeuclidean", "sinkhorn", True, 0.5, 2, 3.0, 6e-7),
    (64, "sqeuclidean", "one_sided", False, 1e-2, 1, 3.0, 5e-6),
])
def test_blocked_high_dimension_matches_float64(small_tiles, d, cost, normalization,
                                               mask_self, tau_rel, T, shift, bound):
  x, y_pos, y_neg = clouds(d, n=46, m=30, d=d, shift=shift)
  y_neg = None if mask_self else y_neg
  tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
  got = drift_field(x, y_pos, y_neg, tau, T=T, normalization=normalization, cost=cost,
                    mask_self=mask_self, algorithm="blocked")
  want = ref.drift(x, y_pos, y_neg, tau, T, normalization, cost, mask_self=mask_self)
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < bound


# Measured 3.0e-7 / 5.0e-6 / 1.3e-7 / 1.5e-6 / 4.8e-7 against float64; bounds about 5x.
@pytest.mark.parametrize("d,cost,normalization,T,mask_self,tau_rel,bound", [
    (3, "sqeuclidean", "sinkhorn", 41, False, 0.05, 1.5e-6),
    (3, "euclidean", "sinkhorn", 8, True, 1e-3, 2.5e-5),
    (3, "half_sqeuclidean", "sinkhorn", 3, False, 1.0, 1e-6),
    (64, "sqeuclidean", "sinkhorn", 9, True, 1e-2, 8e-6),
    (3, "sqeuclidean", "one_sided", 1, True, 1e-2, 2.5e-6)])
def test_tiles_cut_along_y_match_float64(tiles_cut_along_y, d, cost, normalization, T,
                                         mask_self, tau_rel, bound):
  """Half-steps with the log-sum-exp carried over blocks of y (a running max and sum per
  row), and the drift tiles' softmax accumulated online over them, masks and padded
  blocks included; the column errors against the dense path's."""
  x, y_pos, y_neg = clouds(23, n=46, m=30, d=d)
  y_neg = None if mask_self else y_neg
  tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
  kw = dict(T=T, normalization=normalization, cost=cost, mask_self=mask_self)
  got = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="blocked", **kw)
  dense = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="log", **kw)
  want = ref.drift(x, y_pos, y_neg, tau, T, normalization, cost, mask_self=mask_self)
  assert np.linalg.norm(got.drift - want) / np.linalg.norm(want) < bound
  np.testing.assert_allclose(got.marginal_error_pos, dense.marginal_error_pos, atol=1e-5)
  np.testing.assert_allclose(got.marginal_error_neg, dense.marginal_error_neg, atol=1e-5)


def test_blocked_with_weights_and_several_temperatures(small_tiles):
  x, y_pos, y_neg = clouds(22, n=40, m=37, d=2)
  rng = np.random.default_rng(0)
  w = rng.uniform(0.0, 1.0, len(x)).astype(np.float32)
  w[5] = 0.0
  kw = dict(T=21, weights_x=w)
  got = drift_field(x, y_pos, y_neg, (0.05, 0.5), algorithm="blocked", **kw)
  dense = drift_field(x, y_pos, y_neg, (0.05, 0.5), algorithm="log", **kw)
  np.testing.assert_allclose(got, dense, rtol=2e-5, atol=2e-5)


def test_blocked_rejects_normalizations_it_does_not_implement():
  x, y_pos, _ = clouds(23)
  with pytest.raises(ValueError, match="algorithm='blocked' supports"):
    drift_field(x, y_pos, None, 0.1, normalization="two_sided", algorithm="blocked")


def test_auto_picks_blocked_when_the_dense_matrices_would_not_fit(monkeypatch):
  x, y_pos, _ = clouds(24)
  shape = (x.shape[0], y_pos.shape[0], 4)
  assert DriftSpec(T=11).resolve_algorithm(*shape) == "scaling"
  monkeypatch.setattr(drift_spec, "memory_budget_bytes", lambda: 1000)
  assert DriftSpec(T=11).resolve_algorithm(*shape) == "blocked"
  np.testing.assert_allclose(drift_field(x, y_pos, None, 0.1, T=11),
                             drift_field(x, y_pos, None, 0.1, T=11, algorithm="log"),
                             rtol=2e-5, atol=2e-6)
  # A normalization without a blocked form stays dense.
  assert DriftSpec(normalization="two_sided").resolve_algorithm(*shape) == "scaling"
  assert DriftSpec(normalization="one_sided").resolve_algorithm(*shape) == "blocked"


@pytest.mark.parametrize("itemsize", [4, 8])
def test_auto_threshold_is_the_dense_matrices_bytes(monkeypatch, itemsize):
  """'auto' goes blocked exactly when DENSE_MATRICES N x M matrices of the inputs'
  item size exceed the budget (N = 40 particles, M = 37 columns, the larger side)."""
  dense = drift_spec.DENSE_MATRICES * 40 * 37 * itemsize
  for budget, want in ((dense, "scaling"), (dense - 1, "blocked")):
    monkeypatch.setattr(drift_spec, "memory_budget_bytes", lambda b=budget: b)
    assert DriftSpec().resolve_algorithm(40, 37, itemsize) == want


def test_blocked_memory_does_not_grow_with_n_times_m(monkeypatch):
  # XLA's own accounting of the compiled program: the dense path needs several N x M
  # buffers, the blocked one a [block, M] tile and O((N + M) d) vectors.
  monkeypatch.setattr(costs_lib, "TILE_ENTRIES", 1 << 16)
  n, d = 4096, 8
  x = jax.ShapeDtypeStruct((n, d), jnp.float32)
  nm_bytes = n * n * 4

  def temp_bytes(algorithm):
    fn = jax.jit(lambda x, y: drift_field(x, y, None, 0.1, T=11, algorithm=algorithm))
    return fn.lower(x, x).compile().memory_analysis().temp_size_in_bytes

  dense, tiled = temp_bytes("log"), temp_bytes("blocked")
  assert dense >= nm_bytes
  assert tiled < nm_bytes / 8, (tiled, nm_bytes)


def test_block_rows_is_the_tile_size_in_rows():
  assert blocked.block_rows(100, 30, 7 * 30) == 7
  assert blocked.block_rows(100, 30, 7 * 30 + 29) == 7  # whole rows only
  assert blocked.block_rows(100, 1, 10) == 10
  assert blocked.block_rows(5, 30, 7 * 30) == 5  # at most n
  assert blocked.block_rows(100, 1000, 10) == 1  # at least one row
  assert blocked.block_rows(100, 2 ** 20) == blocked.TILE_ENTRIES // 2 ** 20


def test_blocked_keeps_float32_with_x64_enabled(small_tiles):
  """The padded last tile must take the inputs' dtype: float64 padding would promote the
  drift and the column errors under x64."""
  with jax.enable_x64(True):
    x, y_pos, y_neg = clouds(23, n=30, m=30)
    info = drift_field_with_info(x, y_pos, y_neg, 0.5, T=5, algorithm="blocked")
    assert info.drift.dtype == jnp.float32
    assert info.marginal_error_pos.dtype == jnp.float32
    dense = drift_field(x, y_pos, y_neg, 0.5, T=5, algorithm="log")
    np.testing.assert_allclose(info.drift, dense, rtol=1e-5, atol=1e-6)
