"""experiments.mnist and experiments.mnist_models: the pipeline end to end, its
refusals, and the helper networks' resumable, cached fit."""
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments
from experiments import mnist as mnist_exp
from experiments import mnist_models
from tests.helpers import flip, load


@pytest.mark.heavy
def test_smoke_pipeline_end_to_end_and_cache_reuse(tmp_path, caplog):
  c = load("mnist.py", "smoke")
  results = experiments.run_experiment(c, str(tmp_path))
  assert [r["method"] for r in results] == ["baseline", "sinkhorn"]
  for r in results:
    assert os.path.exists(r["grid"]) and np.all(np.isfinite(r["emd"]))
    assert 0 <= r["accuracy"][0] <= 100
  assert results[0]["grid"] == os.path.join(str(tmp_path), "gaussian", "tau0.01", "baseline",
                                            "samples.png")
  table = (tmp_path / "table.md").read_text()
  assert "| gaussian | 0.01 |" in table
  # A second sweep setting in the same workdir reuses the cached models.
  c2 = load("mnist.py", "smoke,tau=0.05,methods=sinkhorn")
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    experiments.run_experiment(c2, str(tmp_path))
  assert "loaded cached autoencoder" in caplog.text
  assert "loaded cached classifier" in caplog.text


def test_default_is_the_reference_recipe_and_eq7_the_papers_loss():
  c = load("mnist.py", "")
  assert c.loss.objective == "feature_drift" and c.guidance.num_uncond == 16
  assert c.optim.schedule == "warmup_constant" and c.train.ema_decay == 0.999
  assert tuple(c.sweep.taus) == (0.005, 0.05)
  assert load("mnist.py", "reference").to_dict() == c.to_dict()
  e = load("mnist.py", "eq7")
  assert e.loss.objective == "drift_field" and e.guidance.num_uncond == 0
  assert e.optim.name == "adam" and tuple(e.sweep.taus) == (0.01,)
  with pytest.raises(ValueError, match="'eq7' and 'reference' are two different recipes"):
    load("mnist.py", "eq7,reference")


@pytest.mark.heavy
def test_mnist_eq7_smoke_runs(tmp_path):
  results = experiments.run_experiment(load("mnist.py", "smoke,eq7"), str(tmp_path))
  assert [r["method"] for r in results] == ["baseline", "sinkhorn"]
  for r in results:
    assert np.all(np.isfinite(r["emd"]))


@pytest.mark.parametrize("arg,match", [
    ("smoke,kernels=('cauchy',)", "unknown kernel 'cauchy'"),
    ("smoke,methods=('ddpm',)", "unknown method 'ddpm'"),
    ("smoke,source=hdf5", "unknown config.data.source 'hdf5'"),
    ("smoke,source=npz,path=/nonexistent/mnist.npz", "MNIST file not found"),
    ("smoke,tau=-0.1", r"config.sweep.taus = -0.1: must be a finite number > 0"),
])
def test_bad_mnist_configs(tmp_path, arg, match):
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    experiments.run_experiment(load("mnist.py", arg), str(tmp_path))


def test_problem_scores_class_accuracy_of_decoded_samples():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(40, 6)).astype(np.float32)
  labels = np.repeat(np.arange(10), 4)

  class Space:
    def classify_latents(self, z):
      return np.zeros(len(z), int)
  problem = mnist_exp.make_problem(z, labels, z, labels, Space())
  assert problem.num_classes == 10 and problem.dim == 6
  assert [e.name for e in problem.evaluators] == ["accuracy"]


@pytest.mark.heavy
@pytest.mark.slow
def test_mnist_rerun_keeps_the_table_total_time(tmp_path):
  first = experiments.run_experiment(load("mnist.py", "smoke"), str(tmp_path))
  results = json.load(open(tmp_path / "results.json"))["summary"]
  assert results["fit_seconds"] > 0
  assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith("-progress")]
  # loads everything, trains nothing
  experiments.run_experiment(load("mnist.py", "smoke"), str(tmp_path))
  again = json.load(open(tmp_path / "results.json"))["summary"]
  assert again["fit_seconds"] == results["fit_seconds"]
  assert again["generator_seconds"] == pytest.approx(results["generator_seconds"])
  assert again["total_seconds"] >= results["fit_seconds"] + results["generator_seconds"]
  assert len(first) == 2


# The helper networks --------------------------------------------------------------------


def _fit(epochs, checkpoint_dir=None):
  from flax import nnx
  rng = np.random.default_rng(0)
  x = mnist_models.to_float(rng.integers(0, 256, (64, 28, 28), dtype=np.uint8))
  y = jnp.asarray(rng.integers(0, 10, 64))
  model = mnist_models.SmallCNN(rngs=nnx.Rngs(params=jax.random.key(0)))
  _, params = mnist_models.fit(model, mnist_models.classifier_loss, x, y, epochs=epochs,
                               batch_size=32, learning_rate=1e-3, key=jax.random.key(1),
                               name="clf", checkpoint_dir=checkpoint_dir)
  return jax.tree.leaves(params)


@pytest.mark.heavy  # four CNN fits
def test_interrupted_fit_resumes_after_its_last_epoch(tmp_path, caplog):
  reference = _fit(3)
  _fit(1, str(tmp_path / "progress"))  # interrupted after epoch 1
  flip(str(tmp_path / "progress" / "1"))  # and its checkpoint damaged: starts over
  _fit(2, str(tmp_path / "progress"))  # interrupted after epoch 2
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    resumed = _fit(3, str(tmp_path / "progress"))
  assert "resumed after epoch 2/3" in caplog.text
  for a, b in zip(reference, resumed):
    np.testing.assert_array_equal(a, b)


def test_batched_and_to_float():
  x = mnist_models.to_float(np.full((3, 28, 28), 255, np.uint8))
  assert x.shape == (3, 28, 28, 1) and float(x.max()) == 1.0
  out = mnist_models.batched(lambda a: a * 2, jnp.arange(10.0), batch=3)
  np.testing.assert_array_equal(out, np.arange(10.0) * 2)
