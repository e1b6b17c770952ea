"""sdrift_jax.evaluation.frechet: the Frechet distance against closed forms, and the decoded-image
FID with its import hooks."""
import os

import numpy as np
import pytest
import scipy.linalg

from tests.helpers import TESTS
from sdrift_jax.evaluation import frechet


def _spd(rng, d, rank=None):
  A = rng.normal(size=(d, rank or d))
  return A @ A.T / d + 0.1 * np.eye(d)


def test_frechet_diagonal_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = frechet.gaussian_frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_general_covariances_against_scipy_sqrtm():
  rng = np.random.default_rng(1)
  for d in (3, 20):
    s1, s2 = _spd(rng, d), _spd(rng, d, rank=2)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    got = frechet.gaussian_frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-7, abs=1e-9)
    assert frechet.gaussian_frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)
    shift = rng.normal(size=d)
    assert frechet.gaussian_frechet_distance(mu1, s1, mu1 + shift, s1) == pytest.approx(
        np.sum(shift**2), rel=1e-7)


def test_frechet_of_samples_and_errors():
  rng = np.random.default_rng(2)
  f1 = rng.normal(size=(4000, 3))
  f2 = rng.normal(size=(4000, 3)) * 2.0 + 1.0
  # N(0, I) vs N(1, 4 I): 3 * 1 + 3 * (1 - 2)^2 = 6.
  assert frechet.frechet_distance(f1, f2) == pytest.approx(6.0, rel=0.05)
  with pytest.raises(ValueError, match="feature dimensions differ"):
    frechet.frechet_distance(f1, f2[:, :2])
  with pytest.raises(ValueError, match="NaN"):
    frechet.frechet_distance(np.full((3, 3), np.nan), f2)
  with pytest.raises(ValueError, match="shape"):
    frechet.frechet_distance(f1[:1], f2)


def test_decoded_fid_equals_frechet_of_the_decoded_features(monkeypatch):
  monkeypatch.syspath_prepend(TESTS)
  import fid_hooks
  decode = frechet.import_hook("fid_hooks:decode", "config.eval.decoder")
  feats = frechet.import_hook("fid_hooks:features", "config.eval.features")
  rng = np.random.default_rng(7)
  gen = [rng.normal(size=(30, 5)) + c for c in range(2)]
  real = [rng.normal(size=(40, 5)) * 1.5 + c for c in range(2)]
  fid = frechet.DecodedFID(decode, feats, batch=7)
  per_class, pooled = fid(gen, real)
  direct = [frechet.frechet_distance(feats(decode(g.astype(np.float32))),
                                     feats(decode(r.astype(np.float32))))
            for g, r in zip(gen, real)]
  np.testing.assert_allclose(per_class, direct, rtol=1e-6)
  assert pooled == pytest.approx(frechet.frechet_distance(
      feats(decode(np.concatenate(gen).astype(np.float32))),
      feats(decode(np.concatenate(real).astype(np.float32)))), rel=1e-6)
  calls = dict(fid_hooks.CALLS)
  fid(gen, real)  # reference features are cached: only the 2 x ceil(30 / 7) new batches
  assert fid_hooks.CALLS["decode"] - calls["decode"] == 10
  bad = frechet.DecodedFID(decode, frechet.import_hook("fid_hooks:bad_features", "k"))
  with pytest.raises(ValueError,
                     match=r"config.eval.features returned shape \(40, 4, 4\) for 40 images"):
    bad(gen, real)


@pytest.mark.parametrize("spec,match", [
    ("fid_hooks", "expected 'package.module:function'"),
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("fid_hooks:nope", "has no attribute 'nope'"),
    ("fid_hooks:NOT_CALLABLE", "is not callable"),
    ("../fid_hooks:decode", "expected 'package.module:function', an absolute module name"),
    (".fid_hooks:decode", "an absolute module name"),  # not a TypeError from importlib
    ("tests/fid_hooks.py:decode", "an absolute module name"),
    ("fid_hooks:../decode", "an absolute module name"),
])
def test_bad_fid_hooks_name_the_config_key(monkeypatch, spec, match):
  monkeypatch.syspath_prepend(TESTS)
  with pytest.raises(ValueError, match="config.eval.decoder = .*" + match):
    frechet.import_hook(spec, "config.eval.decoder")
