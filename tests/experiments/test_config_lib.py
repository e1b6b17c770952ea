"""experiments.config_lib: variant strings, typed overrides, short keys, config_lib.load."""
import pytest

from tests.helpers import ROOT, load
from experiments import config_lib


def test_variants_and_typed_overrides():
  # The toy's tau and target are one-value sweep axes now (every toy run is a grid).
  c = load("toy.py", "smoke,tau=0.05,target=moons,seeds=2")
  assert c.sweep.taus == (0.05,) and isinstance(c.sweep.taus[0], float)
  assert c.sweep.targets == ("moons",) and c.train.num_seeds == 2
  with pytest.raises(KeyError, match="unknown config key"):
    load("toy.py", "smoke,drift.tua=0.1")
  with pytest.raises(ValueError, match="unknown variant"):
    load("toy.py", "smok")


def test_variant_strings_with_tuples():
  c = load("toy.py", "smoke,sweep.taus=(0.01,0.05),sweep.targets=moons,lr=0.001")
  assert c.sweep.taus == (0.01, 0.05) and c.sweep.targets == ("moons",)
  assert c.optim.learning_rate == 0.001
  c = load("toy.py", "appj,sweep.targets=(moons,spiral),sweep.costs=(euclidean),algorithm=log")
  assert c.sweep.targets == ("moons", "spiral") and c.sweep.costs == ("euclidean",)
  assert c.drift.algorithm == "log"


@pytest.mark.parametrize("arg,match", [
    ("smoke,T=1.5", r"config key 'drift.T': cannot set '1.5': expected an integer"),
    ("smoke,steps=2.5", r"config key 'train.steps': cannot set '2.5': expected an integer"),
    ("smoke,tau=abc", r"config key 'sweep.taus': cannot set 'abc': expected a number"),
    ("smoke,taus=(0.1,x)", r"config key 'sweep.taus': cannot set '\(0.1,x\)': expected a number"),
    ("smoke,drift.mask_self=maybe", r"'drift.mask_self': cannot set 'maybe': expected a bool"),
])
def test_overrides_refuse_values_of_the_wrong_type_naming_key_and_value(arg, match):
  with pytest.raises(ValueError, match=match):
    load("toy.py", arg)


def test_integer_overrides_still_take_integers_and_floats_take_ints():
  c = load("toy.py", "smoke,T=3,steps=1e3")
  assert c.drift.T == 3 and c.train.steps == 1000
  c = load("mnist.py", "smoke,tau=1")  # a float field takes an int, as a float
  assert c.sweep.taus == (1.0,) and isinstance(c.sweep.taus[0], float)
  c = load("toy.py", "smoke,lr=1")
  assert c.optim.learning_rate == 1.0 and isinstance(c.optim.learning_rate, float)
  with pytest.raises(ValueError, match="config key 'tau': cannot set 'x'"):
    load("mnist.py", "smoke,tau=x")


def test_short_key_typo_lists_the_short_keys():
  with pytest.raises(KeyError, match=r"unknown config key 'tua'; short keys: \['T', "):
    load("toy.py", "smoke,tua=0.1")


def test_parse_variant_splits_flags_and_assignments_outside_brackets():
  flags, assignments = config_lib.parse_variant("smoke, tau=0.1,taus=(0.1,0.2),fig2")
  assert flags == {"smoke", "fig2"}
  assert assignments == {"tau": "0.1", "taus": "(0.1,0.2)"}
  assert config_lib.parse_variant(None) == (set(), {})


def test_load_takes_the_command_line_form_and_names_a_missing_file(tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  c = config_lib.load("configs/toy.py:smoke,taus=(0.05,0.1,0.2)")
  assert c.sweep.taus == (0.05, 0.1, 0.2) and c.train.steps == 20
  assert config_lib.load("configs/toy.py").train.steps == 5000  # no variant
  with pytest.raises(FileNotFoundError, match="no config file"):
    config_lib.load(str(tmp_path / "nope.py:smoke"))
