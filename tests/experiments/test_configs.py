"""The config files: every one loads and documents its command; the reference recipes
hold the reference codes' settings."""
import glob
import importlib.util
import os

import pytest

import experiments
from tests.helpers import ROOT, load

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _module(path):
  spec = importlib.util.spec_from_file_location(
      "cfg_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_loads_and_documents_its_command(path):
  name = os.path.basename(path)
  module = _module(path)
  doc = module.__doc__.strip().splitlines()
  commands = [l.strip() for l in doc if "python -m experiments.run" in l]
  assert commands and commands[0].startswith(
      f"python -m experiments.run --config=configs/{name}"), doc[:5]
  config = module.get_config(None)
  assert config.experiment in experiments.names()
  module.get_config("smoke")


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_generator_config_has_the_new_blocks(path):
  config = _module(path).get_config(None)
  if config.experiment == "particles":
    return  # no generator
  assert config.logging.tensorboard is True
  assert config.optim.decay_steps == 0


def test_toy_reference_config_has_the_reference_settings():
  c = load("toy.py", "reference")
  assert (c.model.kind, c.model.noise_dim, c.model.hidden, c.model.blocks,
          c.model.expansion, c.model.activation) == ("resmlp", 16, 256, 6, 2, "silu")
  assert c.model.res_scale == 0.9 and c.model.out_init_std == 0.001
  assert (c.optim.name, c.optim.learning_rate, c.optim.b1, c.optim.b2,
          c.optim.weight_decay) == ("adamw", 2e-4, 0.9, 0.999, 0.01)
  assert c.optim.schedule == "constant" and c.optim.clip_norm == 0.0
  assert (c.train.steps, c.train.batch_size, c.train.ema_decay) == (5000, 1024, 0.0)
  # tau is a sweep axis of every toy run: the reference default is one setting.
  assert (c.drift.T, c.drift.cost, tuple(c.sweep.taus)) == (41, "sqeuclidean", (0.1,))
  assert tuple(load("toy.py", "reference,fig2").sweep.taus) == (0.01, 0.05, 0.1)
  assert c.eval.num_samples == 1000 and c.train.eval_every == 100


def test_mnist_reference_config_has_the_reference_recipe():
  c = load("mnist.py", "smoke,reference")
  assert c.loss.objective == "feature_drift" and c.guidance.num_uncond == 16
  assert c.optim.schedule == "warmup_constant" and c.train.ema_decay == 0.999


def test_ffhq_smoke_is_synthetic_and_a_path_selects_the_npz():
  c = load("ffhq_alae.py", "smoke")
  assert c.data.source == "synthetic" and c.data.dim == 512 and c.data.num_classes == 6
  assert load("ffhq_alae.py", "smoke,path=/x.npz").data.source == "npz"
