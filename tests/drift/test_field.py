"""drift_field against float64 NumPy, the paper's conventions and its invariants."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.references import numpy_reference as ref
from tests.conftest import clouds
from sdrift_jax import NORMALIZATIONS, drift_field, drift_field_with_info
from sdrift_jax.solvers import blocked
from sdrift_jax.solvers import select as drift_spec
from sdrift_jax.drift import field as drift_lib

COSTS = ("sqeuclidean", "half_sqeuclidean", "euclidean")


@pytest.fixture
def small_tiles(monkeypatch):
  # 7 rows per tile for 30 x 30 problems: several tiles and a padded last one.
  monkeypatch.setattr(blocked, "TILE_ENTRIES", 7 * 30)


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("weighted", [False, True])
def test_T1_and_one_sided_are_the_float64_row_softmax(cost, weighted):
  """Sinkhorn at T = 1 and 'one_sided' against the row softmax written out in float64
  (no Sinkhorn loop). Measured error ~2e-7 relative; 2e-6 is a 10x margin."""
  x, y_pos, y_neg = clouds(1)
  rng = np.random.default_rng(2)
  w = {}
  if weighted:
    w = dict(weights_pos=rng.uniform(0.2, 1, len(y_pos)).astype(np.float32),
             weights_neg=rng.uniform(0.2, 1, len(y_neg)).astype(np.float32))
  expected = ref.row_softmax_drift(x, y_pos, y_neg, 0.4, cost, **w)
  for kw in (dict(T=1), dict(T=41, normalization="one_sided")):
    v = drift_field(x, y_pos, y_neg, 0.4, cost=cost, **w, **kw)
    assert rel_err(v, expected) < 2e-6, kw


@pytest.mark.parametrize("k", [0, 1, 2, 5, 20])
def test_T_2k_plus_1_is_k_full_iterations_of_the_reference_code(k):
  x, y_pos, y_neg = clouds(2, n=30, m=25)
  tau = 0.7
  expected = []
  for y in (y_pos, y_neg):
    K = np.exp(-ref.cost(x, y, "sqeuclidean") / tau)
    expected.append(ref.reference_code_coupling(K, k) @ y.astype(np.float64))
  v = drift_field(x, y_pos, y_neg, tau, T=2 * k + 1)
  np.testing.assert_allclose(v, expected[0] - expected[1], rtol=1e-4, atol=1e-5)
  # An even T ends with a column step, which the final row normalization follows: the
  # float64 reference at T = 2k + 2 (its own loop, ending in a column step).
  assert rel_err(drift_field(x, y_pos, y_neg, tau, T=2 * k + 2),
                 ref.drift(x, y_pos, y_neg, tau, 2 * k + 2)) < 1e-5


def test_numpy_reference_log_domain_matches_plain_eq_11():
  # The log-domain reference used below agrees with eq. 11 applied literally.
  x, y, _ = clouds(3)
  a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
  L = -ref.cost(x, y, "sqeuclidean") / 0.8
  for T in (1, 2, 3, 8, 15):
    pi = ref.plain_sinkhorn_plan(np.exp(L), a, b, T)
    P_plain = pi / pi.sum(1, keepdims=True)
    P_log, _ = ref.log_couplings(L, L, a, b, b, "sinkhorn", T)
    np.testing.assert_allclose(P_log, P_plain, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("normalization,cost,mask_self,weighted",
                         list(itertools.product(NORMALIZATIONS, COSTS, [False, True],
                                                [False, True])))
def test_matches_float64_numpy(normalization, cost, mask_self, weighted):
  x, y_pos, _ = clouds(4, n=36, m=28, d=5)
  rng = np.random.default_rng(5)
  w = {}
  if weighted:
    w = dict(weights_x=rng.uniform(0.2, 1, 36).astype(np.float32),
             weights_pos=rng.uniform(0.2, 1, 28).astype(np.float32),
             weights_neg=rng.uniform(0.2, 1, 36).astype(np.float32))
  tau = {"sqeuclidean": 2.0, "half_sqeuclidean": 1.0, "euclidean": 0.5}[cost]
  v = drift_field(x, y_pos, x, tau, T=9, normalization=normalization, cost=cost,
                  mask_self=mask_self, **w)
  expected = ref.drift(x, y_pos, x, tau, 9, normalization, cost, mask_self, **w)
  assert rel_err(v, expected) < 2e-5


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.long
def test_multi_temperature_is_rms_normalized_sum(normalization):
  x, y_pos, y_neg = clouds(6)
  taus = [0.2, 0.5, 2.0]
  v = drift_field(x, y_pos, y_neg, taus, T=7, normalization=normalization)
  expected = ref.drift(x, y_pos, y_neg, taus, 7, normalization)
  assert rel_err(v, expected) < 2e-5
  # A single tau is not normalized; a one-element sequence is.
  v1 = drift_field(x, y_pos, y_neg, 0.5, T=7, normalization=normalization)
  vs = drift_field(x, y_pos, y_neg, [0.5], T=7, normalization=normalization)
  np.testing.assert_allclose(vs, v1 / np.sqrt(np.mean(np.square(v1))), rtol=1e-5)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("cost", COSTS)
def test_p_equals_q_gives_zero_drift(normalization, cost):
  # Paper Prop. 3.5: positives a permutation of the particles, negatives the particles.
  x, _, _ = clouds(7, n=50, d=4)
  y_pos = x[np.random.default_rng(8).permutation(len(x))]
  info = drift_field_with_info(x, y_pos, x, 0.3, T=41, normalization=normalization,
                               cost=cost)
  # Measured max |V| ~7e-7 (float32 rounding of drifts of size ~1).
  assert np.max(np.abs(info.drift)) < 1e-5
  # V = 0 holds at every T, so also check that the couplings are the float64 ones at this
  # T: their column errors (~1e-3 here for Sinkhorn, they halve from T = 21 to 41) agree
  # to 1e-3 relative (measured ~1e-5).
  want_pos, want_neg = ref.column_errors(x, y_pos, x, 0.3, 41, normalization, cost)
  np.testing.assert_allclose(info.marginal_error_pos, want_pos, rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(info.marginal_error_neg, want_neg, rtol=1e-3, atol=1e-6)


def test_masking_breaks_p_equals_q():
  # The baselines' self-mask is a heuristic: with it, p = q no longer gives V = 0.
  x, _, _ = clouds(7, n=50, d=4)
  v = drift_field(x, x, x, 0.3, normalization="one_sided", mask_self=True)
  assert np.max(np.abs(v)) > 1e-2


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_permutation_and_translation_equivariance(normalization):
  x, y_pos, y_neg = clouds(9)
  rng = np.random.default_rng(10)
  px, pp, pn = (rng.permutation(len(a)) for a in (x, y_pos, y_neg))
  v = drift_field(x, y_pos, y_neg, 0.5, T=11, normalization=normalization)
  v_perm = drift_field(x[px], y_pos[pp], y_neg[pn], 0.5, T=11, normalization=normalization)
  np.testing.assert_allclose(v_perm, np.asarray(v)[px], rtol=1e-4, atol=1e-5)
  shift = np.array([3.0, -2.0, 0.5], np.float32)
  v_shift = drift_field(x + shift, y_pos + shift, y_neg + shift, 0.5, T=11,
                        normalization=normalization)
  # Measured max |dV| ~1.4e-6 (float32 rounding of the shifted inputs, |V| ~ 2).
  np.testing.assert_allclose(v_shift, v, rtol=0, atol=1e-5)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("cost", COSTS)
def test_tiny_tau_stays_finite_and_matches_float64(normalization, cost):
  # tau = 1e-4 of the median cost: the kernel underflows in float32, the log domain not.
  x, y_pos, _ = clouds(11, n=32, m=32, d=2)
  C = ref.cost(x, y_pos, cost)
  tau = 1e-4 * float(np.median(C))
  v = drift_field(x, y_pos, None, tau, T=41, normalization=normalization, cost=cost)
  assert np.all(np.isfinite(v))
  expected = ref.drift(x, y_pos, None, tau, 41, normalization, cost)
  # Nearly hard assignments: a cost rounding of 1e-7 relative moves logits by ~1e-3.
  # Measured worst 5.5e-6 (joint form, Euclidean cost), most cases below 1e-6; 3e-5
  # is ~5x the worst.
  assert rel_err(v, expected) < 3e-5


def test_positive_part_is_a_convex_combination_matching_float64():
  """With one negative at the origin V = P_pos @ y_pos: inside the positives' bounding
  box, and equal to the float64 reference at the same T (measured 1.1e-7 relative; the
  drift at T = 21 differs from T = 41 by 0.26, so 1e-5 pins the iteration count)."""
  x, y_pos, _ = clouds(12)
  y_neg = np.zeros((1, 3), np.float32)
  v = np.asarray(drift_field(x, y_pos, y_neg, 0.05, T=41))
  lo, hi = y_pos.min(0), y_pos.max(0)
  assert np.all(v >= lo - 1e-5) and np.all(v <= hi + 1e-5)
  assert rel_err(v, ref.drift(x, y_pos, y_neg, 0.05, 41)) < 1e-5


@pytest.mark.parametrize("normalization,T,weighted", [
    ("sinkhorn", 3, False), ("sinkhorn", 8, True), ("one_sided", 1, True),
    ("two_sided", 1, False), ("two_sided_joint", 1, True)])
def test_marginal_errors_are_float64_column_errors(normalization, T, weighted):
  """``marginal_error_pos/neg`` against ``sum_j |sum_i a_i P[i, j] - b_j|`` of the
  float64 couplings. Errors here are 1e-2 to 1; float32 gives ~1e-6 relative."""
  x, y_pos, y_neg = clouds(15, n=30, m=22)
  rng = np.random.default_rng(16)
  w = {}
  if weighted:
    w = dict(weights_x=rng.uniform(0.2, 1, 30).astype(np.float32),
             weights_pos=rng.uniform(0.2, 1, 22).astype(np.float32),
             weights_neg=rng.uniform(0.2, 1, 29).astype(np.float32))
  info = drift_field_with_info(x, y_pos, y_neg, 0.6, T=T, normalization=normalization, **w)
  want_pos, want_neg = ref.column_errors(x, y_pos, y_neg, 0.6, T, normalization, **w)
  assert min(want_pos, want_neg) > 1e-3
  np.testing.assert_allclose(info.marginal_error_pos, want_pos, rtol=1e-4)
  np.testing.assert_allclose(info.marginal_error_neg, want_neg, rtol=1e-4)


@pytest.mark.long
def test_marginal_error_shrinks_with_T():
  x, y_pos, y_neg = clouds(13)
  errs = [float(drift_field_with_info(x, y_pos, y_neg, 0.5, T=T).marginal_error_pos)
          for T in (1, 3, 11, 41, 201)]
  assert all(b < a for a, b in zip(errs, errs[1:])), errs
  assert errs[-1] < 1e-5
  info = drift_field_with_info(x, y_pos, y_neg, [0.5, 1.0], T=3)
  assert info.marginal_error_neg.shape == (2,)
  # One error per temperature, in the order given.
  for i, tau in enumerate((0.5, 1.0)):
    want_pos, want_neg = ref.column_errors(x, y_pos, y_neg, tau, 3)
    np.testing.assert_allclose(info.marginal_error_pos[i], want_pos, rtol=1e-4)
    np.testing.assert_allclose(info.marginal_error_neg[i], want_neg, rtol=1e-4)


@pytest.mark.long
def test_jit_and_vmap_friendly():
  xs = np.stack([clouds(s)[0] for s in range(3)])
  _, y_pos, y_neg = clouds(0)
  batched = jax.vmap(lambda x: drift_field(x, y_pos, y_neg, 0.5, T=7))(xs)
  for i in range(3):
    np.testing.assert_allclose(batched[i], drift_field(xs[i], y_pos, y_neg, 0.5, T=7),
                               rtol=1e-5, atol=1e-6)
  # tau traced inside a caller's jit: one compilation serves every temperature.
  f = jax.jit(lambda x, tau: drift_field(x, y_pos, y_neg, tau, T=7))
  np.testing.assert_allclose(f(xs[0], 0.3), drift_field(xs[0], y_pos, y_neg, 0.3, T=7),
                             rtol=1e-5, atol=1e-6)
  taus = jnp.array([0.3, 0.6])
  per_tau = jax.vmap(lambda t: drift_field(xs[0], y_pos, y_neg, t, T=7))(taus)
  np.testing.assert_allclose(per_tau[1], drift_field(xs[0], y_pos, y_neg, 0.6, T=7),
                             rtol=1e-5, atol=1e-6)


def test_float64_inputs_keep_float64():
  with jax.enable_x64(True):
    x, y_pos, y_neg = (c.astype(np.float64) for c in clouds(14))
    v = drift_field(x, y_pos, y_neg, 0.5, T=21)
    assert v.dtype == jnp.float64
    assert rel_err(v, ref.drift(x, y_pos, y_neg, 0.5, 21)) < 1e-12


@pytest.mark.parametrize("normalization,algorithm,mask_self", [
    ("sinkhorn", "scaling", False), ("sinkhorn", "log", True),
    ("sinkhorn", "blocked", False), ("one_sided", "log", True),
    ("two_sided", "log", False), ("two_sided_joint", "log", False)])
def test_gradient_matches_central_differences_in_float64(normalization, algorithm,
                                                         mask_self):
  """jax.grad of ``<R, V(x)>`` against central differences of the forward drift, in
  float64. With h = 1e-5 the truncation error is ~h^2 |V'''| ~ 1e-10 and the rounding
  ~1e-16 / h ~ 1e-11, against gradients of size ~1: 1e-6 relative is a wide margin."""
  with jax.enable_x64(True):
    x, y_pos, _ = (c.astype(np.float64) for c in clouds(17, n=9, m=7, d=2))
    R = np.random.default_rng(18).normal(size=x.shape)
    loss = lambda x: jnp.sum(R * drift_field(x, y_pos, None, 0.7, T=11,
                                              normalization=normalization,
                                              mask_self=mask_self, algorithm=algorithm))
    grad = np.asarray(jax.grad(loss)(jnp.asarray(x)))
    fn = jax.jit(loss)
    h = 1e-5
    fd = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
      e = np.zeros_like(x)
      e[idx] = h
      fd[idx] = (float(fn(x + e)) - float(fn(x - e))) / (2 * h)
    assert np.abs(grad).max() > 0.1
    assert rel_err(grad, fd) < 1e-6


@pytest.mark.parametrize("mask_self,algorithm", [(False, "log"), (True, "scaling"),
                                                 (True, "blocked")])
def test_relative_tau_is_tau_times_the_float64_mean_cost(small_tiles, mask_self,
                                                         algorithm):
  """relative_tau=True equals the float64 drift at tau * (mean cost over the pairs
  (x, y_pos) and (x, y_neg), self pairs left out when masked). Row tiles of 7 (several
  tiles, a padded last one) exercise the tiled sum; measured error ~2e-7 relative."""
  x, y_pos, _ = clouds(19, n=30, m=22)
  C_pos, C_neg = ref.cost(x, y_pos, "euclidean"), ref.cost(x, x, "euclidean")
  n = len(x)
  count = C_pos.size + C_neg.size - (n if mask_self else 0)
  mean = (C_pos.sum() + C_neg.sum()) / count  # the diagonal of C_neg is zero
  v = drift_field(x, y_pos, None, 0.1, T=9, cost="euclidean", mask_self=mask_self,
                  relative_tau=True, algorithm=algorithm)
  expected = ref.drift(x, y_pos, None, 0.1 * mean, 9, "sinkhorn", "euclidean", mask_self)
  assert rel_err(v, expected) < 2e-6


def test_float32_inputs_stay_float32_with_x64_enabled():
  """With x64 on, default float arrays are float64: uniform and given float32 weights
  must still follow the inputs' float32, or they would promote the drift and its
  diagnostics."""
  with jax.enable_x64(True):
    x, y_pos, y_neg = clouds(14)
    w = np.linspace(0.5, 1.0, len(x)).astype(np.float32)
    for kw in (dict(), dict(weights_x=w)):
      info = drift_field_with_info(x, y_pos, y_neg, 0.5, T=5, algorithm="log", **kw)
      assert info.drift.dtype == jnp.float32, kw
      assert info.marginal_error_pos.dtype == jnp.float32, kw


# Above DIRECT_MAX_DIM the Sinkhorn and one-sided drifts take their logits without the
# row constant |x_i|^2 (costs.row_shifted_logits); the two-sided ones may not. Worst
# measured over the full product of the Sinkhorn / one-sided options and d = 17 / 64:
# 3.7e-6 / 7.3e-7 / 1.5e-7 at tau 1e-3 / 1e-2 / 0.5 of the median cost (the full costs
# gave 7.8e-6 / 1.6e-6 / 1.7e-7); bounds 5x that.
@pytest.mark.parametrize("d,cost,normalization,mask_self,tau_rel,T,algorithm,shift", [
    (17, "sqeuclidean", "sinkhorn", False, 1e-3, 9, "scaling", 3.0),
    (64, "half_sqeuclidean", "sinkhorn", True, 1e-2, 9, "log", 0.5),
    (64, "sqeuclidean", "sinkhorn", True, 1e-3, 41, "scaling", 0.5),
    (64, "sqeuclidean", "one_sided", True, 1e-3, 1, "scaling", 3.0),
    (17, "half_sqeuclidean", "one_sided", False, 0.5, 1, "log", 0.5),
    (64, "sqeuclidean", "sinkhorn", False, 0.5, 2, "scaling", 3.0),
    # The two-sided couplings see row constants (their column softmax): full costs.
    (64, "sqeuclidean", "two_sided", True, 1e-2, 1, "auto", 3.0),
    (17, "half_sqeuclidean", "two_sided_joint", False, 0.5, 1, "auto", 0.5),
])
def test_high_dimension_drifts_match_float64(d, cost, normalization, mask_self, tau_rel, T,
                                             algorithm, shift):
  x, y_pos, y_neg = clouds(d, n=40, m=30, d=d, shift=shift)
  y_neg = x if mask_self else y_neg
  tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
  v = drift_field(x, y_pos, y_neg, tau, T=T, normalization=normalization, cost=cost,
                  mask_self=mask_self, algorithm=algorithm)
  want = ref.drift(x, y_pos, y_neg, tau, T=T, normalization=normalization, cost_name=cost,
                   mask_self=mask_self)
  bound = {1e-3: 2e-5, 1e-2: 4e-6, 0.5: 1e-6}[tau_rel]
  assert rel_err(v, want) < bound


def test_any_float64_cloud_promotes_the_drift_under_x64():
  """Mixed precision: one float64 cloud among float32 ones makes the drift float64, and
  its value is the float64 drift of the same points."""
  with jax.enable_x64(True):
    x, y_pos, y_neg = (c.astype(np.float64) for c in clouds(15))
    want = drift_field(x, y_pos, y_neg, 0.5, T=5)
    for i in range(3):
      args = [c if j == i else c.astype(np.float32) for j, c in enumerate((x, y_pos, y_neg))]
      got = drift_field(*args, 0.5, T=5)
      assert got.dtype == jnp.float64, i
      want_i = drift_field(*(a.astype(np.float64) for a in args), 0.5, T=5)
      np.testing.assert_array_equal(got, want_i)
    assert rel_err(want, want_i) < 1e-6


@pytest.mark.parametrize("m_pos,m_neg", [(37, 11), (11, 37)])
def test_auto_sizes_the_problem_by_rows_and_the_larger_target_set(monkeypatch, m_pos, m_neg):
  """'auto' is sized by N (rows of x, not its dimension), the larger of M_pos and M_neg,
  and the inputs' float32 item size: blocked exactly when the dense matrices exceed the
  budget."""
  rng = np.random.default_rng(16)
  x, y_pos, y_neg = (rng.normal(size=(n, 2)).astype(np.float32) for n in (40, m_pos, m_neg))
  chosen = []
  impl = drift_lib._drift_impl

  def spy(*args, **kwargs):
    chosen.append(kwargs["algorithm"])
    return impl(*args, **kwargs)

  monkeypatch.setattr(drift_lib, "_drift_impl", spy)
  dense = drift_spec.DENSE_MATRICES * 40 * 37 * 4
  for budget, want in ((dense, "scaling"), (dense - 1, "blocked")):
    monkeypatch.setattr(drift_spec, "memory_budget_bytes", lambda b=budget: b)
    drift_field(x, y_pos, y_neg, 0.5, T=5)
    assert chosen[-1] == want, budget


def test_float64_weights_with_float32_inputs_and_x64_enabled():
  """Given weights are cast to the inputs' dtype: float64 weights with float32 clouds
  (x64 on) give a float32 drift, equal to the one with float32 weights."""
  with jax.enable_x64(True):
    x, y_pos, y_neg = clouds(14)
    w = np.linspace(0.5, 1.0, len(x))
    info = drift_field_with_info(x, y_pos, y_neg, 0.5, T=5, algorithm="log", weights_x=w)
    assert info.drift.dtype == jnp.float32
    want = drift_field_with_info(x, y_pos, y_neg, 0.5, T=5, algorithm="log",
                                 weights_x=w.astype(np.float32))
    np.testing.assert_allclose(info.drift, want.drift, rtol=1e-6, atol=1e-7)


@pytest.mark.long
def test_defaults_and_options_reach_both_entry_points():
  """drift_field and drift_field_with_info: the default T is 41 (20 full iterations and
  the row normalization, not 21), and algorithm and relative_tau are passed on."""
  x, y_pos, y_neg = clouds(24)
  for fn in (drift_field, lambda *a, **k: drift_field_with_info(*a, **k).drift):
    np.testing.assert_array_equal(fn(x, y_pos, y_neg, 0.5), fn(x, y_pos, y_neg, 0.5, T=41))
    assert rel_err(fn(x, y_pos, y_neg, 0.5, T=41), fn(x, y_pos, y_neg, 0.5, T=42)) > 1e-6
    np.testing.assert_allclose(fn(x, y_pos, None, 0.2, relative_tau=True),
                               ref.drift(x, y_pos, None, 0.2 * float(ref.cost(
                                   x, np.concatenate([y_pos, x]), "sqeuclidean").mean()), 41),
                               rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="blocked"):
    drift_field_with_info(x, y_pos, y_neg, 0.5, normalization="two_sided", algorithm="blocked")
