"""Latent datasets and the Frechet distance, against closed forms."""
import os
import re

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
  # The real-vs-real line: the held-in latents against the held-out ones, recomputed here.
  from sdrift_jax import latents as latents_exp
  from sdrift_jax import metrics
  train, held, _ = latents_exp.load_data(config)
  n = config.eval.num_samples
  w2 = np.mean([metrics.w2_squared(t[:n], h) for t, h in zip(train, held)])
  fd = np.mean([frechet.frechet_distance(t[:n], h) for t, h in zip(train, held)])
  assert f"Real vs real (training latents against the same held-out latents, {n} per class): " \
      f"EMD {w2:.2f}, FD {fd:.2f}." in table, table
  # The dispersion tool on the trained Sinkhorn run: data statistics are the true ones.
  from experiments import latent_dispersion
  out = latent_dispersion.dispersion(str(tmp_path / "tau1" / "sinkhorn"))
  syn = latents_lib.SyntheticLatents(num_classes=3, dim=16, rank=4, seed=0)
  assert out["step"] == config.train.steps and len(out["classes"]) == 3
  for c, r in enumerate(out["classes"]):
    assert r["total_var_data"] == pytest.approx(np.trace(syn.covariance(c)))
    assert r["total_var_gen"] > 0 and r["mean_sq_error"] >= 0
  means = [np.repeat(syn.means[c][None].astype(np.float32), n, 0) for c in range(3)]
  assert out["class_mean_emd"] == pytest.approx(
      np.mean([metrics.w2_squared(m, h) for m, h in zip(means, held)]))


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


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_lazy_npz_reads_rows_on_demand(tmp_path, save):
  rng = np.random.default_rng(5)
  a = rng.normal(size=(50, 6)).astype(np.float32)
  b = np.asfortranarray(rng.normal(size=(40, 6)))  # float64, Fortran order
  path = str(tmp_path / "lazy.npz")
  save(path, a=a, b=b)
  views, names = latents_lib.load_latents(path, lazy=True)
  assert names == ["a", "b"] and views[0].shape == (50, 6) and len(views[1]) == 40
  # Uncompressed members are memory-mapped, compressed ones read whole.
  assert isinstance(views[0]._base, np.memmap) == (save is np.savez)
  np.testing.assert_array_equal(views[0][10:20], a[10:20])
  np.testing.assert_array_equal(views[1][[7, 3, 39]], b[[7, 3, 39]].astype(np.float32))
  sub = views[0].subset(np.array([9, 2, 30]))
  np.testing.assert_array_equal(sub[1:], a[[2, 30]])
  np.testing.assert_array_equal(np.asarray(sub.subset(slice(0, 2))), a[[9, 2]])
  eager, _ = latents_lib.load_latents(path)
  np.testing.assert_array_equal(eager[1], b.astype(np.float32))


def test_lazy_labels_layout_and_nan_reported_when_read(tmp_path):
  lat = np.arange(40, dtype=np.float32).reshape(10, 4)
  lat[7, 2] = np.nan
  lab = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
  path = str(tmp_path / "ll.npz")
  np.savez(path, latents=lat, labels=lab)
  views, names = latents_lib.load_latents(path, lazy=True)  # headers only: no error yet
  np.testing.assert_array_equal(views[0][:], lat[lab == 0])
  np.testing.assert_array_equal(views[1][:3], lat[[1, 3, 5]])
  with pytest.raises(ValueError, match="class '1': 1 latent"):
    views[1][2:4]
  with pytest.raises(ValueError, match="NaN"):
    latents_lib.load_latents(path)


def test_not_an_npz(tmp_path):
  path = tmp_path / "x.npz"
  path.write_text("hello")
  with pytest.raises(ValueError, match="not an .npz"):
    latents_lib.load_latents(str(path))


def test_positive_table_reads_only_the_block_asked_for():
  from sdrift_jax import train
  rng = np.random.default_rng(6)
  per_class = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 9, 7)]
  table = train.PositiveTable(per_class)
  shape = table.shape(row_multiple=4)
  assert shape == (3, 12, 3)
  block = table.read((slice(1, 3), slice(4, 8), slice(None)), shape)
  np.testing.assert_array_equal(block[0], per_class[1][4:8])
  np.testing.assert_array_equal(block[1, :3], per_class[2][4:7])
  assert np.all(block[1, 3] == 0)  # padding
  assert table.rows_read == 4 + 3
  full = table.read((slice(None),) * 3, table.shape())
  assert full.shape == (3, 9, 3) and table.rows_read == 7 + 21
  with pytest.raises(ValueError, match="every class needs training samples"):
    train.PositiveTable([per_class[0], per_class[0][:0]])
  with pytest.raises(ValueError, match="ragged"):
    train.PositiveTable([per_class[0], np.zeros((4, 2), np.float32)])


def test_decoded_fid_equals_frechet_of_the_decoded_features(monkeypatch):
  monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))
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
])
def test_bad_fid_hooks_name_the_config_key(monkeypatch, spec, match):
  monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))
  with pytest.raises(ValueError, match="config.eval.decoder = .*" + match):
    frechet.import_hook(spec, "config.eval.decoder")


def test_latent_pipeline_reports_decoded_fid(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))
  from sdrift_jax import runner
  config = _load_config("latents", "smoke,decoder=fid_hooks:decode")
  with pytest.raises(ValueError, match="config.eval.features is empty"):
    runner.run(config, str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()  # failed before writing anything
  config = _load_config("latents",
                        "smoke,decoder=fid_hooks:decode,features=fid_hooks:features")
  config.sweep.methods = ("sinkhorn",)
  results = runner.run(config, str(tmp_path))
  assert len(results[0]["fid"]) == 1 and np.isfinite(results[0]["fid"][0])
  table = open(tmp_path / "table.md").read()
  assert "Sinkhorn FID |" in table and "fid_hooks:features" in table
  assert re.search(r"Real vs real .*, FID \d+\.\d\d\.", table), table


def test_trainers_of_one_problem_share_the_placed_table():
  from sdrift_jax import train
  config = _load_config("latents", "smoke")
  rng = np.random.default_rng(8)
  problem = train.class_conditional_problem(
      [rng.normal(size=(30, 16)).astype(np.float32) for _ in range(3)],
      [rng.normal(size=(10, 16)).astype(np.float32) for _ in range(3)])
  first = train.Trainer(config, problem).device_table()
  assert problem.table.rows_read == 90
  second = train.Trainer(config, problem).device_table()  # the next setting of a sweep
  assert second is first and problem.table.rows_read == 90
  np.testing.assert_array_equal(np.asarray(first[0][1]), np.asarray(problem.table.sources[1]))
