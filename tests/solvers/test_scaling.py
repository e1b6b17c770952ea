"""The scaling-domain Sinkhorn (sdrift_jax.solvers.scaling) against the plain log domain."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.references import numpy_reference as ref
from tests.conftest import clouds, log_coupling, logit_problem
from sdrift_jax import DriftSpec, drift_field
from sdrift_jax.solvers import scaling as stabilized
from sdrift_jax.solvers import scaling_kernel
from sdrift_jax.drift import field as drift_lib


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


# Relative error of the barycentric map against float64 with its own costs, per relative
# temperature: the measured worst over the cases below (1.5e-7, 1.7e-7, 2.9e-6, 5.9e-6)
# times 5 to 7.
_TOLERANCE = {0.05: 1e-6, 0.5: 1e-6, 1e-3: 1.5e-5, 1e-4: 3e-5}


@pytest.mark.parametrize("n,m,d,tau_rel", [(64, 50, 2, 0.05), (64, 50, 2, 1e-3),
                                           (40, 70, 16, 1e-3), (48, 48, 64, 0.5),
                                           (64, 50, 2, 1e-4)])
@pytest.mark.parametrize("T", [2, 9, 201])
def test_coupling_equals_log_domain_and_float64(n, m, d, tau_rel, T):
  x, y, tau, logits, log_a, log_b = logit_problem(n + d, n, m, d, tau_rel)
  fast = stabilized.row_normalized_coupling(logits, log_a, log_b, T)
  plain = log_coupling(logits, log_a, log_b, T)
  assert np.all(np.isfinite(fast))
  np.testing.assert_allclose(np.sum(fast, axis=1), 1.0, atol=1e-5)
  # Same coupling entry by entry, and the same barycentric map.
  np.testing.assert_allclose(fast, plain, atol=2e-4 if tau_rel < 0.01 else 2e-6)
  v_fast, v_plain = np.asarray(fast) @ y, np.asarray(plain) @ y
  assert rel_err(v_fast, v_plain) < (5e-5 if tau_rel < 0.01 else 1e-6)
  # Against float64 with its own costs: the float32 costs' rounding (~1e-7 relative,
  # amplified by 1 / tau_rel) dominates at small tau.
  v64 = ref.drift(x, y, np.zeros((1, d), np.float32), tau, T)
  assert rel_err(v_fast, v64) < _TOLERANCE[tau_rel]


@pytest.mark.parametrize("T", [2, 5, 41])
@pytest.mark.long
def test_forced_absorption_changes_nothing(T):
  # bound = 2 absorbs at almost every half-step; bound = 1e30 almost never (the scaling
  # branch). All must give the plain iteration's coupling.
  *_, logits, log_a, log_b = logit_problem(3, 50, 40, 2, 0.02)
  plain = log_coupling(logits, log_a, log_b, T)
  # exact_sum = inf sends every absorption through a log-domain half-step; with bound 10
  # some of those are row steps right after a column step that stayed in bounds (v != 1).
  for bound, exact_sum in ((2.0, 1e-30), (2.0, np.inf), (10.0, np.inf), (1e10, 1e-30),
                           (1e30, 1e-30)):
    fast = stabilized.row_normalized_coupling(logits, log_a, log_b, T, bound=bound,
                                              exact_sum=exact_sum)
    np.testing.assert_allclose(fast, plain, atol=3e-6, err_msg=f"{bound}, {exact_sum}")


def test_coupling_row_fallback_matches_float64(monkeypatch):
  """Every row counted as "no mass" sends the coupling through the softmax of the logits
  shifted by the scalings; weighted marginals, so a wrong sign of ``log v`` shows."""
  *_, logits, _, _ = logit_problem(12, 30, 20, 2, 0.05)
  rng = np.random.default_rng(13)
  a, b = rng.uniform(0.5, 1.5, 30), rng.uniform(0.5, 1.5, 20)
  a, b = a / a.sum(), b / b.sum()
  monkeypatch.setattr(scaling_kernel, "_TINY_MASS", np.inf)
  P = stabilized.row_normalized_coupling(logits, jnp.log(jnp.asarray(a, jnp.float32)),
                                         jnp.log(jnp.asarray(b, jnp.float32)), 9)
  L64 = np.asarray(logits, np.float64)
  P64, _ = ref.log_couplings(L64, L64, a, b, b, "sinkhorn", 9)
  assert rel_err(P, P64) < 1e-5  # measured 1.7e-7


@pytest.mark.parametrize("normalization,cost,mask_self", [
    ("sinkhorn", "sqeuclidean", False), ("sinkhorn", "euclidean", True),
    ("sinkhorn", "half_sqeuclidean", False), ("one_sided", "sqeuclidean", True)])
@pytest.mark.long
def test_scaling_and_log_drifts_match_float64(normalization, cost, mask_self):
  """Both dense algorithms against the float64 reference (own costs, own self-mask).

  Measured worst relative error: 7.3e-6 at tau = 1e-3 of the median cost (float32 cost
  rounding amplified by 1 / tau), 1.3e-7 at tau = median; the bounds are ~4x and ~8x that.
  """
  x, y_pos, _ = clouds(5, n=60, m=45, d=3)
  for tau_rel, T in itertools.product((1e-3, 1.0), (1, 4, 41)):
    tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
    kw = dict(T=T, normalization=normalization, cost=cost, mask_self=mask_self)
    expected = ref.drift(x, y_pos, None, tau, T, normalization, cost, mask_self=mask_self)
    for algorithm in ("scaling", "log"):
      v = drift_field(x, y_pos, None, tau, algorithm=algorithm, **kw)
      assert rel_err(v, expected) < (3e-5 if tau_rel < 0.01 else 1e-6), (algorithm, tau_rel, T)


def test_vmap_folds_into_one_batch_and_matches_a_loop():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 30, 2)).astype(np.float32)
  y = (rng.normal(size=(3, 25, 2)) + 0.5).astype(np.float32)
  fn = lambda x, y: drift_field(x, y, None, 0.01, T=21, algorithm="scaling")
  # Nested vmaps, one argument unbatched in the outer one.
  out = jax.jit(jax.vmap(jax.vmap(fn), in_axes=(0, None)))(x, y)
  for i, j in itertools.product(range(2), range(3)):
    single = drift_field(x[i, j], y[j], None, 0.01, T=21, algorithm="log")
    np.testing.assert_allclose(out[i, j], single, rtol=2e-5, atol=1e-5)


@pytest.mark.long
def test_derivatives_follow_the_log_domain_path():
  x, y_pos, _ = clouds(8, n=20, m=15, d=2)
  loss = lambda algorithm: (lambda x: jnp.sum(
      drift_field(x, y_pos, None, 0.3, T=11, algorithm=algorithm) ** 2))
  g_fast = jax.grad(loss("scaling"))(jnp.asarray(x))
  g_plain = jax.grad(loss("log"))(jnp.asarray(x))
  np.testing.assert_allclose(g_fast, g_plain, rtol=1e-5, atol=1e-6)
  # And under vmap, as a per-example gradient.
  xs = jnp.stack([x, x + 0.1])
  g_batched = jax.vmap(jax.grad(loss("scaling")))(xs)
  np.testing.assert_allclose(g_batched[0], g_plain, rtol=1e-5, atol=1e-6)


def test_zero_weights_fall_back_to_the_log_domain():
  x, y_pos, y_neg = clouds(9)
  w = np.ones(len(y_pos), np.float32)
  w[3] = 0.0
  auto = drift_field(x, y_pos, y_neg, 0.2, T=21, weights_pos=w)
  plain = drift_field(x, y_pos, y_neg, 0.2, T=21, weights_pos=w, algorithm="log")
  np.testing.assert_array_equal(auto, plain)
  np.testing.assert_allclose(auto, ref.drift(x, y_pos, y_neg, 0.2, 21, weights_pos=w),
                             rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="algorithm='scaling' needs strictly positive"):
    drift_field(x, y_pos, y_neg, 0.2, T=21, weights_pos=w, algorithm="scaling")
  with pytest.raises(ValueError, match="unknown algorithm"):
    drift_field(x, y_pos, y_neg, 0.2, algorithm="fast")


def test_auto_picks_scaling_for_positive_weights_and_matches_float64():
  """'auto' resolves to 'scaling' when every weight is concrete and positive (and to 'log'
  with a zero weight), and the drift it gives matches float64."""
  x, y_pos, y_neg = clouds(10)
  rng = np.random.default_rng(1)
  w = rng.uniform(0.2, 2.0, len(x)).astype(np.float32)
  w0 = w.copy()
  w0[0] = 0.0
  shape = (len(x), len(y_neg), 4)
  spec = DriftSpec()
  assert spec.resolve_algorithm(*shape, (w, None, None)) == "scaling"
  assert DriftSpec(normalization="two_sided").resolve_algorithm(*shape) == "scaling"
  assert spec.resolve_algorithm(*shape, (w0, None, None)) == "log"
  assert spec.resolve_algorithm(*shape, (None, None, w0[:len(y_neg)])) == "log"
  auto = drift_field(x, y_pos, y_neg, 0.1, T=31, weights_x=w)
  np.testing.assert_array_equal(
      auto, drift_field(x, y_pos, y_neg, 0.1, T=31, weights_x=w, algorithm="scaling"))
  # Measured 2e-7 relative; 5e-6 is the float32 bound used across this file.
  assert rel_err(auto, ref.drift(x, y_pos, y_neg, 0.1, 31, weights_x=w)) < 5e-6


@pytest.mark.long
def test_concrete_weights_inside_jit_keep_the_scaling_domain(monkeypatch):
  """Weights that are numbers at trace time (a closure constant of a jitted step) are
  seen as positive there, so 'auto' keeps the scaling path; traced ones fall back. The
  algorithm is read where drift_field resolves it (solvers.select.resolve_algorithm)."""
  from sdrift_jax.solvers import select  # pylint: disable=g-import-not-at-top
  x, y_pos, y_neg = clouds(11)
  w = np.linspace(0.5, 2.0, len(y_neg)).astype(np.float32)
  resolved = []
  original = select.resolve_algorithm

  def spy(*args, **kwargs):
    resolved.append(original(*args, **kwargs))
    return resolved[-1]
  monkeypatch.setattr(select, "resolve_algorithm", spy)

  def step(wn=None):
    return drift_field(x, y_pos, y_neg, 0.1, T=21, weights_neg=w if wn is None else wn)

  constant = jax.jit(step)()
  traced = jax.jit(step)(jnp.asarray(w))
  assert resolved == ["scaling", "log"]
  want = ref.drift(x, y_pos, y_neg, 0.1, 21, weights_neg=w)
  for got in (constant, traced):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture
def grouped_column_sums(monkeypatch):
  # K^T u as a sum over 8 blocks of rows at every size (the default starts at 2^21
  # entries); read when tracing, so no program from before may be reused.
  monkeypatch.setattr(scaling_kernel, "GROUPED_MIN_ENTRIES", 0)
  jax.clear_caches()
  yield
  jax.clear_caches()


@pytest.mark.parametrize("n,m,d,tau_rel", [(64, 50, 2, 0.05), (64, 50, 2, 1e-3),
                                           (40, 70, 16, 1e-3), (48, 48, 64, 0.5)])
@pytest.mark.long
def test_grouped_column_sums_match_log_domain_and_float64(grouped_column_sums, n, m, d,
                                                          tau_rel):
  x, y, tau, logits, log_a, log_b = logit_problem(n + d, n, m, d, tau_rel)
  for T in (2, 41):
    fast = stabilized.row_normalized_coupling(logits, log_a, log_b, T)
    plain = log_coupling(logits, log_a, log_b, T)
    np.testing.assert_allclose(fast, plain, atol=2e-4 if tau_rel < 0.01 else 2e-6)
    v64 = ref.drift(x, y, np.zeros((1, d), np.float32), tau, T)
    assert rel_err(np.asarray(fast) @ y, v64) < _TOLERANCE[tau_rel]
    # The column mass of the barycentric map takes the same product.
    Py, col = stabilized.barycentric_map(logits, log_a, log_b, y, T, with_col_mass=True)
    assert rel_err(Py, v64) < _TOLERANCE[tau_rel]
    np.testing.assert_allclose(col, np.exp(log_a) @ np.asarray(fast), rtol=1e-5, atol=1e-9)


def test_grouped_column_sums_under_vmap(grouped_column_sums):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 32, 2)).astype(np.float32)
  y = (rng.normal(size=(3, 40, 2)) + 0.5).astype(np.float32)
  out = jax.jit(jax.vmap(lambda x, y: drift_field(x, y, x, 0.02, T=21, algorithm="scaling")))(x, y)
  for i in range(3):
    single = drift_field(x[i], y[i], x[i], 0.02, T=21, algorithm="log")
    np.testing.assert_allclose(out[i], single, rtol=2e-5, atol=1e-5)
