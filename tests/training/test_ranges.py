"""Every number of a config is range-checked before anything runs."""
import glob
import math
import os

import ml_collections
import pytest

import experiments
from experiments import config_lib
from tests.helpers import ROOT, load
from sdrift_jax.training import ranges


def _configs():
  from experiments import cli_args  # pylint: disable=g-import-not-at-top
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    name = os.path.basename(path)
    yield name, None
    for variant in getattr(cli_args.load_module(path), "VARIANTS", {}):
      yield name, variant


@pytest.mark.parametrize("name,variant", list(_configs()))
def test_every_number_of_every_config_has_a_range_and_lies_in_it(name, variant):
  config = load(name, variant)
  config_lib.check_ranges(config)  # strict: a number with no range is refused


@pytest.mark.parametrize("key,value,match", [
    ("optim.learning_rate", -1e-3, r"config.optim.learning_rate = -0.001: must be .* > 0"),
    ("optim.clip_norm", -1.0, r"config.optim.clip_norm = -1: must be .* >= 0"),
    ("guidance.eval_omega", math.nan, r"config.guidance.eval_omega = nan"),
    ("guidance.omega_exponent", math.nan, r"config.guidance.omega_exponent = nan"),
    ("eval.num_samples", 0, r"config.eval.num_samples = 0: must be an integer >= 2"),
    ("drift.tau", math.inf, r"config.drift.tau = inf: must be a finite number > 0"),
    ("train.ema_decay", 1.0, r"config.train.ema_decay = 1: must be .* < 1"),
    ("train.steps", 0, r"config.train.steps = 0: must be an integer >= 1"),
    ("sweep.taus", (0.1, -0.2), r"config.sweep.taus = -0.2: must be .* > 0"),
])
def test_out_of_range_values_are_refused_naming_the_key(key, value, match):
  config = load("mnist.py" if key.startswith("guidance") else "toy.py", "smoke")
  block, field = key.split(".")
  with config.unlocked():
    config[block][field] = value
  with pytest.raises(ValueError, match=match):
    config_lib.check_ranges(config)


def test_a_refused_value_writes_nothing(tmp_path):
  config = load("toy.py", "smoke")
  config.optim.learning_rate = -1e-3
  with pytest.raises(ValueError, match="learning_rate"):
    experiments.run_experiment(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")


def test_a_number_with_no_range_is_refused_unless_not_strict():
  config = ml_collections.ConfigDict(dict(mine=dict(knob=3.0), optim=dict(b1=0.9)))
  with pytest.raises(ValueError, match=r"config.mine.knob = 3.0 has no known range"):
    ranges.check_ranges(config)
  ranges.check_ranges(config, strict=False)
  config.optim.b1 = 1.5
  with pytest.raises(ValueError, match=r"config.optim.b1 = 1.5: must be .*< 1"):
    ranges.check_ranges(config, strict=False)
