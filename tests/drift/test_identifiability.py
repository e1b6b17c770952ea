"""The paper's identifiability examples: Appendix A.2 and Proposition 3.11."""
import jax
import numpy as np
import pytest
from scipy import optimize

from sdrift_jax import drift_field

P_SUPPORT = np.array([[0.0], [1.0]], np.float32)  # p = (delta_0 + delta_1) / 2


def one_sided_drift_at_support(a, b):
  """(V(0), V(1)) of the one-sided drift with tau = 1, k = exp(-(x - y)^2), q = {a, b}."""
  q = np.array([[a], [b]], np.float32)
  v = drift_field(P_SUPPORT, P_SUPPORT, q, 1.0, normalization="one_sided")
  return np.asarray(v[:, 0], np.float64)


def test_appendix_a2_one_sided_drift_vanishes_at_q_not_p():
  # Miranda's theorem on the box R = [-1.5, -1.2] x [0.6, 0.9]: the signs of
  # F1 = V(0) and F2 = V(1) on opposite edges (paper eqs. 25-26) ...
  for t in np.linspace(0, 1, 31):
    a = -1.5 + 0.3 * t
    b = 0.6 + 0.3 * t
    assert one_sided_drift_at_support(-1.5, b)[0] < 0
    assert one_sided_drift_at_support(-1.2, b)[0] > 0
    assert one_sided_drift_at_support(a, 0.6)[1] > 0
    assert one_sided_drift_at_support(a, 0.9)[1] < 0
  # ... so a zero exists in R; find it and check it.
  root = optimize.fsolve(lambda ab: one_sided_drift_at_support(*ab), x0=[-1.35, 0.75],
                         xtol=1e-7)
  a, b = root
  assert -1.5 <= a <= -1.2 and 0.6 <= b <= 0.9
  assert np.max(np.abs(one_sided_drift_at_support(a, b))) < 1e-5
  # The converged Sinkhorn drift at the same q does not vanish.
  q = np.array([[a], [b]], np.float32)
  v_sk = drift_field(P_SUPPORT, P_SUPPORT, q, 1.0, T=2001)
  assert np.max(np.abs(v_sk)) > 0.1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_prop_3_11_two_particles_rest_only_on_the_targets(seed):
  rng = np.random.default_rng(seed)
  y = rng.normal(size=(2, 2)).astype(np.float32)
  x0 = (2.0 * rng.normal(size=(2, 2))).astype(np.float32)

  @jax.jit
  def flow(x):
    def step(x, _):
      return x + 0.2 * drift_field(x, y, x, 0.5, T=201), None
    return jax.lax.scan(step, x, None, length=1500)[0]

  x = np.asarray(flow(x0))
  v = np.asarray(drift_field(x, y, x, 0.5, T=201))
  assert np.max(np.abs(v)) < 1e-4
  # At rest, {x1, x2} = {y1, y2} as sets.
  match = min(np.abs(x - y).max(), np.abs(x[::-1] - y).max())
  assert match < 1e-3, (x, y)
