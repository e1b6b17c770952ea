"""sdrift_jax.training.loop: train_generator resumes exactly (after kill -9 too), stops on
a non-finite loss, refuses a workdir of another config, evaluates the EMA."""
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import experiments
from tests.helpers import (ROOT, cli, flip, guided_config, load, steps_on_disk, table_problem,
                     toy_config, toy_problem, toy_run_dir, toy_setting)
from sdrift_jax.training import checkpoint as checkpoint_lib
from sdrift_jax import training
from sdrift_jax.evaluation import metrics
from sdrift_jax.training import run_files


def _train(config, workdir):
  return training.train_generator(config, str(workdir), toy_problem(config))


def test_check_train_config_names_the_field():
  c = toy_config()
  for field, value, match in (("steps", 15, "must be a multiple of config.train.log_every"),
                              ("eval_every", 15, "eval_every"), ("batch_size", 0, ">= 1"),
                              ("num_seeds", 1.5, "must be an integer")):
    bad = ml_collections.ConfigDict({**c.train.to_dict(), field: value})
    with pytest.raises(ValueError, match=match):
      training.check_train_config(bad)
  training.check_train_config(c.train)


@pytest.mark.long
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  c = toy_config(steps=40)
  _train(c, tmp_path)  # 40 good steps, checkpoint at 40
  c.train.steps = 80
  c.optim.learning_rate = 1e30  # the resumed run blows up
  os.remove(tmp_path / "config.json")  # else the changed config is refused
  with pytest.raises(training.NonFiniteLossError, match="Last good checkpoint: step 40"):
    _train(c, tmp_path)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.latest_step() == 40


@pytest.mark.long
def test_workdir_of_another_config_is_refused(tmp_path):
  c = toy_config()
  _train(c, tmp_path)
  other = toy_config()
  other.drift.tau = 0.05
  with pytest.raises(ValueError, match=r"holds a run of a different config.*drift.tau"):
    _train(other, tmp_path)


@pytest.mark.heavy
def test_experiment_into_a_workdir_of_another_config_is_refused(tmp_path):
  # A different tau is another setting directory now; a different learning rate is the
  # same setting directory with another config.
  experiments.run_experiment(load("toy.py", "smoke"), str(tmp_path))
  with pytest.raises(ValueError, match=r"holds a run of a different config.*optim.learning_rate"):
    experiments.run_experiment(load("toy.py", "smoke,lr=0.01"), str(tmp_path))


@pytest.mark.long
def test_steps_below_the_restored_step_are_refused(tmp_path):
  _train(toy_config(steps=20), tmp_path)
  with pytest.raises(ValueError, match=r"train.steps = 10 but .* at step 20; ask for steps >= 20"):
    _train(toy_config(steps=10), tmp_path)
  assert [r["step"] for r in training.read_metrics(str(tmp_path))] == [10, 20]


@pytest.mark.long
def test_run_resumes_from_previous_step_when_latest_is_damaged(tmp_path, caplog):
  c = toy_config(steps=40)
  _train(c, tmp_path)
  flip(str(tmp_path / "checkpoints" / "40"))
  c.train.steps = 50
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    _train(c, tmp_path)
  assert "checkpoint step 40" in caplog.text and "resumed" in caplog.text
  assert "from step 30" in caplog.text
  steps = [r["step"] for r in training.read_metrics(str(tmp_path))]
  assert steps == [10, 20, 30, 40, 50]


@pytest.mark.long
def test_a_workdir_with_a_history_is_never_silently_started_over(tmp_path, caplog):
  import shutil  # pylint: disable=g-import-not-at-top
  _train(toy_config(steps=40), tmp_path / "a")  # keeps steps 30 and 40
  for name in ("b", "c"):
    shutil.copytree(tmp_path / "a", tmp_path / name)
  # (a) every kept step damaged: the first rerun names them, the second must not start over.
  for root, _, files in os.walk(tmp_path / "a" / "checkpoints"):
    for f in files:
      os.truncate(os.path.join(root, f), 10)
  with pytest.raises(checkpoint_lib.CheckpointError, match="no usable checkpoint"):
    _train(toy_config(steps=40), tmp_path / "a")
  with pytest.raises(training.RunHistoryError, match=r"damaged checkpoints.*--restart"):
    _train(toy_config(steps=40), tmp_path / "a")
  assert [r["step"] for r in training.read_metrics(str(tmp_path / "a"))] == [10, 20, 30, 40]
  # (b) checkpoints/ deleted, metrics.jsonl kept.
  shutil.rmtree(tmp_path / "b" / "checkpoints")
  with pytest.raises(training.RunHistoryError, match=r"records steps up to 40"):
    _train(toy_config(steps=40), tmp_path / "b")
  assert not os.path.exists(tmp_path / "b" / "checkpoints")  # nothing left behind
  # --restart moves it all aside, then starts over.
  experiments._move_aside(str(tmp_path / "b"))  # pylint: disable=protected-access
  old = [p for p in os.listdir(tmp_path) if p.startswith("b.old-")]
  assert len(old) == 1 and os.path.exists(tmp_path / old[0] / "metrics.jsonl")
  _train(toy_config(steps=20), tmp_path / "b")
  assert [r["step"] for r in training.read_metrics(str(tmp_path / "b"))] == [10, 20]
  # (c) metrics.jsonl deleted: the resume goes on and says which steps are missing.
  os.remove(tmp_path / "c" / "metrics.jsonl")
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    _train(toy_config(steps=50), tmp_path / "c")
  assert "history of steps 1-40 is missing" in caplog.text


@pytest.mark.long
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
  whole = _train(toy_config(steps=40), tmp_path / "whole")
  _train(toy_config(steps=20), tmp_path / "split")
  split = _train(toy_config(steps=40), tmp_path / "split")
  for a, b in zip(jax.tree.leaves(whole["state"]), jax.tree.leaves(split["state"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  drop = lambda rs: [{k: v for k, v in r.items() if k not in ("steps_per_s", "seconds")}
                     for r in rs]
  assert drop(training.read_metrics(str(tmp_path / "whole"))) == drop(
      training.read_metrics(str(tmp_path / "split")))


# EMA ------------------------------------------------------------------------------------


@pytest.mark.long
def test_evaluation_and_samples_use_the_ema(tmp_path):
  c = toy_config(0.9, steps=10)
  out = _train(c, tmp_path)
  record = training.read_metrics(str(tmp_path))[-1]
  assert record["eval_params"] == "ema" and record["w2"] != record["w2_raw"]
  # The returned samples are the EMA's: their W2^2 is the logged one.
  problem = toy_problem(c)
  assert metrics.w2_squared(out["samples"][0], problem.eval_data) == pytest.approx(
      record["w2"][0], rel=1e-9)


class FormerTrainState(NamedTuple):
  """The state as checkpointed before the EMA existed."""
  params: Any
  opt_state: Any
  step: Any


def test_without_ema_the_checkpoint_layout_is_unchanged(tmp_path):
  c = toy_config(0.0, steps=10)
  out = _train(c, tmp_path)
  assert out["state"].ema is None
  assert not any("w2_raw" in r or "eval_params" in r
                 for r in training.read_metrics(str(tmp_path)))
  s = out["state"]
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  former = ckpt.restore(10, FormerTrainState(s.params, s.opt_state, s.step))
  for a, b in zip(jax.tree.leaves(former), jax.tree.leaves(s)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ckpt.close()
  # Without config.json to compare, the checkpoint's missing EMA is named.
  os.remove(tmp_path / "config.json")
  with pytest.raises(ValueError, match="ema_decay = 0.9"):
    _train(toy_config(0.9, steps=20), tmp_path)


# Guided training ------------------------------------------------------------------------


@pytest.mark.heavy  # three guided runs end to end
def test_guided_training_runs_resumes_and_samples_at_eval_omega(tmp_path):
  problem = table_problem()
  c = guided_config()
  c.model.noise_dim = 3
  out = training.train_generator(c, str(tmp_path / "a"), problem)
  assert np.all(np.isfinite(out["last_eval"]["w2"]))
  trainer = out["trainer"]
  params = jax.tree.map(lambda a: a[0], trainer.eval_params(out["state"]))
  eps = jnp.ones((3, 5, 3))
  at_eval = trainer.generate_groups(params, eps)
  np.testing.assert_array_equal(at_eval, trainer.generate_groups(params, eps, 1.0))
  assert not np.allclose(at_eval, trainer.generate_groups(params, eps, 3.0))
  # Two chunks then a resume equal four steps in one go.
  c2 = guided_config()
  c2.model.noise_dim = 3
  c2.train.steps = 2
  training.train_generator(c2, str(tmp_path / "b"), problem)
  c2.train.steps = 4
  resumed = training.train_generator(c2, str(tmp_path / "b"), problem)
  for a, b in zip(jax.tree.leaves((out["state"].params, out["state"].ema)),
                  jax.tree.leaves((resumed["state"].params, resumed["state"].ema))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.heavy
def test_exactly_zero_drift_is_explained_once(tmp_path, caplog):
  c = load("latents.py", "smoke,tau=0.01")
  c.sweep.methods = ("baseline",)
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    experiments.run_experiment(c, str(tmp_path))
  notes = [r for r in caplog.records if "the drift is exactly 0" in r.getMessage()]
  assert len(notes) == 1 and "underflow" in notes[0].getMessage()


# kill -9 --------------------------------------------------------------------------------


def _final_state(workdir, arg, **train):
  c = toy_setting(load("toy.py", arg))
  c.train.update(train)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  step, state = ckpt.restore_latest(training.Trainer(c, toy_problem(c)).init())
  ckpt.close()
  return step, jax.tree.leaves(state)


@pytest.mark.heavy
def test_resume_after_kill_gives_the_same_parameters(tmp_path):
  steps = 400
  arg = f"smoke,steps={steps}"
  cmd = [sys.executable, "-m", "experiments.run", f"--config=configs/toy.py:{arg}"]
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  ref = subprocess.run(cmd + [f"--workdir={tmp_path / 'ref'}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert ref.returncode == 0, ref.stderr[-2000:]
  killed = tmp_path / "killed"
  run_dir = toy_run_dir(killed)
  proc = subprocess.Popen(cmd + [f"--workdir={killed}"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  while time.time() < deadline:  # kill once a checkpoint past step 100 is on disk
    if any(s >= 100 for s in steps_on_disk(ckpt_dir)):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = steps_on_disk(ckpt_dir)
  assert done and max(done) < steps, f"the run was not interrupted: {done}"
  again = subprocess.run(cmd + [f"--workdir={killed}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resumed" in again.stderr
  step_a, ref_params = _final_state(toy_run_dir(tmp_path / "ref"), arg)
  step_b, params = _final_state(run_dir, arg)
  assert step_a == step_b == steps
  for a, b in zip(ref_params, params):
    np.testing.assert_array_equal(a, b)
  steps_logged = [json.loads(l)["step"] for l in open(os.path.join(run_dir, "metrics.jsonl"))]
  assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps


def _without_timing(records):
  return [{k: v for k, v in r.items() if k not in ("steps_per_s", "seconds")}
          for r in records]


#: An unconditional memory bank (one group) of 256 rows, 16 new per step, 128 coupled.
_BANK = dict(bank_size=256, bank_push=16, num_positives=128)


@pytest.mark.heavy
@pytest.mark.parametrize("kills,seed,bank", [  # the default run keeps the bank case
    pytest.param(2, 0, False, marks=pytest.mark.slow), (2, 2, True),
    pytest.param(3, 1, False, marks=pytest.mark.slow)])
def test_kill_9_at_random_steps_then_resume_equals_uninterrupted(tmp_path, kills, seed, bank):
  steps = 60 * (kills + 1)
  arg = f"smoke,steps={steps}"
  train = dict(checkpoint_every=10, **(_BANK if bank else {}))
  cmd = [f"--config=configs/toy.py:{arg}"] + [f"--config.train.{k}={v}"
                                               for k, v in train.items()]
  c = load("toy.py", arg)
  c.train.update(train)
  experiments.run_experiment(c, str(tmp_path / "ref"))  # in this process: one start fewer
  killed = tmp_path / "killed"
  run_dir = toy_run_dir(killed)
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  rng = random.Random(seed)
  targets = sorted(rng.sample(range(10, steps - 30, 10), kills))
  for target in targets:
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *cmd, f"--workdir={killed}"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      if any(s >= target for s in steps_on_disk(ckpt_dir)):
        # A random moment after the target: mid-chunk, mid-write or mid-save.
        time.sleep(rng.uniform(0, 0.02))
        break
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  done = steps_on_disk(ckpt_dir)
  assert done and max(done) < steps, f"the run was not interrupted: {done}"
  again = cli(*cmd, f"--workdir={killed}", timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  step_a, ref_state = _final_state(toy_run_dir(tmp_path / "ref"), arg, **train)
  step_b, state = _final_state(run_dir, arg, **train)
  assert step_a == step_b == steps
  if bank:  # the bank is in the checkpoint: its rows and pointer are leaves too
    plain = toy_setting(load("toy.py", arg))
    assert len(ref_state) == len(jax.tree.leaves(
        training.Trainer(plain, toy_problem(plain)).init())) + 2
  for a, b in zip(ref_state, state):
    np.testing.assert_array_equal(a, b)
  assert _without_timing(run_files.read_metrics(run_dir)) == _without_timing(
      run_files.read_metrics(toy_run_dir(tmp_path / "ref")))
