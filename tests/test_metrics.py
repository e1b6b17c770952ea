"""W2^2 (metrics.w2_squared) against exact values it does not compute itself."""
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from sdrift_jax import metrics


def _assignment_w2(x, y):
  """W2^2 of two uniform clouds of equal size: the optimal coupling is a permutation
  (Birkhoff), found here by SciPy's Hungarian solver on float64 costs."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  cost = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
  rows, cols = linear_sum_assignment(cost)
  return cost[rows, cols].mean()


def _quantile_w2_1d(x, y):
  """W2^2 in one dimension: the integral over u in [0, 1] of the squared difference of
  the two quantile functions, exact for empirical measures of any sizes."""
  x, y = np.sort(np.asarray(x, np.float64)), np.sort(np.asarray(y, np.float64))
  cuts = np.union1d(np.arange(len(x) + 1) / len(x), np.arange(len(y) + 1) / len(y))
  mid = 0.5 * (cuts[:-1] + cuts[1:])
  qx = x[np.minimum((mid * len(x)).astype(int), len(x) - 1)]
  qy = y[np.minimum((mid * len(y)).astype(int), len(y) - 1)]
  return float(np.sum(np.diff(cuts) * (qx - qy) ** 2))


@pytest.mark.parametrize("n,d,seed", [(7, 2, 0), (40, 3, 1), (120, 6, 2)])
def test_equal_sizes_match_scipy_assignment(n, d, seed):
  """Equal-size uniform clouds: W2^2 equals the Hungarian assignment's mean squared
  distance. Both are exact in float64; 1e-9 relative leaves room for summation order."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  y = 1.5 * rng.normal(size=(n, d)) + 0.7
  assert metrics.w2_squared(x, y) == pytest.approx(_assignment_w2(x, y), rel=1e-9)


@pytest.mark.parametrize("shift", [[0.3, -0.4], [3.0, 1.0], [-10.0, 2.5]])
def test_translated_cloud_is_the_squared_shift(shift):
  """W2^2 between a cloud and its translate by t is exactly |t|^2 (the translation is the
  optimal map); a Euclidean or halved ground cost would give |t| or |t|^2 / 2."""
  x = np.random.default_rng(3).normal(size=(50, 2))
  t = np.asarray(shift)
  assert metrics.w2_squared(x, x + t) == pytest.approx(float(t @ t), rel=1e-9)


def test_mean_shift_identity_with_unequal_sizes():
  """W2^2 = |m_x - m_y|^2 + W2^2 of the centred clouds, so moving y by t changes W2^2 by
  |m_x - m_y - t|^2 - |m_x - m_y|^2 exactly, for any sizes N != M."""
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(30, 3)), rng.normal(size=(45, 3)) + 0.5
  t = np.array([0.8, -1.1, 0.2])
  dm = x.mean(0) - y.mean(0)
  expected = metrics.w2_squared(x, y) + (dm - t) @ (dm - t) - dm @ dm
  assert metrics.w2_squared(x, y + t) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n,m", [(10, 10), (12, 7), (25, 40)])
def test_one_dimension_matches_quantile_formula(n, m):
  """In 1-D W2^2 has a closed form (quantile functions), also for unequal sizes, where the
  optimal plan splits mass: this checks the uniform weights 1/N and 1/M."""
  rng = np.random.default_rng(n + m)
  x, y = rng.normal(size=n), 2.0 * rng.normal(size=m) + 1.0
  got = metrics.w2_squared(x[:, None], y[:, None])
  assert got == pytest.approx(_quantile_w2_1d(x, y), rel=1e-9)


def test_identical_and_permuted_clouds_give_zero():
  x = np.random.default_rng(5).normal(size=(33, 4))
  assert metrics.w2_squared(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)


def test_float32_input_is_computed_in_float64():
  """A float32 cloud at large offset: the float64 cost keeps the small W2^2 exact
  (float32 squared distances at |x| ~ 1e3 would lose it)."""
  x = (1e3 + np.random.default_rng(6).normal(size=(20, 2))).astype(np.float32)
  t = np.array([1e-2, 0.0], np.float32)
  y = x + t
  shift = (y.astype(np.float64) - x.astype(np.float64))[:, 0]  # float32 rounding of x + t
  assert metrics.w2_squared(x, y) == pytest.approx(float(np.mean(shift ** 2)), rel=1e-6)


def test_non_finite_gives_nan_and_bad_shapes_raise():
  x = np.zeros((4, 2))
  y = np.ones((5, 2))
  y[2, 1] = np.inf
  assert np.isnan(metrics.w2_squared(x, y))
  assert np.isnan(metrics.w2_squared(y, x))
  with pytest.raises(ValueError, match="w2_squared needs"):
    metrics.w2_squared(x, np.ones((5, 3)))
  for bad in ((np.zeros(4), np.zeros(4)), (x, np.zeros(4)), (np.zeros(4), x)):
    with pytest.raises(ValueError, match="w2_squared needs"):
      metrics.w2_squared(*bad)
