"""Inputs the drift refuses before computing (sdrift_jax.validation.check_finite): NaN or
inf rows named, values whose pairwise cost would overflow (docs/reliability.md)."""
import jax
import numpy as np
import pytest

import sdrift_jax
from sdrift_jax.drift import field as drift


def _bad_clouds():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 3)).astype(np.float32)
  bad = x.copy()
  bad[4, 1] = np.nan
  bad[9] = np.inf
  return x, bad


@pytest.mark.parametrize("fn,args,name", [
    ("drift_field", lambda x, b: (b, x, None, 0.1), "x"),
    ("drift_field", lambda x, b: (x, b, None, 0.1), "y_pos"),
    ("drift_field_with_info", lambda x, b: (x, x + 1, b, 0.1), "y_neg"),
    ("sinkhorn", lambda x, b: (x, b, 0.1), "y"),
    ("sinkhorn_divergence", lambda x, b: (b, x, 0.1), "x"),
    ("feature_drift", lambda x, b: (x, x + 1, b), "y_uncond"),
    ("feature_drift", lambda x, b: (b, x + 1), "x"),
    ("feature_drift", lambda x, b: (x, b), "y_pos"),
])
def test_check_finite_names_argument_and_first_bad_row(fn, args, name):
  f = getattr(sdrift_jax, fn, None) or getattr(drift, fn)
  x, bad = _bad_clouds()
  kw = dict(tau=0.1) if fn == "feature_drift" else {}
  with pytest.raises(ValueError, match=rf"^{name} holds NaN or inf in row 4 \(2 of 20 rows\)"):
    f(*args(x, bad), **kw)
  f(*args(x, bad), **kw, check_finite=False)  # off: computes (NaN), no error


def test_check_finite_under_jit_is_off_by_default_and_refused_when_asked():
  x, bad = _bad_clouds()
  out = jax.jit(lambda a: sdrift_jax.drift_field(a, x, None, 0.1))(bad)
  assert np.all(np.isnan(out))  # documented: a traced input cannot be checked
  with pytest.raises(ValueError, match="check_finite=True needs concrete arrays"):
    jax.jit(lambda a: sdrift_jax.drift_field(a, x, None, 0.1, check_finite=True))(bad)


def test_values_whose_cost_overflows_are_refused():
  x, _ = _bad_clouds()
  with pytest.raises(ValueError, match=r"x holds values up to .*e\+20: the pairwise cost"):
    sdrift_jax.drift_field(x * 1e20, x, None, 0.1)
  assert np.all(np.isfinite(sdrift_jax.drift_field(x * 1e17, x * 1e17, None, 0.1)))
