"""W2^2 (metrics.w2_squared) against exact values it does not compute itself."""
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from sdrift_jax.evaluation import metrics


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


# k-NN precision and recall (metrics.knn_precision_recall).


def _brute_force_precision_recall(real, fake, k):
  """Kynkaanniemi et al.'s definition written out with explicit loops: the radius of a
  sample is the k-th smallest distance to the other samples of its set; a point is in a
  manifold if it is within (<=) the radius of some sample of it."""
  def dist(a, b):
    return float(np.sqrt(sum((float(ai) - float(bi)) ** 2 for ai, bi in zip(a, b))))

  def radii(x):
    out = []
    for i in range(len(x)):
      others = sorted(dist(x[i], x[j]) for j in range(len(x)) if j != i)
      out.append(others[k - 1])
    return out

  def share(points, centres, r):
    hits = 0
    for p in points:
      hits += any(dist(p, c) <= r[j] for j, c in enumerate(centres))
    return hits / len(points)
  return share(fake, real, radii(real)), share(real, fake, radii(fake))


@pytest.mark.parametrize("n,m,d,k,seed", [(15, 12, 2, 1, 0), (20, 25, 3, 3, 1),
                                          (30, 18, 5, 5, 2)])
def test_knn_precision_recall_matches_brute_force(n, m, d, k, seed):
  """Fractions of the same small counts: exact equality. The fake cloud is shifted so
  that both values are strictly between 0 and 1."""
  rng = np.random.default_rng(seed)
  real = rng.normal(size=(n, d))
  fake = rng.normal(size=(m, d)) + 1.0
  want = _brute_force_precision_recall(real, fake, k)
  assert 0.0 < want[0] < 1.0 and 0.0 < want[1] < 1.0
  assert metrics.knn_precision_recall(real, fake, k=k) == want


def test_knn_boundary_counts_as_inside_and_duplicates_are_neighbours():
  """Integer points, so distances are exact. Real {0, 1, 3} on a line with k = 1: radii
  1, 1, 2. The fake point 5 lies exactly on the ball of 3 (inside with <=, outside with
  <), 5.1 outside every ball. Real {0, 0, 10, 11}, k = 1: the duplicate 0 is a
  neighbour at distance 0, so the balls of the zeros have radius 0 and hold only 0
  itself (were duplicates skipped, their radius would be 10 and hold 0.5 and 5 too)."""
  real = np.array([[0.0], [1.0], [3.0]])
  assert metrics.knn_precision_recall(real, np.array([[5.0], [5.1]]), k=1)[0] == 0.5
  real = np.array([[0.0], [0.0], [10.0], [11.0]])
  fake = np.array([[0.0], [0.5], [5.0]])
  assert metrics.knn_precision_recall(real, fake, k=1)[0] == 1 / 3


def test_knn_identical_sets_and_far_apart_sets():
  x = np.random.default_rng(7).normal(size=(40, 3))
  assert metrics.knn_precision_recall(x, x) == (1.0, 1.0)
  assert metrics.knn_precision_recall(x, x[::-1].astype(np.float32)) == (1.0, 1.0)
  assert metrics.knn_precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_knn_mode_dropping_keeps_precision_and_halves_recall():
  """Real: two unit Gaussians 40 apart (400 samples each); fake: 400 samples of the first
  only. No ball reaches across the gap (the largest radius is 1.3 here, 2.1 over seeds
  0-29), so recall counts only the first cluster's real samples: <= 0.5 exactly; measured
  0.491 (0.478-0.496 over seeds 0-29), bound 0.45. Precision measured 0.955 (0.94-1.0
  over seeds), bound 0.9. The same fake budget spread over both clusters: recall
  measured 0.961, bound 0.9."""
  rng = np.random.default_rng(8)
  centres = np.array([[0.0, 0.0], [40.0, 0.0]])
  real = np.concatenate([rng.normal(size=(400, 2)) + c for c in centres])
  fake = rng.normal(size=(400, 2)) + centres[0]
  both = np.concatenate([rng.normal(size=(200, 2)) + c for c in centres])
  precision, recall = metrics.knn_precision_recall(real, fake)
  assert precision >= 0.9
  assert 0.45 <= recall <= 0.5
  assert metrics.knn_precision_recall(real, both)[1] >= 0.9


def test_knn_chunking_does_not_change_the_result():
  rng = np.random.default_rng(9)
  real, fake = rng.normal(size=(50, 4)), 1.3 * rng.normal(size=(37, 4)) + 0.4
  want = metrics.knn_precision_recall(real, fake, k=3, batch=1024)
  for batch in (1, 7, 37, 50):
    assert metrics.knn_precision_recall(real, fake, k=3, batch=batch) == want


def test_knn_bad_inputs_raise():
  x, y = np.zeros((5, 2)), np.ones((6, 2))
  bad_y = y.copy()
  bad_y[1, 0] = np.nan
  cases = [
      (dict(real=np.zeros(5), fake=y), "real must have shape"),
      (dict(real=x, fake=np.zeros((6, 2, 1))), "fake must have shape"),
      (dict(real=np.zeros((5, 0)), fake=np.zeros((6, 0))), "real must have shape"),
      (dict(real=x, fake=np.ones((6, 3))), "feature dimensions differ"),
      (dict(real=x, fake=bad_y), "fake contains NaN or inf"),
      (dict(real=np.full((5, 2), np.inf), fake=y), "real contains NaN or inf"),
      (dict(real=x[:3], fake=y), r"real needs more than k = 3 samples, got 3"),
      (dict(real=x, fake=y, k=5), r"fake needs more than k = 5 samples|real needs more"),
      (dict(real=x, fake=y, k=0), "k must be a positive integer"),
      (dict(real=x, fake=y, k=2.0), "k must be a positive integer"),
      (dict(real=x, fake=y, batch=0), "batch must be a positive integer"),
  ]
  for kwargs, match in cases:
    with pytest.raises(ValueError, match=match):
      metrics.knn_precision_recall(**kwargs)
