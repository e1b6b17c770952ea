"""Convergence controls (warm starts, annealing, a tolerance) on both fronts and every
engine, against float64 NumPy (tests/references/numpy_reference.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdrift_jax import drift_field, drift_field_with_info, feature_drift
from sdrift_jax.drift.warm import DriftState
from tests.conftest import clouds
from tests.references import numpy_reference as ref

ENGINES = ("log", "scaling", "blocked")


def _mean_cost(x, y):
  return float(np.mean(ref.cost(x, y, "sqeuclidean")))


@pytest.mark.parametrize("rel_tau,algorithm", [(0.05, "log"), (0.005, "scaling"),
                                               (0.005, "blocked")])
@pytest.mark.long
def test_cold_warm_and_annealed_solves_converge_to_the_float64_coupling(algorithm, rel_tau):
  with jax.enable_x64(True):
    # Negatives other than x: the self-coupling (y_neg = x) tends to the identity at low
    # tau and its error falls only like 1 / iterations (1.7e-6 after 2,500 at 0.05).
    x, y, z = clouds(0, n=24, m=20, d=3)
    x, y, z = x.astype(np.float64), y.astype(np.float64), z.astype(np.float64)
    tau = rel_tau * _mean_cost(x, y)
    expected = ref.converged_drift(x, y, z, tau, tol=1e-11)
    kw = dict(T=40001, tol=1e-9, algorithm=algorithm)
    cold = drift_field_with_info(x, y, z, tau, **kw)
    # The state of a solve on moved points, carried to these ones.
    prev = drift_field_with_info(x + 0.05, y, z, tau, T=41, algorithm=algorithm)
    warm = drift_field_with_info(x, y, z, tau, init=prev.state, **kw)
    annealed = drift_field_with_info(x, y, z, tau, anneal=(1 / rel_tau, 0.8), **kw)
    for info in (cold, warm, annealed):
      assert float(info.marginal_error_pos) <= 1e-9 and float(info.marginal_error_neg) <= 1e-9
      np.testing.assert_allclose(np.asarray(info.drift), expected, atol=1e-6)
    assert int(warm.half_steps) < int(cold.half_steps)


@pytest.mark.parametrize("algorithm", ENGINES)
def test_tolerance_stops_where_float64_does_and_equals_that_fixed_T(algorithm):
  with jax.enable_x64(True):
    x, y, _ = clouds(1, n=30, m=26, d=2)
    x, y = x.astype(np.float64), y.astype(np.float64)
    tau = 0.02 * _mean_cost(x, y)
    info = drift_field_with_info(x, y, None, tau, T=5001, tol=1e-4, algorithm=algorithm)
    la = np.full(30, -np.log(30))
    steps, expected = [], 0.0
    for yy, sign in ((y, 1.0), (x, -1.0)):
      L = -ref.cost(x, yy, "sqeuclidean") / tau
      g, half = ref.converged_column_scaling(L, la, np.full(len(yy), -np.log(len(yy))),
                                             tol=1e-4)
      steps.append(half)
      P = np.exp(L + g - ref.logsumexp(L + g, axis=1, keepdims=True))
      expected = expected + sign * (P @ yy)
    assert int(info.half_steps) == max(steps)
    assert float(info.marginal_error_pos) <= 1e-4 and float(info.marginal_error_neg) <= 1e-4
    # Each coupling is the one its own count gives (= a fixed T of that count).
    np.testing.assert_allclose(np.asarray(info.drift), expected, atol=1e-9)


@pytest.mark.parametrize("algorithm", ENGINES)
def test_warm_start_is_the_float64_c_transform(algorithm):
  """Warm start with T = 1: the row normalization of the c-transform start."""
  with jax.enable_x64(True):
    x, y, _ = clouds(2, n=16, m=14, d=3)
    x, y = x.astype(np.float64), y.astype(np.float64)
    tau = 0.1 * _mean_cost(x, y)
    prev = drift_field_with_info(x, y, None, tau, T=9, algorithm=algorithm)
    x_new, y_new = x[:12] + 0.1, y[2:] - 0.1
    out = drift_field(x_new, y_new, None, tau, T=1, init=prev.state, algorithm=algorithm)
    st = prev.state
    x_prev, la_prev = np.asarray(st.x), np.asarray(st.log_a)
    V = 0.0
    for k, (yy, sign) in enumerate(((y_new, 1.0), (x_new, -1.0))):
      cols_prev = np.asarray((st.y_pos, st.y_neg)[k])
      h_prev = np.asarray((st.h_pos, st.h_neg)[k][0])
      # The previous row potential (cost units), then its c-transform at the new columns.
      F = -tau * ref.logsumexp(-ref.cost(x_prev, cols_prev, "sqeuclidean") / tau + h_prev,
                               axis=1)
      lb = np.full(len(yy), -np.log(len(yy)))
      g0 = ref.c_transform_start(x_prev, la_prev, F, yy, lb, tau)
      L = -ref.cost(x_new, yy, "sqeuclidean") / tau
      P = np.exp(L + g0 - ref.logsumexp(L + g0, axis=1, keepdims=True))
      V = V + sign * (P @ yy)
    np.testing.assert_allclose(np.asarray(out), V, atol=1e-9)
    # The state's column scaling is the float64 one after T = 9 (4 full iterations).
    L = -ref.cost(x, y, "sqeuclidean") / tau
    la, lb = np.full(16, -np.log(16)), np.full(14, -np.log(14))
    g = lb.copy()
    for _ in range(4):
      f = la - ref.logsumexp(L + g, axis=1)
      g = lb - ref.logsumexp(L + f[:, None], axis=0)
    np.testing.assert_allclose(np.asarray(st.h_pos[0]) - np.asarray(st.h_pos[0]).mean(),
                               g - g.mean(), atol=1e-9)


@pytest.mark.long
def test_without_the_controls_the_drift_is_bit_identical():
  x, y, _ = clouds(3, n=40, m=30, d=3)
  for algorithm in ENGINES:
    base = drift_field(x, y, None, 0.3, T=21, algorithm=algorithm)
    info = drift_field_with_info(x, y, None, 0.3, T=21, algorithm=algorithm)
    np.testing.assert_array_equal(np.asarray(base), np.asarray(info.drift))
    assert int(info.half_steps) == 21


@pytest.mark.long
def test_half_steps_under_vmap_are_per_group():
  x, y, _ = clouds(4, n=20, m=20, d=2)
  xs = np.stack([x, 0.5 * x, 2 * x]).astype(np.float32)
  fn = lambda xx: drift_field_with_info(xx, y, None, 0.05, T=4001, tol=1e-3,
                                        algorithm="scaling")
  batched = jax.jit(jax.vmap(fn))(xs)
  for k in range(3):
    single = fn(xs[k])
    assert int(batched.half_steps[k]) == int(single.half_steps)
    np.testing.assert_allclose(batched.drift[k], single.drift, atol=1e-5)
  assert len(set(np.asarray(batched.half_steps).tolist())) > 1


@pytest.mark.long
def test_state_threads_through_jit_and_multiple_temperatures():
  x, y, _ = clouds(5, n=20, m=18, d=2)
  step = jax.jit(lambda xx, st: drift_field_with_info(xx, y, None, (0.05, 0.2), T=2001,
                                                      tol=1e-3, init=st))
  state = DriftState.cold(x.shape, num_taus=2, y_pos_shape=y.shape)
  first = step(x, state)
  second = step(x + 0.01, first.state)
  assert first.half_steps.shape == (2,) and first.state.h_pos.shape == (2, 18)
  assert np.all(np.asarray(second.half_steps) < np.asarray(first.half_steps))


@pytest.mark.parametrize("form,algorithm", [("split", "scaling"), ("split", "blocked"),
                                            ("joint", "auto")])
@pytest.mark.long
def test_feature_drift_controls_converge_to_one_float64_coupling(form, algorithm):
  with jax.enable_x64(True):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(12, 2, 3))
    y = rng.normal(size=(10, 2, 3)) + 0.3
    u = rng.normal(size=(4, 2, 3))
    kw = dict(tau=0.05, omega=2.0, form=form, algorithm=algorithm, T=60001, tol=1e-9)
    cold = feature_drift(x, y, u, **kw)
    prev = feature_drift(x * 1.05, y, u, tau=0.05, omega=2.0, form=form, algorithm=algorithm,
                         T=21, with_state=True)
    warm = feature_drift(x, y, u, init=prev.state, **kw)
    annealed = feature_drift(x, y, u, anneal=(20.0, 0.7), **kw)
    reference = feature_drift(x, y, u, tau=0.05, omega=2.0, form=form, algorithm="log",
                              T=int(cold.half_steps[0]) + 400)
    for out in (cold, warm, annealed):
      np.testing.assert_allclose(np.asarray(out.drift), np.asarray(reference.drift),
                                 atol=1e-6)
      assert np.all(np.asarray(out.marginal_error_pos) <= 1e-9)
    assert int(warm.half_steps[0]) < int(cold.half_steps[0])


@pytest.mark.parametrize("kwargs,message", [
    (dict(tol=0.0), "tol must be"), (dict(tol=float("nan")), "tol must be"),
    (dict(tol="x"), "tol must be"), (dict(anneal=(0.5, 0.8)), "anneal"),
    (dict(anneal=(10.0, 1.0)), "anneal"), (dict(anneal=(1e6, 0.5), T=21), "must leave"),
    (dict(tol=1e-3, normalization="one_sided"), "normalization"),
    (dict(init=DriftState.cold((5, 4))), "dimension"),
    (dict(init=DriftState.cold((5, 3), num_taus=2)), "temperature"),
    (dict(init=(1, 2)), "DriftState"),
])
def test_bad_controls_are_refused(kwargs, message):
  x, y, _ = clouds(7, n=10, m=8, d=3)
  with pytest.raises(ValueError, match=message):
    drift_field(x, y, None, 0.1, **{"T": 41, **kwargs})
