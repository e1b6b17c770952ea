"""The fast drift paths against the plain log domain and float64 NumPy.

Fast paths: the scaling-domain barycentric map that never forms the coupling
(``stabilized.barycentric_map``, what ``drift_field`` runs by default), the one-sided
drift without the uniform-weight shift, and the blocked mode whose column half-step is a
row step on the transposed problem. Tiny temperatures included.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.references import numpy_reference as ref
from tests.conftest import clouds, log_coupling, logit_problem
from sdrift_jax import drift_field, drift_field_with_info
from sdrift_jax.solvers import blocked
from sdrift_jax.solvers import scaling as stabilized
from sdrift_jax.solvers import scaling_kernel
from sdrift_jax import costs as costs_lib
from sdrift_jax.drift import field as drift_lib


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def _float64_barycenter(logits, y, T):
  n, m = logits.shape
  L64 = np.asarray(logits, np.float64)
  a64, b64 = np.full(n, 1 / n), np.full(m, 1 / m)
  P64, _ = ref.log_couplings(L64, L64, a64, b64, b64, "sinkhorn", T)
  return P64 @ y.astype(np.float64), a64 @ P64


@pytest.mark.parametrize("n,m,d,tau_rel", [(64, 50, 2, 0.05), (64, 50, 2, 1e-3),
                                           (40, 70, 16, 1e-3), (48, 48, 64, 0.5),
                                           (64, 50, 2, 1e-4)])
@pytest.mark.parametrize("T", [1, 2, 9, 41])
def test_barycentric_map_equals_coupling_product(n, m, d, tau_rel, T):
  x, y, tau, logits, log_a, log_b = logit_problem(n + d, n, m, d, tau_rel)
  Py, col = stabilized.barycentric_map(logits, log_a, log_b, jnp.asarray(y), T,
                                       with_col_mass=True)
  plain = np.asarray(log_coupling(logits, log_a, log_b, T))
  assert np.all(np.isfinite(Py)) and np.all(np.isfinite(col))
  tiny = tau_rel < 0.01  # the coupling's float32 rounding grows like 1 / tau
  assert rel_err(Py, plain @ y) < (5e-5 if tiny else 1e-6)
  np.testing.assert_allclose(col, np.exp(log_a) @ plain, atol=2e-5 if tiny else 1e-6)
  v64, col64 = _float64_barycenter(logits, y, T)
  assert rel_err(Py, v64) <= max(2 * rel_err(plain @ y, v64), 5e-5 if tau_rel < 1e-3 else 1e-5)
  col_plain_err = np.max(np.abs(np.exp(log_a) @ plain - col64))
  assert np.max(np.abs(col - col64)) <= max(2 * col_plain_err, 2e-6)


@pytest.mark.parametrize("T", [2, 5, 41])
@pytest.mark.long
def test_barycentric_map_under_forced_absorption(T):
  x, y, _, logits, log_a, log_b = logit_problem(3, 50, 40, 2, 0.02)
  plain = np.asarray(log_coupling(logits, log_a, log_b, T)) @ y
  for bound, exact_sum in ((2.0, 1e-30), (2.0, np.inf), (1e30, 1e-30)):
    Py, _ = stabilized.barycentric_map(logits, log_a, log_b, jnp.asarray(y), T,
                                       bound=bound, exact_sum=exact_sum)
    assert rel_err(Py, plain) < 3e-6, (bound, exact_sum)


def test_barycentric_map_row_fallback(monkeypatch):
  # Every row counted as "no mass" sends the drift through the softmax from the logits.
  x, y, _, logits, log_a, log_b = logit_problem(4, 30, 20, 2, 1e-3)
  monkeypatch.setattr(scaling_kernel, "_TINY_MASS", np.inf)
  fn = jax.jit(lambda l: stabilized.barycentric_map(l, log_a, log_b, jnp.asarray(y), 9,
                                                    with_col_mass=True))
  Py, col = fn(logits)
  plain = np.asarray(log_coupling(logits, log_a, log_b, 9))
  assert rel_err(Py, plain @ y) < 5e-5  # tiny tau: float32 rounding of g, amplified
  np.testing.assert_allclose(col, np.exp(log_a) @ plain, atol=2e-5)
  v64, _ = _float64_barycenter(logits, y, 9)
  assert rel_err(Py, v64) <= max(2 * rel_err(plain @ y, v64), 5e-5)


@pytest.mark.long
def test_barycentric_map_vmap_and_derivatives():
  x, y, _, logits, log_a, log_b = logit_problem(5, 24, 18, 2, 0.05)
  ys = jnp.stack([jnp.asarray(y), jnp.asarray(y) + 1.0])
  batched = jax.vmap(lambda yy: stabilized.barycentric_map(logits, log_a, log_b, yy, 7)[0])(ys)
  for k in range(2):
    single = stabilized.barycentric_map(logits, log_a, log_b, ys[k], 7)[0]
    np.testing.assert_allclose(batched[k], single, rtol=1e-6, atol=1e-6)

  def loss(fast):
    def fn(l):
      if fast:
        Py, _ = stabilized.barycentric_map(l, log_a, log_b, jnp.asarray(y), 7)
      else:
        # HIGHEST: a plain @ runs in TF32 on GPUs, too coarse for a float32 reference.
        Py = jnp.matmul(log_coupling(l, log_a, log_b, 7), jnp.asarray(y),
                        precision=jax.lax.Precision.HIGHEST)
      return jnp.sum(Py ** 2)
    return fn

  np.testing.assert_allclose(jax.grad(loss(True))(logits), jax.grad(loss(False))(logits),
                             rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("normalization,T,mask_self", [
    ("one_sided", 1, False), ("one_sided", 1, True), ("sinkhorn", 1, False),
    ("sinkhorn", 41, False), ("sinkhorn", 8, True)])
@pytest.mark.parametrize("tau_rel", [1e-4, 1e-2, 1.0])
def test_default_drift_equals_log_domain_and_float64(normalization, T, mask_self, tau_rel):
  x, y_pos, y_neg = clouds(11, n=50, m=36, d=3)
  y_neg = None if mask_self else y_neg
  tau = tau_rel * float(np.median(ref.cost(x, y_pos, "sqeuclidean")))
  kw = dict(T=T, normalization=normalization, mask_self=mask_self)
  fast = drift_field_with_info(x, y_pos, y_neg, tau, **kw)
  plain = drift_field_with_info(x, y_pos, y_neg, tau, algorithm="log", **kw)
  assert np.all(np.isfinite(fast.drift))
  assert rel_err(fast.drift, plain.drift) < (5e-5 if tau_rel < 1e-3 else 2e-6)
  np.testing.assert_allclose(fast.marginal_error_pos, plain.marginal_error_pos, atol=2e-6)
  np.testing.assert_allclose(fast.marginal_error_neg, plain.marginal_error_neg, atol=2e-6)
  expected = ref.drift(x, y_pos, y_neg, tau, T, normalization, "sqeuclidean",
                       mask_self=mask_self)
  assert rel_err(fast.drift, expected) < (1e-3 if tau_rel < 1e-3 else 1e-5)


def test_one_sided_with_weights_keeps_the_column_weights():
  # Non-uniform column weights must still enter the one-sided softmax; uniform ones given
  # explicitly must match the implicit uniform weights.
  x, y_pos, y_neg = clouds(12, n=30, m=25, d=2)
  w = np.linspace(0.5, 2.0, len(y_pos)).astype(np.float32)
  tau = 0.5
  got = drift_field(x, y_pos, y_neg, tau, normalization="one_sided", weights_pos=w)
  plain = drift_field(x, y_pos, y_neg, tau, normalization="one_sided", weights_pos=w,
                      algorithm="log")
  assert rel_err(got, plain) < 1e-6
  ones = np.ones(len(y_pos), np.float32)
  np.testing.assert_allclose(
      drift_field(x, y_pos, y_neg, tau, normalization="one_sided", weights_pos=ones),
      drift_field(x, y_pos, y_neg, tau, normalization="one_sided"), rtol=1e-5, atol=1e-6)
  assert rel_err(got, drift_field(x, y_pos, y_neg, tau, normalization="one_sided")) > 1e-3


@pytest.mark.parametrize("n,m,block,mask", [(46, 30, 7, False), (40, 40, 6, True),
                                            (25, 61, 25, False), (33, 33, 1, True)])
@pytest.mark.parametrize("tau_rel,T", [(1e-4, 9), (0.05, 41), (1.0, 2), (0.05, 1)])
def test_blocked_transposed_column_step(n, m, block, mask, tau_rel, T):
  rng = np.random.default_rng(n + m + block)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  y = x if mask else (1.5 * rng.normal(size=(m, 3)) + 0.5).astype(np.float32)
  tau = tau_rel * float(np.median(ref.cost(x, y, "sqeuclidean")))
  log_a = jnp.full((n,), -np.log(n), jnp.float32)
  log_b = jnp.full((len(y),), -np.log(len(y)), jnp.float32)
  Py, col_err = blocked.barycentric_map(jnp.asarray(x), jnp.asarray(y), log_a, log_b,
                                        jnp.float32(tau), T, "sqeuclidean", mask, block)
  logits = -costs_lib.pairwise_cost(jnp.asarray(x), jnp.asarray(y)) / tau
  if mask:
    logits = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits)
  P = np.asarray(log_coupling(logits, log_a, log_b, T))
  assert np.all(np.isfinite(Py))
  assert rel_err(Py, P @ y) < (2e-4 if tau_rel < 1e-3 else 2e-6)
  expected_err = np.sum(np.abs(np.exp(log_a) @ P - np.exp(log_b)))
  np.testing.assert_allclose(col_err, expected_err, atol=2e-6)
  C = ref.cost(x, y, "sqeuclidean")
  if mask:
    C[np.diag_indices(n)] = np.inf
  v64, _ = _float64_barycenter(-C / tau, y, T)
  assert rel_err(Py, v64) <= max(2 * rel_err(P @ y, v64), 1e-3 if tau_rel < 1e-3 else 1e-5)
  _, zero = blocked.barycentric_map(jnp.asarray(x), jnp.asarray(y), log_a, log_b,
                                    jnp.float32(tau), T, "sqeuclidean", mask, block,
                                    with_col_error=False)
  assert float(zero) == 0.0


@pytest.mark.parametrize("T", [1, 9])
def test_column_mass_derivative_matches_float64_central_differences(T):
  """The column mass's JVP (the plain log-domain rule behind the custom JVP) against
  central differences of the float64 reference along a random direction."""
  x, y, _, logits, log_a, log_b = logit_problem(6, 20, 14, 2, 0.1)
  direction = np.random.default_rng(7).normal(size=logits.shape)
  _, (_, dcol) = jax.jvp(
      lambda l: stabilized.barycentric_map(l, log_a, log_b, jnp.asarray(y), T,
                                           with_col_mass=True),
      (logits,), (jnp.asarray(direction, logits.dtype),))
  h = 1e-5
  L64 = np.asarray(logits, np.float64)
  want = (_float64_barycenter(L64 + h * direction, y, T)[1]
          - _float64_barycenter(L64 - h * direction, y, T)[1]) / (2 * h)
  assert np.max(np.abs(want)) > 1e-2
  assert rel_err(dcol, want) < 1e-5  # measured 1.7e-7 (T = 1) and 1.5e-6 (T = 9)


@pytest.mark.parametrize("T", [1, 9])
def test_leading_batch_axes_are_separate_problems(T):
  """``[B, N, M]`` logits with per-problem, non-uniform marginals give each problem's own
  coupling, barycentric map and column mass (float64 reference per problem)."""
  problems = [logit_problem(seed, 18, 12, 2, 0.1) for seed in (8, 9)]
  logits = jnp.stack([p[3] for p in problems])
  rng = np.random.default_rng(10)
  a = rng.uniform(0.5, 1.5, (2, 18))
  b = rng.uniform(0.5, 1.5, (2, 12))
  log_a = jnp.asarray(np.log(a / a.sum(1, keepdims=True)), jnp.float32)
  log_b = jnp.asarray(np.log(b / b.sum(1, keepdims=True)), jnp.float32)
  ys = jnp.stack([jnp.asarray(p[1]) for p in problems])
  P = stabilized.row_normalized_coupling(logits, log_a, log_b, T)
  Py, col = stabilized.barycentric_map(logits, log_a, log_b, ys, T, with_col_mass=True)
  assert P.shape == (2, 18, 12) and Py.shape == (2, 18, 2) and col.shape == (2, 12)
  Py_only, zeros = stabilized.barycentric_map(logits, log_a, log_b, ys, T)  # no col mass
  np.testing.assert_allclose(Py_only, Py, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(zeros, np.zeros((2, 12), np.float32))
  # Measured at most 1.2e-7 relative; 1e-5 as elsewhere in this file.
  for k in range(2):
    a64, b64 = np.exp(np.asarray(log_a[k], np.float64)), np.exp(np.asarray(log_b[k], np.float64))
    L64 = np.asarray(logits[k], np.float64)
    P64, _ = ref.log_couplings(L64, L64, a64, b64, b64, "sinkhorn", T)
    assert rel_err(P[k], P64) < 1e-5
    assert rel_err(Py[k], P64 @ np.asarray(ys[k], np.float64)) < 1e-5
    assert rel_err(col[k], a64 @ P64) < 1e-5
