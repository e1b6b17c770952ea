"""Latent datasets (issue 5) and the Frechet distance, against closed forms."""
import numpy as np
import pytest
import scipy.linalg

from sdrift_jax import frechet
from sdrift_jax.data import latents as latents_lib


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


def test_per_class_npz_round_trip_and_order(tmp_path):
  syn = latents_lib.SyntheticLatents(num_classes=3, dim=8, rank=2, seed=0)
  path = str(tmp_path / "lat.npz")
  syn.save(path, per_class=10, names=["b_old", "a_child", "c_adult"])
  per_class, names = latents_lib.load_latents(path)
  assert names == ["a_child", "b_old", "c_adult"]  # sorted keys
  np.testing.assert_array_equal(per_class[1], syn.sample(0, 10, 1))
  per_class, names = latents_lib.load_latents(path, class_keys=["c_adult", "b_old"])
  assert names == ["c_adult", "b_old"] and per_class[0].shape == (10, 8)


def test_latents_and_labels_layout(tmp_path):
  rng = np.random.default_rng(3)
  lat = rng.normal(size=(30, 4)).astype(np.float32)
  lab = np.repeat(np.arange(3), 10)
  rng.shuffle(lab)
  path = str(tmp_path / "ll.npz")
  np.savez(path, latents=lat, labels=lab)
  per_class, names = latents_lib.load_latents(path)
  assert names == ["0", "1", "2"]
  for c in range(3):
    np.testing.assert_array_equal(per_class[c], lat[lab == c])


@pytest.mark.parametrize("arrays,kwargs,match", [
    (dict(a=np.zeros((5, 4), np.float32), b=np.zeros((5, 3), np.float32)), {}, "ragged"),
    (dict(a=np.full((5, 4), np.nan, np.float32)), {}, "NaN"),
    (dict(a=np.zeros((5, 4), np.float32)), dict(min_per_class=8), "fewer than the 8"),
    (dict(a=np.zeros((5, 4), np.float32)), dict(class_keys=["a", "zz"]), "missing class key"),
    (dict(latents=np.zeros((5, 4), np.float32)), {}, "not labels"),
    (dict(latents=np.zeros((5, 4), np.float32), labels=np.zeros(4, np.int64)), {}, "labels"),
    (dict(a=np.zeros((5,), np.float32)), {}, r"\[N_c, D\]"),
])
def test_bad_latent_files_name_the_problem(tmp_path, arrays, kwargs, match):
  path = str(tmp_path / "bad.npz")
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=match):
    latents_lib.load_latents(path, **kwargs)


def test_missing_latent_file():
  with pytest.raises(FileNotFoundError, match="does not exist"):
    latents_lib.load_latents("/nonexistent/latents.npz")


def test_synthetic_latents_follow_their_stated_distribution():
  syn = latents_lib.SyntheticLatents(num_classes=2, dim=6, rank=2, seed=4)
  x = syn.sample(1, 40000, seed=5).astype(np.float64)
  np.testing.assert_allclose(x.mean(0), syn.means[1], atol=0.05)
  np.testing.assert_allclose(np.cov(x, rowvar=False), syn.covariance(1), atol=0.05)
  # Fresh draws of one class are Frechet-close; the two classes are far apart.
  y = syn.sample(1, 40000, seed=6)
  assert frechet.frechet_distance(x, y) < 0.01
  assert frechet.frechet_distance(x, syn.sample(0, 40000, seed=6)) > 10


def _load_config(name, arg):
  import importlib
  return importlib.import_module(f"configs.{name}").get_config(arg)


def test_latent_pipeline_smoke_writes_the_table_2_layout(tmp_path):
  from sdrift_jax import runner
  config = _load_config("latents", "smoke")
  results = runner.run(config, str(tmp_path))
  assert {r["method"] for r in results} == {"baseline", "sinkhorn"}
  for r in results:
    assert np.all(np.isfinite(r["w2"])) and np.all(np.isfinite(r["frechet"]))
    assert len(r["w2_per_class"][0]) == 3
  table = open(tmp_path / "table.md").read()
  assert "| tau | baseline EMD | Sinkhorn EMD | baseline FD | Sinkhorn FD |" in table
  assert "| 1 |" in table


def test_npz_source_splits_per_class_and_checks_the_batch(tmp_path):
  from sdrift_jax import latents as latents_exp
  path = str(tmp_path / "ffhq_like.npz")
  latents_lib.SyntheticLatents(num_classes=2, dim=5, rank=2).save(path, per_class=40)
  config = _load_config("ffhq_alae", f"path={path},batch=8")
  config.eval.num_samples = 10
  train, held, names = latents_exp.load_data(config)
  assert names == ["class0", "class1"]
  assert [len(t) for t in train] == [30, 30] and [len(h) for h in held] == [10, 10]
  config = _load_config("ffhq_alae", f"path={path},batch=60")
  with pytest.raises(ValueError, match="fewer than the 62"):
    latents_exp.load_data(config)
  config = _load_config("ffhq_alae", None)
  with pytest.raises(ValueError, match="config.data.path is empty"):
    latents_exp.load_data(config)
