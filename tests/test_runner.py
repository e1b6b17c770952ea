"""Configs, the runner end to end, resume after kill, and bad configs."""
import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdrift_jax import runner, train
from sdrift_jax import checkpoint as checkpoint_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def _module(path):
  spec = importlib.util.spec_from_file_location(
      "cfg_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(name, arg=None):
  return _module(os.path.join(ROOT, "configs", name)).get_config(arg)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_loads_and_documents_its_command(path):
  name = os.path.basename(path)
  module = _module(path)
  doc = module.__doc__.strip().splitlines()
  commands = [l.strip() for l in doc if "python -m experiments.run" in l]
  assert commands and commands[0].startswith(
      f"python -m experiments.run --config=configs/{name}"), doc[:5]
  config = module.get_config(None)
  assert config.experiment in runner.EXPERIMENTS
  module.get_config("smoke")


def test_variants_and_typed_overrides():
  c = load("toy.py", "smoke,tau=0.05,target=moons,seeds=2")
  assert c.drift.tau == 0.05 and isinstance(c.drift.tau, float)
  assert c.data.target == "moons" and c.train.num_seeds == 2
  with pytest.raises(KeyError, match="unknown config key"):
    load("toy.py", "smoke,drift.tua=0.1")
  with pytest.raises(ValueError, match="unknown variant"):
    load("toy.py", "smok")


def test_locked_config_rejects_mistyped_key_on_command_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.run", "--config=configs/toy.py:smoke",
       "--config.drift.tua=0.1", f"--workdir={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "tua" in proc.stderr


def test_toy_smoke_trains_end_to_end(tmp_path):
  c = load("toy.py", "smoke,seeds=2")
  summary = runner.run(c, str(tmp_path))
  history = train.read_metrics(str(tmp_path))
  assert [r["step"] for r in history] == [10, 20]
  assert len(history[-1]["w2"]) == 2 and all(np.isfinite(history[-1]["w2"]))
  assert "marginal_error_pos" in history[-1]
  for f in ("config.json", "metrics.jsonl", "samples.png", "w2.png", "summary.json"):
    assert os.path.exists(tmp_path / f), f
  assert summary["samples"].shape == (2, 128, 2)


def test_seeds_trained_together_equal_seeds_trained_alone(tmp_path):
  both = runner.run(load("toy.py", "smoke,seeds=2"), str(tmp_path / "both"))
  alone = runner.run(load("toy.py", "smoke,seeds=1"), str(tmp_path / "alone"))
  np.testing.assert_allclose(both["samples"][0], alone["samples"][0], rtol=1e-4, atol=1e-5)
  assert not np.allclose(both["samples"][0], both["samples"][1])


def test_toy_sweep_smoke_writes_table_and_figures(tmp_path):
  c = load("toy.py", "smoke")
  c.sweep.enabled = True
  c.sweep.normalizations = ("one_sided", "sinkhorn")
  results = runner.run(c, str(tmp_path))
  assert len(results) == 2
  table = (tmp_path / "summary.md").read_text()
  assert "| 8gaussians | Gaussian | 0.1 | sinkhorn |" in table
  assert os.path.exists(tmp_path / "figures" / "samples_8gaussians_sqeuclidean.png")
  assert os.path.exists(tmp_path / "figures" / "w2_8gaussians_sqeuclidean_tau0.1.png")


def test_particles_smoke(tmp_path):
  out = runner.run(load("particles.py", "smoke"), str(tmp_path))
  assert len(out["records"]) == 2 * 5
  assert os.path.exists(out["grid"])
  recs = {(r["tau"], r["panel"]): r for r in out["records"]}
  assert all(r["finite"] for r in recs.values())


@pytest.mark.parametrize("arg,match", [
    ("smoke,target=circles", "unknown toy target 'circles'"),
    ("smoke,cost=cosine", "bad config.drift: unknown cost 'cosine'"),
    ("smoke,normalization=softmax", "bad config.drift: unknown normalization 'softmax'"),
    ("smoke,tau=0.0", "bad config.drift: tau must be positive"),
    ("smoke,tau=-1.0", "bad config.drift: tau must be positive"),
    ("smoke,T=0", "bad config.drift: T must be >= 1"),
    ("smoke,steps=15", "must be a multiple of config.train.log_every"),
])
def test_bad_configs_fail_with_a_clear_message(tmp_path, arg, match):
  with pytest.raises((ValueError, KeyError), match=match):
    runner.run(load("toy.py", arg), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")  # nothing trained


def test_unknown_experiment_and_panel(tmp_path):
  c = load("toy.py", "smoke")
  c.experiment = "cifar"
  with pytest.raises(ValueError, match="unknown config.experiment 'cifar'"):
    runner.run(c, str(tmp_path))
  p = load("particles.py", "smoke")
  p.particles.panels = ("sinkhorn", "softmax")
  with pytest.raises(ValueError, match="unknown config.particles.panels entry 'softmax'"):
    runner.run(p, str(tmp_path))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  c = load("toy.py", "smoke")
  c.train.update(steps=40)
  runner.run(c, str(tmp_path))  # 40 good steps, checkpoint at 40
  c.train.steps = 80
  c.optim.learning_rate = 1e30  # the resumed run blows up
  os.remove(tmp_path / "config.json")  # else the changed config is refused
  with pytest.raises(train.NonFiniteLossError, match="Last good checkpoint: step 40"):
    runner.run(c, str(tmp_path))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.latest_step() == 40


def test_workdir_of_another_config_is_refused(tmp_path):
  runner.run(load("toy.py", "smoke"), str(tmp_path))
  with pytest.raises(ValueError, match="holds a run of a different config"):
    runner.run(load("toy.py", "smoke,tau=0.05"), str(tmp_path))


def _final_params(workdir, steps):
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  c = load("toy.py", f"smoke,steps={steps}")
  from sdrift_jax import toy
  trainer = train.Trainer(c, toy.make_problem(c))
  state = ckpt.restore(ckpt.latest_step(), trainer.init())
  return ckpt.latest_step(), jax.tree.leaves(state.params)


def test_resume_after_kill_gives_the_same_parameters(tmp_path):
  steps = 400
  cmd = [sys.executable, "-m", "experiments.run", f"--config=configs/toy.py:smoke,steps={steps}"]
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  ref = subprocess.run(cmd + [f"--workdir={tmp_path / 'ref'}"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert ref.returncode == 0, ref.stderr[-2000:]
  killed = tmp_path / "killed"
  proc = subprocess.Popen(cmd + [f"--workdir={killed}"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  ckpt_dir = killed / "checkpoints"
  while time.time() < deadline:  # kill once a checkpoint past step 100 is on disk
    done = [int(p) for p in os.listdir(ckpt_dir) if p.isdigit()] if ckpt_dir.exists() else []
    if any(s >= 100 for s in done):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = [int(p) for p in os.listdir(ckpt_dir) if p.isdigit()]
  assert done and max(done) < steps, f"the run was not interrupted: {done}"
  again = subprocess.run(cmd + [f"--workdir={killed}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resumed" in again.stderr
  step_a, ref_params = _final_params(str(tmp_path / "ref"), steps)
  step_b, params = _final_params(str(killed), steps)
  assert step_a == step_b == steps
  for a, b in zip(ref_params, params):
    np.testing.assert_array_equal(a, b)
  steps_logged = [json.loads(l)["step"] for l in open(killed / "metrics.jsonl")]
  assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps


def test_variant_strings_with_tuples():
  c = load("toy.py", "smoke,sweep.taus=(0.01,0.05),sweep.targets=moons,lr=0.001")
  assert c.sweep.taus == (0.01, 0.05) and c.sweep.targets == ("moons",)
  assert c.optim.learning_rate == 0.001
  c = load("toy.py", "appj,sweep.targets=(moons,spiral),sweep.costs=(euclidean),algorithm=log")
  assert c.sweep.targets == ("moons", "spiral") and c.sweep.costs == ("euclidean",)
  assert c.drift.algorithm == "log"


def test_class_conditional_trainer_uses_labels():
  c = load("toy.py", "smoke")
  c.model.update(kind="mlp", depth=2)
  problem = train.Problem(dim=2, sample_positives=lambda k, n: jnp.zeros((3, n, 2)),
                          eval_data=(np.zeros((4, 2)),) * 3, num_classes=3)
  trainer = train.Trainer(c, problem)
  params = jax.tree.map(lambda a: a[0], trainer.init().params)
  eps = jnp.ones((3, 5, c.model.noise_dim))
  x = trainer.generate_groups(params, eps)  # same noise, labels 0, 1, 2
  assert x.shape == (3, 5, 2)
  assert not np.allclose(x[0], x[1]) and not np.allclose(x[1], x[2])
