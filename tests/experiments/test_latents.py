"""experiments.latents: the Table 2 pipeline end to end, its data split, the decoded-image
FID, and refusals before any work."""
import os
import re

import numpy as np
import pytest

import experiments
from experiments import latents as latents_exp
from tests.helpers import TESTS, load
from sdrift_jax.evaluation import frechet
from sdrift_jax.evaluation import metrics
from experiments.data import latents as latents_lib


@pytest.mark.heavy
def test_latent_pipeline_smoke_writes_the_table_2_layout(tmp_path):
  config = load("latents.py", "smoke")
  results = experiments.run_experiment(config, str(tmp_path))
  assert {r["method"] for r in results} == {"baseline", "sinkhorn"}
  for r in results:
    assert np.all(np.isfinite(r["w2"])) and np.all(np.isfinite(r["frechet"]))
    assert len(r["w2_per_class"][0]) == 3
  table = open(tmp_path / "table.md").read()
  assert "| tau | baseline EMD | Sinkhorn EMD | baseline FD | Sinkhorn FD |" in table
  assert "| 1 |" in table
  # The real-vs-real line: the held-in latents against the held-out ones, recomputed here.
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


@pytest.mark.heavy
def test_several_temperatures_in_one_setting_make_one_table_row(tmp_path):
  # The tuple tau of one setting used to crash the table after training.
  config = load("latents.py", "smoke,scale_free,taus=((0.02,0.2),)")
  config.sweep.methods = ("sinkhorn",)
  experiments.run_experiment(config, str(tmp_path))
  assert "| 0.02+0.2 |" in open(tmp_path / "table.md").read()


def test_npz_source_splits_per_class_and_checks_the_batch(tmp_path):
  path = str(tmp_path / "ffhq_like.npz")
  latents_lib.SyntheticLatents(num_classes=2, dim=5, rank=2).save(path, per_class=40)
  config = load("ffhq_alae.py", f"path={path},batch=8")
  config.eval.num_samples = 10
  train, held, names = latents_exp.load_data(config)
  assert names == ["class0", "class1"]
  assert [len(t) for t in train] == [30, 30] and [len(h) for h in held] == [10, 10]
  config = load("ffhq_alae.py", f"path={path},batch=60")
  with pytest.raises(ValueError, match="fewer than the 62"):
    latents_exp.load_data(config)
  config = load("ffhq_alae.py", None)
  with pytest.raises(ValueError, match="config.data.path is empty"):
    latents_exp.load_data(config)


def test_ffhq_without_a_path_is_refused_before_any_work(tmp_path):
  with pytest.raises(ValueError, match="config.data.path is empty: give the .npz"):
    experiments.run_experiment(load("ffhq_alae.py"), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # refused before any work


def test_a_path_with_the_synthetic_source_is_refused_not_ignored(tmp_path):
  c = load("latents.py", "smoke")
  c.data.path = "/nonexistent.npz"
  with pytest.raises(ValueError, match=r"config.data.path = '/nonexistent.npz' is read with "
                                       r"config.data.source='npz' only"):
    experiments.run_experiment(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.heavy
def test_latent_pipeline_reports_decoded_fid(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(TESTS)
  config = load("latents.py", "smoke,decoder=fid_hooks:decode")
  with pytest.raises(ValueError, match="config.eval.features is empty"):
    experiments.run_experiment(config, str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()  # failed before writing anything
  config = load("latents.py", "smoke,decoder=fid_hooks:decode,features=fid_hooks:features")
  config.sweep.methods = ("sinkhorn",)
  results = experiments.run_experiment(config, str(tmp_path))
  assert len(results[0]["fid"]) == 1 and np.isfinite(results[0]["fid"][0])
  table = open(tmp_path / "table.md").read()
  assert "Sinkhorn FID |" in table and "fid_hooks:features" in table
  assert re.search(r"Real vs real .*, FID \d+\.\d\d\.", table), table


def test_problem_evaluates_frechet_and_optionally_fid():
  rng = np.random.default_rng(0)
  train = [rng.normal(size=(20, 4)).astype(np.float32) for _ in range(2)]
  held = [rng.normal(size=(10, 4)).astype(np.float32) for _ in range(2)]
  assert [e.name for e in latents_exp.make_problem(train, held).evaluators] == ["frechet"]
  assert [e.name for e in latents_exp.make_problem(train, held, fid=object()).evaluators] == [
      "frechet", "fid"]
