"""The fused (Pallas) drift against the log domain and float64 NumPy. Without a GPU the
kernels run in Pallas' interpreter: the same program, so these tests check the
iteration, the padding and the masks; the GPU run is in docs/performance.md."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
from conftest import clouds
from sdrift_jax import DriftSpec, drift_field, drift_field_with_info, fused


@pytest.fixture
def small_blocks(monkeypatch):
  # 8 x 16 tiles for the clouds below: several programs, several column blocks, and
  # padded rows and columns in both half-steps.
  monkeypatch.setattr(fused, "BLOCK_ROWS", 8)
  monkeypatch.setattr(fused, "BLOCK_COLS", 16)
  jax.clear_caches()  # block sizes are read when tracing
  yield
  jax.clear_caches()


@pytest.mark.parametrize("normalization,T,cost,mask_self", [
    ("sinkhorn", 41, "sqeuclidean", False), ("sinkhorn", 8, "euclidean", True),
    ("sinkhorn", 3, "half_sqeuclidean", False), ("one_sided", 41, "sqeuclidean", True)])
@pytest.mark.parametrize("tau_rel", [1e-3, 0.05, 1.0])
def test_fused_equals_log_domain_and_float64(small_blocks, normalization, T, cost,
                                            mask_self, tau_rel):
  x, y_pos, y_neg = clouds(31, n=46, m=30, d=3)
  y_neg = None if mask_self else y_neg
  tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
  kw = dict(T=T, normalization=normalization, cost=cost, mask_self=mask_self)
  got = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="fused", **kw)
  dense = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="log", **kw)
  assert np.all(np.isfinite(got.drift))
  np.testing.assert_allclose(got.drift, dense.drift, rtol=2e-5,
                             atol=2e-5 * np.abs(dense.drift).max())
  np.testing.assert_allclose(got.marginal_error_pos, dense.marginal_error_pos, atol=1e-5)
  np.testing.assert_allclose(got.marginal_error_neg, dense.marginal_error_neg, atol=1e-5)
  expected = ref.drift(x, y_pos, y_neg, tau, T, normalization, cost, mask_self=mask_self)
  err = np.linalg.norm(got.drift - expected) / np.linalg.norm(expected)
  assert err < (2e-5 if tau_rel < 0.01 else 2e-6)


@pytest.mark.parametrize("d", [1, 2, 16])
def test_fused_with_weights_matches_float64(small_blocks, d):
  x, y_pos, y_neg = clouds(32 + d, n=37, m=21, d=d)
  rng = np.random.default_rng(d)
  wx, wp, wn = (rng.uniform(0.2, 2.0, k).astype(np.float32) for k in (37, 21, 28))
  tau = 0.1 * float(np.median(ref.cost(x, y_pos, "sqeuclidean")))
  got = drift_field(x, y_pos, y_neg, tau, T=9, algorithm="fused", weights_x=wx,
                    weights_pos=wp, weights_neg=wn)
  want = ref.drift(x, y_pos, y_neg, tau, 9, "sinkhorn", "sqeuclidean", weights_x=wx,
                   weights_pos=wp, weights_neg=wn)
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 2e-6


def test_fused_default_blocks_and_vmap():
  # The default tile (64 x 128) on clouds smaller than one tile, and a vmap over seeds
  # (Pallas batches the kernels): each slice is its own problem.
  xs = np.stack([clouds(s, n=40, m=30, d=2)[0] for s in (1, 2)])
  ys = np.stack([clouds(s, n=40, m=30, d=2)[1] for s in (1, 2)])
  run = lambda algorithm: jax.vmap(
      lambda x, y: drift_field(x, y, None, 0.5, T=5, algorithm=algorithm))(xs, ys)
  got, want = run("fused"), run("log")
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
  assert not np.allclose(got[0], got[1])


def test_fused_refuses_what_it_does_not_compute():
  x = np.zeros((8, 17), np.float32)
  with pytest.raises(ValueError, match="d <= 16"):
    drift_field(x, x + 1.0, None, 1.0, algorithm="fused")
  with pytest.raises(ValueError, match="algorithm='fused' supports normalization"):
    DriftSpec(normalization="two_sided", algorithm="fused")
