"""Sinkhorn scaling, its marginals, ott-jax cross-checks and paper Prop. 3.1."""
import warnings

import jax
import numpy as np
import pytest

from tests.references import numpy_reference as ref
from tests.conftest import clouds
from sdrift_jax import drift_field, sinkhorn, sinkhorn_divergence
from sdrift_jax.drift.ott_reference import ott_drift_field

with warnings.catch_warnings():
  warnings.simplefilter("ignore", DeprecationWarning)
  from ott.tools.sinkhorn_divergence import sinkdiv


@pytest.mark.long
def test_marginals_converge_as_T_grows():
  x, y, _ = clouds(20, n=40, m=30)
  rows, cols = [], []
  for T in (1, 2, 5, 21, 101, 401):
    out = sinkhorn(x, y, 0.5, T=T)
    rows.append(float(out.row_error))
    cols.append(float(out.col_error))
  # Odd T ends with a row step (rows exact), even T with a column step.
  assert rows[0] < 1e-6 and cols[1] < 1e-6
  odd_cols = [cols[i] for i in (0, 2, 3, 4, 5)]
  assert all(b < a for a, b in zip(odd_cols, odd_cols[1:])), odd_cols
  assert max(rows[-1], cols[-1]) < 1e-5


@pytest.mark.parametrize("T", [2, 3, 6])
def test_marginal_errors_are_l1_errors_of_the_float64_plan(T):
  """``row_error`` and ``col_error`` against the L1 errors of eq. 11's plan in float64.

  Weighted marginals so that no error is trivially zero; T small enough that the
  non-exact side is ~1e-2: float32 rounding is ~1e-6 of that, 1e-4 relative is slack.
  """
  x, y, _ = clouds(24, n=20, m=15)
  rng = np.random.default_rng(1)
  a, b = rng.uniform(0.1, 1, 20), rng.uniform(0.1, 1, 15)
  a, b = a / a.sum(), b / b.sum()
  out = sinkhorn(x, y, 0.4, T=T, a=a.astype(np.float32), b=b.astype(np.float32))
  pi = ref.plain_sinkhorn_plan(np.exp(-ref.cost(x, y, "sqeuclidean") / 0.4), a, b, T)
  row, col = np.abs(pi.sum(1) - a).sum(), np.abs(pi.sum(0) - b).sum()
  exact, inexact = (row, col) if T % 2 else (col, row)
  assert inexact > 1e-3
  got_exact, got_inexact = ((out.row_error, out.col_error) if T % 2
                            else (out.col_error, out.row_error))
  assert float(got_inexact) == pytest.approx(inexact, rel=1e-4)
  assert float(got_exact) < 1e-6 and exact < 1e-12


def test_plan_matches_eq_11_and_weights():
  x, y, _ = clouds(21, n=20, m=15)
  rng = np.random.default_rng(0)
  a, b = rng.uniform(0.1, 1, 20), rng.uniform(0.1, 1, 15)
  out = sinkhorn(x, y, 0.7, T=6, a=a.astype(np.float32), b=b.astype(np.float32))
  K = np.exp(-ref.cost(x, y, "sqeuclidean") / 0.7)
  expected = ref.plain_sinkhorn_plan(K, a / a.sum(), b / b.sum(), 6)
  np.testing.assert_allclose(out.plan, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("T", [1, 3, 11, 31])
@pytest.mark.parametrize("d", [2, 64])
def test_matches_ott_jax_at_equal_half_iterations(T, d):
  x, y_pos, y_neg = clouds(22 + d, n=48, m=40, d=d)
  tau = 0.5 * d
  v = drift_field(x, y_pos, y_neg, tau, T=T)
  v_ott = ott_drift_field(x, y_pos, y_neg, tau, T)
  assert np.linalg.norm(v - v_ott) / np.linalg.norm(v_ott) < 1e-5


@pytest.mark.parametrize("seed,n,d,tau", [
    (0, 30, 2, 0.5), (2, 25, 10, 2.0),
    # Two more shapes of the same check, out of CI (about 12 s each): -m slow.
    pytest.param(1, 40, 5, 1.0, marks=pytest.mark.slow),
    pytest.param(3, 50, 3, 0.3, marks=pytest.mark.slow)])
@pytest.mark.long
def test_prop_3_1_drift_is_sinkhorn_divergence_gradient(seed, n, d, tau):
  # At convergence, cost |x - y|^2, epsilon = tau, y_neg = x:
  # V = -(N / 2) grad_x S_tau(x, y).
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (0.8 * rng.normal(size=(n + 5, d)) + 0.3).astype(np.float32)
  solve = dict(threshold=1e-7, max_iterations=20000)
  grad = jax.grad(lambda x: sinkdiv(x, y, epsilon=tau, solve_kwargs=solve)[0])(x)
  target = -(n / 2) * np.asarray(grad)
  v = drift_field(x, y, x, tau, T=4001)
  assert np.linalg.norm(v - target) / np.linalg.norm(target) < 1e-4
  # The half-squared cost has factor N instead.
  v_half = drift_field(x, y, x, tau / 2, T=4001, cost="half_sqeuclidean")
  np.testing.assert_allclose(v_half, v, rtol=1e-4, atol=1e-5)


@pytest.mark.long
def test_divergence_matches_ott_and_vanishes_at_p_equals_q():
  x, y, _ = clouds(30, n=35, m=28, d=3)
  ours = float(sinkhorn_divergence(x, y, 0.6, T=2001))
  theirs = float(sinkdiv(x, y, epsilon=0.6, solve_kwargs=dict(threshold=1e-7))[0])
  assert abs(ours - theirs) < 1e-5 * max(1.0, abs(theirs))
  assert abs(float(sinkhorn_divergence(x, x[::-1], 0.6, T=2001))) < 1e-5
  assert ours > 0


@pytest.mark.long
def test_weighted_divergence_matches_ott_and_its_weights_matter():
  """Weights ``a`` and ``b`` reach all three problems of the divergence: equal to
  ott-jax's weighted divergence (same tolerance as the uniform check above), and each
  weight vector alone moves the value by far more than that."""
  x, y, _ = clouds(31, n=30, m=24, d=2)
  rng = np.random.default_rng(3)
  a = rng.uniform(0.2, 1.0, len(x)).astype(np.float32)
  b = rng.uniform(0.2, 1.0, len(y)).astype(np.float32)
  a, b = a / a.sum(), b / b.sum()
  ours = float(sinkhorn_divergence(x, y, 0.6, T=2001, a=a, b=b))
  theirs = float(sinkdiv(x, y, epsilon=0.6, a=a, b=b,
                         solve_kwargs=dict(threshold=1e-7))[0])
  assert abs(ours - theirs) < 1e-5 * max(1.0, abs(theirs))
  uniform = float(sinkhorn_divergence(x, y, 0.6, T=2001))
  for kw in (dict(a=a), dict(b=b)):
    one = float(sinkhorn_divergence(x, y, 0.6, T=2001, **kw))
    assert abs(one - ours) > 1e-3 and abs(one - uniform) > 1e-3


def test_default_half_iterations_are_101():
  """``T`` defaults to 101 half-iterations for ``sinkhorn`` and ``sinkhorn_divergence``
  (bit-equal to passing it; 99 differs at this temperature)."""
  x, y, _ = clouds(32, n=20, m=16, d=2)
  np.testing.assert_array_equal(np.asarray(sinkhorn(x, y, 0.05).g),
                                np.asarray(sinkhorn(x, y, 0.05, T=101).g))
  default = float(sinkhorn_divergence(x, y, 0.05))
  assert default == float(sinkhorn_divergence(x, y, 0.05, T=101))
  assert default != float(sinkhorn_divergence(x, y, 0.05, T=99))


def test_float32_inputs_and_weights_stay_float32_with_x64_enabled():
  """With x64 on, default float arrays are float64: uniform or given float32 weights
  must follow the clouds' float32, or they would promote the plan and the potentials."""
  with jax.enable_x64(True):
    x, y, _ = clouds(30, n=12, m=9)
    w = np.linspace(0.5, 1.0, 9).astype(np.float32)
    for kw in (dict(), dict(b=w)):
      out = sinkhorn(x, y, 0.5, T=5, **kw)
      assert all(np.asarray(v).dtype == np.float32 for v in out), (kw, [v.dtype for v in out])


def test_bad_arguments_name_themselves():
  x, y, _ = clouds(31, n=5, m=4, d=2)
  bad = x.copy()
  bad[2, 0] = np.nan
  for args, kw, match in [
      ((x[0], y, 0.1), {}, r"^x must have shape \[n, d\] \(rank 2\), got shape \(2,\)$"),
      ((x, np.zeros((4, 3), np.float32), 0.1), {},
       r"^point clouds must share the dimension d: x has d=2, y has d=3$"),
      ((x, y, [0.1, 0.2]), {}, r"^tau must be a single temperature here, got a sequence$"),
      ((x, y, 0.1), dict(a=np.ones(3)), r"^a must have shape \[5\], got \(3,\)$"),
      ((bad, y, 0.1), {}, r"^x holds NaN or inf in row 2"),
  ]:
    with pytest.raises(ValueError, match=match):
      sinkhorn(*args, **kw)


def test_mixed_dtypes_promote_under_x64():
  with jax.enable_x64(True):
    x, y, _ = clouds(32, n=6, m=5)
    for xx, yy in ((x.astype(np.float64), y), (x, y.astype(np.float64))):
      assert sinkhorn(xx, yy, 0.5, T=3).f.dtype == np.float64
