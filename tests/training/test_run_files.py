"""sdrift_jax.training.run_files: config.json and the check that a workdir holds a run of
this config (former defaults, keys not compared, the cosine horizon), metrics and
reports."""
import json
import os

import jax
import numpy as np
import pytest

from tests.helpers import toy_config, toy_problem
from sdrift_jax import training
from sdrift_jax.training import optim, run_files


def test_same_config_is_accepted_and_another_is_refused_naming_keys(tmp_path):
  c = toy_config()
  run_files.write_config(c, str(tmp_path))
  written = json.loads((tmp_path / "config.json").read_text())
  assert written == json.loads(c.to_json())
  run_files.write_config(toy_config(), str(tmp_path))  # same config: accepted
  other = toy_config()
  other.drift.T = 7
  other.optim.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"differs in \['drift.T', 'optim.learning_rate'\]"):
    run_files.write_config(other, str(tmp_path))


def test_keys_that_do_not_change_the_run_are_not_compared(tmp_path):
  run_files.write_config(toy_config(), str(tmp_path))
  c = toy_config(steps=40)  # constant schedule: a longer run extends this one
  c.sweep.taus = (0.5, 0.7)
  c.drift.algorithm = "log"
  c.parallel.devices = 0
  c.logging.tensorboard = False
  run_files.write_config(c, str(tmp_path))
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 40
  for prefix in ("train.steps", "sweep.", "drift.algorithm", "parallel.", "logging."):
    assert prefix in run_files.NOT_COMPARED


def test_config_json_written_before_new_fields_matches_their_former_defaults(tmp_path):
  c = toy_config(0.0, steps=10)
  run_files.write_config(c, str(tmp_path))
  path = tmp_path / "config.json"
  old = json.loads(path.read_text())
  removed = []
  for dotted in run_files.FIELDS_WITH_FORMER_DEFAULTS:
    block, key = dotted.split(".")
    if key in old.get(block, {}):
      assert old[block][key] == run_files.FIELDS_WITH_FORMER_DEFAULTS[dotted], dotted
      del old[block][key]
      removed.append(dotted)
  assert {"train.ema_decay", "optim.decay_steps", "loss.objective"} <= set(removed)
  path.write_text(json.dumps(old))
  run_files.write_config(c, str(tmp_path))  # accepted: the missing keys take their defaults
  path.write_text(json.dumps(old))
  # ... and not a config that switches the EMA on.
  with pytest.raises(ValueError, match="ema_decay"):
    run_files.write_config(toy_config(0.9, steps=10), str(tmp_path))


def test_a_damaged_config_json_is_named(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    run_files.write_config(toy_config(), str(tmp_path))


def cosine_config(steps, decay_steps=0):
  c = toy_config(steps=steps)
  c.optim.update(schedule="cosine", warmup_steps=5, decay_steps=decay_steps)
  return c


def test_longer_cosine_run_is_refused_unless_decay_steps_keeps_the_horizon(tmp_path):
  run_files.write_config(cosine_config(20), str(tmp_path))
  with pytest.raises(ValueError, match=r"train.steps changed from 20 to 40.*"
                     r"set config.optim.decay_steps=20"):
    run_files.write_config(cosine_config(40), str(tmp_path))
  run_files.write_config(cosine_config(40, decay_steps=20), str(tmp_path))
  # Another horizon is another schedule.
  with pytest.raises(ValueError, match="optim.decay_steps"):
    run_files.write_config(cosine_config(40, decay_steps=30), str(tmp_path))


@pytest.mark.heavy  # three runs end to end
def test_extended_cosine_run_keeps_the_first_runs_schedule(tmp_path):
  first, extended = cosine_config(20), cosine_config(40, decay_steps=20)
  lr = first.optim.learning_rate
  s_first = optim.make_schedule(first.optim, lr, first.train.steps)
  s_ext = optim.make_schedule(extended.optim, lr, extended.train.steps)
  for t in (0, 3, 5, 12, 19, 20, 30):
    assert float(s_ext(t)) == pytest.approx(float(s_first(t)), rel=1e-6, abs=1e-12), t
  assert float(s_first(10)) > 0 and float(s_ext(20)) == pytest.approx(0.0, abs=1e-12)
  problem = toy_problem(first)
  training.train_generator(first, str(tmp_path / "split"), problem)
  split = training.train_generator(extended, str(tmp_path / "split"), problem)  # accepted
  whole = training.train_generator(cosine_config(40, decay_steps=20), str(tmp_path / "whole"),
                                   problem)
  assert int(split["state"].step) == 40
  for a, b in zip(jax.tree.leaves(split["state"]), jax.tree.leaves(whole["state"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  steps = [r["step"] for r in training.read_metrics(str(tmp_path / "split"))]
  assert steps == [10, 20, 30, 40]


def test_run_seconds_and_report(tmp_path):
  history = [dict(step=10, steps_per_s=5.0), dict(step=20, steps_per_s=5.0, seconds=3.5)]
  assert training.run_seconds(history, 10) == pytest.approx(2.0 + 3.5)
  path = training.write_report(str(tmp_path), ["| a |", "|---|"], dict(x=[1, 2]), name="t")
  assert path == os.path.join(str(tmp_path), "t.md")
  assert open(path).read() == "| a |\n|---|\n"
  assert json.load(open(tmp_path / "results.json")) == dict(x=[1, 2])
