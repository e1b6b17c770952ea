"""Inputs at the edge of what the drift takes: 16-bit floats, a zero mean cost, a
self-mask against another array."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import clouds
from sdrift_jax import drift_field, feature_drift


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("algorithm", ["scaling", "log"])
def test_16_bit_inputs_run_in_float32_and_return_their_dtype(dtype, algorithm):
  # At tau 0.003 the scaling engine's bounds and the kernel overflow in 16 bits (it
  # returned inf on CPU); in float32 they do not.
  x, y_pos, _ = clouds(3, n=32, m=24, d=4)
  low = drift_field(jnp.asarray(x, dtype), jnp.asarray(y_pos, dtype), None, 0.003, 21,
                    algorithm=algorithm)
  # The float32 drift of the inputs as 16 bits hold them.
  ref = drift_field(jnp.asarray(x, dtype).astype(jnp.float32),
                    jnp.asarray(y_pos, dtype).astype(jnp.float32), None, 0.003, 21,
                    algorithm=algorithm)
  assert low.dtype == dtype
  np.testing.assert_allclose(np.asarray(low, np.float32), ref.astype(dtype).astype(np.float32),
                             rtol=0, atol=0)
  if dtype != jnp.float16 or algorithm != "scaling":
    return
  feats = feature_drift(jnp.asarray(x[:, None], dtype), jnp.asarray(y_pos[:, None], dtype),
                        tau=0.003, T=21)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(feats)
             if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating))


def test_relative_tau_with_a_zero_mean_cost_gives_zero_drift_not_nan():
  z = jnp.zeros((8, 2))
  for algorithm in ("scaling", "log", "blocked"):
    V = drift_field(z, z, None, 0.1, 5, relative_tau=True, algorithm=algorithm)
    np.testing.assert_array_equal(V, 0.0)


def test_mask_self_needs_y_neg_to_be_x():
  x, y_pos, y_neg = clouds(4, n=20, m=20)
  with pytest.raises(ValueError, match="mask_self=True masks each x.i. against y_neg.i."):
    drift_field(x, y_pos, y_neg[:20], 0.1, 5, mask_self=True)
  np.testing.assert_array_equal(drift_field(x, y_pos, np.array(x), 0.1, 5, mask_self=True),
                                drift_field(x, y_pos, None, 0.1, 5, mask_self=True))


def test_a_warm_start_state_holding_nan_is_refused():
  from sdrift_jax import drift_field_with_info  # pylint: disable=g-import-not-at-top
  x, y_pos, _ = clouds(5, n=16, m=12)
  state = drift_field_with_info(x, y_pos, None, 0.5, 11, tol=1e-3).state
  bad = state._replace(h_pos=state.h_pos.at[0, 3].set(jnp.nan))
  with pytest.raises(ValueError, match="init holds NaN or inf in h_pos"):
    drift_field_with_info(x, y_pos, None, 0.5, 11, tol=1e-3, init=bad)
