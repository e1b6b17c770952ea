"""experiments.mnist_pixels: the pixel pipeline end to end, resume, its feature sets,
and its Frechet distance's sanity (held-out vs itself, shuffled labels, noise)."""
import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

import experiments
from experiments import mnist_pixels
from tests.helpers import load
from sdrift_jax.models import pixel as pixel_models
from sdrift_jax.training import evaluators


@pytest.mark.heavy
def test_smoke_pipeline_writes_table_and_grids_and_resumes_exactly(tmp_path):
  # Sinkhorn only (the baseline's pixel pipeline is the same code with the joint
  # two-sided loss, which tests/drift/test_loss.py and tests/experiments/test_mnist.py
  # cover; it doubled this test's compilations).
  whole = tmp_path / "whole"
  results = experiments.run_experiment(load("mnist_pixels.py", "smoke,methods=('sinkhorn',)"),
                                       str(whole))
  assert [r["method"] for r in results] == ["sinkhorn"]
  for r in results:
    assert os.path.exists(r["grid"]) and np.all(np.isfinite(r["fd"]))
    assert 0.0 <= r["precision"][0] <= 1.0 and 0.0 <= r["recall"][0] <= 1.0
    assert np.load(r["grid_array"]).shape == (280, 224)
    samples = np.load(os.path.join(os.path.dirname(r["grid"]), "samples.npy"))
    assert samples.shape == (10, 20, 784) and samples.dtype == np.float32
  table = (whole / "table.md").read_text()
  assert "| 0.02+0.05+0.2 |" in table and "NOT Inception FID" in table
  assert (whole / "grids.png").exists()
  summary = json.load(open(whole / "results.json"))["summary"]
  # 3 per-location, 3 mean, 3 std, 2 x 2 patches of s1 (2), 2 x 2 and 4 x 4 of s3 (4), rms
  assert summary["feature_sets"] == 16
  # Interrupted after 2 of 4 steps, then resumed: the same samples and metrics.
  # (Sinkhorn only: the baseline's resume takes the same code path.)
  # (The helper networks come from the first run's cache: the resume is the generator's.)
  parts = tmp_path / "parts"

  def sinkhorn_only(variant):
    config = load("mnist_pixels.py", variant)
    config.mnist.cache_dir = str(whole / "cache")
    return config
  experiments.run_experiment(sinkhorn_only("smoke,steps=2,methods=('sinkhorn',)"), str(parts))
  resumed = experiments.run_experiment(sinkhorn_only("smoke,methods=('sinkhorn',)"),
                                       str(parts))
  assert len(resumed) == 1
  for a, b in zip(results, resumed):
    np.testing.assert_array_equal(np.load(a["grid_array"]), np.load(b["grid_array"]))
    np.testing.assert_array_equal(
        np.load(os.path.join(os.path.dirname(a["grid"]), "samples.npy")),
        np.load(os.path.join(os.path.dirname(b["grid"]), "samples.npy")))
    assert a["fd"] == b["fd"] and a["accuracy"] == b["accuracy"]


def test_recall_screen_factors_combine_and_keep_the_baselines_mask():
  from benchmarks import pixel_recall_screen as screen
  c = screen._config("mask_self+batch64+converged", 300, 2, "/cache")
  assert c.sweep.methods == ("sinkhorn",) and c.sinkhorn.mask_self is True
  assert (c.train.batch_size, c.drift.T, c.drift.tol, c.train.steps) == (64, 201, 0.01, 300)
  assert c.train.first_seed == 2 and c.seed == 0 and c.mnist.cache_dir == "/cache"
  plain = screen._config("default", 500, 0, "/cache")
  assert plain.sinkhorn.mask_self is False and plain.train.batch_size == 32
  base = screen._config("baseline+positives128", 500, 0, "/cache")
  assert base.sweep.methods == ("baseline",) and base.baseline.mask_self is True
  assert (base.train.bank_size, base.train.num_positives) == (128, 128)


def test_seeds_table_averages_the_steps_every_run_evaluated(tmp_path):
  from benchmarks import pixel_seeds_table
  metrics = {"s0": {500: 0.5, 1000: 0.7}, "s1": {500: 0.4, 1000: 0.8, 1500: 0.9}}
  for run, recalls in metrics.items():
    d = tmp_path / run / "tau0.02" / "sinkhorn"
    d.mkdir(parents=True)
    with open(d / "metrics.jsonl", "w") as f:
      f.write(json.dumps({"step": 50, "loss": 1.0}) + "\n")  # a training row: skipped
      for step, rec in recalls.items():
        f.write(json.dumps({"step": step, "fd_pooled": [10 * rec], "fd": [20 * rec],
                            "accuracy": [90.0], "precision": [0.5], "recall": [rec]}) + "\n")
  out = pixel_seeds_table.table(pixel_seeds_table.collect(
      [str(tmp_path / "s0"), str(tmp_path / "s1")])).splitlines()
  assert len(out) == 4  # header, rule, steps 500 and 1000 (1500: one run only)
  std = np.std([0.7, 0.8], ddof=1)
  assert out[3].startswith("| sinkhorn | 1000 | 2 | 7.50 ± ")
  assert f"| 0.750 ± {std:.3f} | 7.00 / 8.00 | 0.700 / 0.800 |" in out[3]
  (tmp_path / "empty").mkdir()
  with pytest.raises(SystemExit, match="no metrics.jsonl"):
    pixel_seeds_table.collect([str(tmp_path / "empty")])


def _space_config():
  c = load("mnist_pixels.py", "smoke")
  return c.features


@pytest.mark.long
def test_feature_function_makes_the_configured_sets():
  enc = pixel_models.MaskedConvEncoder((4, 8, 16), rngs=nnx.Rngs(0))
  graph, params = nnx.split(enc)
  fc = _space_config()
  fn = mnist_pixels.make_feature_fn(graph, fc)
  x = jax.random.uniform(jax.random.key(0), (3, 784))
  sets = fn(params, x)
  shapes = {k: v.shape for k, v in sets.items()}
  assert shapes["s1/loc"] == (3, 196, 4) and shapes["s3/loc"] == (3, 16, 16)
  assert shapes["s1/patch2_mean"] == (3, 49, 4) and shapes["s3/patch4_std"] == (3, 1, 16)
  assert "s2/patch2_mean" not in shapes  # 7 x 7: no patch size divides it
  assert shapes["input/rms"] == (3, 1, 1)
  np.testing.assert_allclose(sets["input/rms"][:, 0, 0],
                             np.sqrt(np.mean(np.asarray(x) ** 2, axis=1) + 1e-6), rtol=1e-5)
  fc2 = ml_collections.ConfigDict(fc.to_dict())
  fc2.loc_stages = ("s3",)
  fc2.input_rms = False
  sets2 = mnist_pixels.make_feature_fn(graph, fc2)(params, x)
  assert "s1/loc" not in sets2 and "s3/loc" in sets2 and "input/rms" not in sets2


@pytest.mark.parametrize("field,value,match", [
    ("loc_stages", ("s4",), "loc_stages must be distinct names"),
    ("patch_sizes", (0,), "patch_sizes must be positive integers"),
    ("input_rms", 1, "input_rms must be a bool"),
])
def test_bad_feature_configs_are_refused(field, value, match):
  fc = ml_collections.ConfigDict({**_space_config().to_dict(), field: value})
  with pytest.raises(ValueError, match=match):
    mnist_pixels.check_features_config(fc)


@pytest.mark.heavy
def test_frechet_distance_of_held_out_set_against_itself_shuffled_and_noise(tmp_path):
  c = load("mnist_pixels.py", "smoke")
  c.data.max_train = 1500
  c.classifier.epochs = 2
  context = mnist_pixels.prepare(c, str(tmp_path))
  space, problem = context["space"], context["problem"]
  held = problem.eval_sets()
  fd = evaluators.embedded_frechet(space.embed)

  def evaluate(sets):
    ctx = evaluators.EvalContext(samples=np.stack(sets)[None], eval_sets=held,
                                 marginal_errors=None, batch=8)
    out = fd.fn(ctx)
    return out["fd"][0], out["fd_pooled"][0]

  same = evaluate(held)
  assert same[0] < 1e-6 and same[1] < 1e-6
  # Shuffled labels: class c's samples are class c+1's held-out digits. Per class the
  # distance is large; pooled over classes it is the same set, so ~0.
  shuffled = evaluate([held[(c + 1) % 10] for c in range(10)])
  assert shuffled[0] > 100 * max(same[0], 1e-3) and shuffled[1] < 1e-6
  rng = np.random.default_rng(0)
  noise = evaluate([rng.random(h.shape).astype(np.float32) for h in held])
  assert noise[0] > shuffled[0] and noise[1] > 1.0
  # Class accuracy of the held-out digits is the classifier's, of noise near chance.
  acc = evaluators.class_accuracy(space.classify)
  ctx = evaluators.EvalContext(samples=np.stack(held)[None], eval_sets=held,
                               marginal_errors=None, batch=8)
  assert acc.fn(ctx)["accuracy"][0] == pytest.approx(context["summary"]["classifier_accuracy"])
