"""Pairwise ground costs against float64 NumPy, on both evaluation paths."""
import numpy as np
import pytest

import jax.numpy as jnp
from sdrift_jax import costs as costs_lib


def _float64_costs(x, y):
  diff = x[:, None, :].astype(np.float64) - y[None, :, :].astype(np.float64)
  sq = np.sum(diff * diff, axis=-1)
  return {"sqeuclidean": sq, "half_sqeuclidean": 0.5 * sq, "euclidean": np.sqrt(sq),
          "gaussian": sq, "laplacian": np.sqrt(sq)}


@pytest.mark.parametrize("d", [1, 3, 16, 17, 64])
def test_pairwise_cost_matches_float64(d):
  """Every name on the coordinate-sum path (d <= 16) and the matmul path (d > 16).
  float32 rounding: ~1e-7 relative (direct), ~1e-7 (|x|^2 + |y|^2) (matmul); the
  bounds are 10x that."""
  rng = np.random.default_rng(d)
  x = rng.normal(size=(13, d)).astype(np.float32)
  y = (rng.normal(size=(9, d)) + 0.5).astype(np.float32)
  scale = np.add.outer(np.sum(x.astype(np.float64) ** 2, 1), np.sum(y.astype(np.float64) ** 2, 1))
  sq = _float64_costs(x, y)["sqeuclidean"]
  tol = 1e-6 * (sq if d <= costs_lib.DIRECT_MAX_DIM else scale)
  for name, want in _float64_costs(x, y).items():
    got = np.asarray(costs_lib.pairwise_cost(x, y, name), np.float64)
    assert got.shape == (13, 9)
    factor = 0.5 if name == "half_sqeuclidean" else 1.0
    if name in ("euclidean", "laplacian"):  # compare the squares: same rounding bound
      got, want = got ** 2, want ** 2
    assert np.all(np.abs(got - want) <= factor * tol), name


def test_zero_distance_is_exactly_zero_and_never_negative():
  """The coordinate-sum path (d <= 16, also at d = 16 exactly) is exact at x = y; the
  matmul path is clipped at zero. 20 points: more rows than DIRECT_MAX_DIM."""
  rng = np.random.default_rng(0)
  for d in (2, 16, 40):
    x = (10.0 * rng.normal(size=(20, d))).astype(np.float32)
    c = np.asarray(costs_lib.squared_distances(x, x))
    assert np.all(c >= 0)
    if d <= costs_lib.DIRECT_MAX_DIM:
      np.testing.assert_array_equal(np.diag(c), 0.0)
    assert np.all(np.asarray(costs_lib.pairwise_cost(x, x, "euclidean")) >= 0)


def test_cost_names_and_aliases():
  assert costs_lib.canonical_cost("gaussian") == "sqeuclidean"
  assert costs_lib.canonical_cost("laplacian") == "euclidean"
  for name in costs_lib.COSTS:
    assert costs_lib.canonical_cost(name) == name
  with pytest.raises(ValueError, match="unknown cost 'cosine'"):
    costs_lib.canonical_cost("cosine")
  with pytest.raises(ValueError, match="cost must be a string"):
    costs_lib.canonical_cost(None)


@pytest.mark.parametrize("d", [2, 40])
def test_costs_keep_the_input_dtype(d):
  x = np.ones((3, d), np.float16)
  for name in costs_lib.COSTS:
    assert costs_lib.pairwise_cost(x, 2 * x, name).dtype == np.float16


@pytest.mark.parametrize("d", [2, 16])
def test_nearby_points_far_from_the_origin_stay_accurate_up_to_d_16(d):
  """Up to d = 16 distances are summed from coordinate differences (20 points: more rows
  than 16), accurate for nearby points at |x| ~ 1e3 where the matmul expansion
  |x|^2 + |y|^2 - 2 x.y would lose everything to cancellation (rounding ~0.1 against
  squared distances ~1e-4). Measured ~1e-7 relative; bound 1e-5."""
  rng = np.random.default_rng(d)
  x = (1e3 + 1e-2 * rng.normal(size=(20, d))).astype(np.float32)
  y = (x[:15] + 1e-2 * rng.normal(size=(15, d))).astype(np.float32)
  want = _float64_costs(x, y)["sqeuclidean"]
  np.testing.assert_allclose(costs_lib.pairwise_cost(x, y), want, rtol=1e-5)


def test_small_distances_in_high_dimension_are_not_clipped():
  """The matmul path clips rounding below zero, nothing else: squared distances ~0.2
  at d = 40 (scale of the rounding, ~1e-7 (|x|^2 + |y|^2) ~ 1e-8, is far below)."""
  rng = np.random.default_rng(1)
  x = (0.05 * rng.normal(size=(12, 40))).astype(np.float32)
  y = (0.05 * rng.normal(size=(10, 40))).astype(np.float32)
  want = _float64_costs(x, y)["sqeuclidean"]
  assert want.max() < 1.0
  np.testing.assert_allclose(costs_lib.pairwise_cost(x, y, "sqeuclidean"), want,
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cost,scale", [("sqeuclidean", 1.0), ("gaussian", 1.0),
                                        ("half_sqeuclidean", 0.5)])
def test_row_shifted_logits_are_the_logits_plus_a_row_constant(cost, scale):
  """Above DIRECT_MAX_DIM: -C / tau + |x_i|^2 / tau (float64 reference, far from the
  origin); None for the Euclidean cost and at small d."""
  rng = np.random.default_rng(3)
  x = (rng.normal(size=(20, 40)) + 2.0).astype(np.float32)
  y = (rng.normal(size=(25, 40)) + 2.0).astype(np.float32)
  tau = 3.0
  got = costs_lib.row_shifted_logits(x, y, tau, cost)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  sq = np.sum((x64[:, None] - y64[None]) ** 2, axis=-1)
  want = scale * (-sq + np.sum(x64 ** 2, axis=1)[:, None]) / tau
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.max(np.abs(want)))
  assert costs_lib.row_shifted_logits(x, y, tau, "euclidean") is None
  assert costs_lib.row_shifted_logits(x[:, :16], y[:, :16], tau, cost) is None


@pytest.mark.parametrize("cost,scale", [("sqeuclidean", 1.0), ("half_sqeuclidean", 0.5)])
def test_row_constant_completes_the_row_shifted_logits(cost, scale):
  """row_shifted_logits + row_constant is -C / tau (float64 reference, far from the
  origin, where the constant is large)."""
  rng = np.random.default_rng(4)
  x = (rng.normal(size=(20, 40)) + 2.0).astype(np.float32)
  y = (rng.normal(size=(25, 40)) + 2.0).astype(np.float32)
  tau = 3.0
  const = costs_lib.row_constant(x, tau, cost)
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(const, -scale * np.sum(x64 ** 2, axis=1) / tau, rtol=1e-6)
  got = costs_lib.row_shifted_logits(x, y, tau, cost) + const[:, None]
  sq = np.sum((x64[:, None] - y.astype(np.float64)[None]) ** 2, axis=-1)
  want = -scale * sq / tau
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.max(np.abs(want)))


def test_row_constant_is_zero_where_the_logits_are_whole():
  """shifted_logits is -C / tau itself for the Euclidean cost and at small d."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(6, 16)).astype(np.float32)
  y = rng.normal(size=(5, 16)).astype(np.float32)
  for cost, xs, ys in (("euclidean", np.tile(x, 2), np.tile(y, 2)), ("sqeuclidean", x, y)):
    np.testing.assert_array_equal(costs_lib.row_constant(xs, 2.0, cost), np.zeros(6))
    np.testing.assert_array_equal(costs_lib.shifted_logits(xs, ys, 2.0, cost),
                                  -costs_lib.pairwise_cost(xs, ys, cost) / 2.0)
