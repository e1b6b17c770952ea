"""Faults a run must survive or refuse clearly: shared workdirs, kills, damaged
checkpoints and logs, bad overrides, command-line mistakes (docs/reliability.md)."""
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdrift_jax import checkpoint as checkpoint_lib
from sdrift_jax import runner, train
from sdrift_jax import workdir as workdir_lib
from tests.test_runner import ROOT, load

HOLD_SCRIPT = ("import sys, time\n"
               "from sdrift_jax import workdir\n"
               "with workdir.hold(sys.argv[1]):\n"
               "  print('held', flush=True)\n"
               "  time.sleep(600)\n")


def _holder(path):
  """A child process holding ``path``'s lock (started, lock taken)."""
  proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(path)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def _cli(*args, env=None, timeout=180):
  return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, **(env or {})))


# Workdir lock ---------------------------------------------------------------------------


def test_second_run_into_a_held_workdir_is_refused_naming_the_holder(tmp_path):
  proc = _holder(tmp_path)
  try:
    t0 = time.perf_counter()
    with pytest.raises(workdir_lib.WorkdirBusyError, match=f"pid {proc.pid} on "):
      runner.run(load("toy.py", "smoke"), str(tmp_path))
    assert time.perf_counter() - t0 < 5  # at once, not after a timeout
    assert not os.path.exists(tmp_path / "checkpoints")
  finally:
    proc.kill()
    proc.wait()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
  proc = _holder(tmp_path)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert os.path.exists(tmp_path / ".lock")  # left behind, but no longer locked
  with workdir_lib.hold(str(tmp_path)):
    pass
  assert not os.path.exists(tmp_path / ".lock")


def test_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path):
  with workdir_lib.hold(str(tmp_path)):
    with workdir_lib.hold(str(tmp_path)):  # a sweep's top workdir, then a run in it
      pass
    other = subprocess.run([sys.executable, "-c", HOLD_SCRIPT, str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "WorkdirBusyError" in other.stderr
    assert f"pid {os.getpid()}" in other.stderr
  with workdir_lib.hold(str(tmp_path), enabled=False):  # processes > 0 never lock
    pass


def test_cli_into_a_held_workdir_exits_at_once_with_one_line(tmp_path):
  proc = _holder(tmp_path)
  try:
    out = _cli("--config=configs/toy.py:smoke", f"--workdir={tmp_path}")
  finally:
    proc.kill()
    proc.wait()
  assert out.returncode == 1
  lines = out.stderr.strip().splitlines()
  assert len(lines) <= 2 and f"in use by pid {proc.pid}" in out.stderr, out.stderr


# metrics.jsonl and atomic writes --------------------------------------------------------


def test_partial_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10}\n{"step": 20}\n{"step": 3')
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    assert train.read_metrics(str(tmp_path)) == [{"step": 10}, {"step": 20}]
  assert "partial last line" in caplog.text and str(path) in caplog.text
  train.MetricWriter(str(tmp_path), resume_step=10)  # the resume rewrites it whole
  assert path.read_text() == '{"step": 10}\n'


def test_corrupt_metrics_line_names_file_and_line(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 10}\n{"step": 2x}\n{"step": 30}\n')
  with pytest.raises(workdir_lib.MetricsFileError, match=r"metrics.jsonl, line 2"):
    train.read_metrics(str(tmp_path))


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
  path = tmp_path / "table.md"
  workdir_lib.atomic_write(str(path), "old\n")

  class Boom:
    def __str__(self):
      raise RuntimeError("boom")
  with pytest.raises(TypeError):
    workdir_lib.atomic_write(str(path), Boom())
  assert path.read_text() == "old\n"
  assert os.listdir(tmp_path) == ["table.md"]  # no temporary file left


# Checkpoints ----------------------------------------------------------------------------


def _saved(tmp_path, steps=(1, 2)):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  like = {"a": jnp.arange(2000.0), "s": jnp.int32(0)}
  for s in steps:
    ckpt.save(s, {"a": jnp.arange(2000.0) * s, "s": jnp.int32(s)})
  ckpt.close()
  return like


def _largest(step_dir):
  files = checkpoint_lib.step_files(step_dir)
  return os.path.join(step_dir, max(files, key=lambda k: files[k][0]))


def _truncate(d):
  p = _largest(d)
  with open(p, "r+b") as f:
    f.truncate(os.path.getsize(p) // 2)


def _flip(d):
  p = _largest(d)
  b = bytearray(open(p, "rb").read())
  b[len(b) // 2] ^= 0xFF
  open(p, "wb").write(b)


def _empty(d):
  shutil.rmtree(d)
  os.makedirs(d)


def _no_metadata(d):
  os.remove(os.path.join(d, "_CHECKPOINT_METADATA"))


def _no_array_metadata(d):
  os.remove(os.path.join(d, "default", "_METADATA"))


def _no_checksum_and_truncated(d):
  os.remove(os.path.join(d, checkpoint_lib.CHECKSUM_NAME))
  _truncate(d)


@pytest.mark.parametrize("damage", [_truncate, _flip, _empty, _no_metadata,
                                    _no_array_metadata, _no_checksum_and_truncated])
def test_damaged_latest_checkpoint_falls_back_in_one_line(tmp_path, caplog, damage):
  like = _saved(tmp_path)
  damage(str(tmp_path / "ck" / "2"))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    step, state = ckpt.restore_latest(like)
  assert step == 1 and int(state["s"]) == 1
  np.testing.assert_array_equal(state["a"], np.arange(2000.0))
  ours = [r for r in caplog.records if r.name == "sdrift_jax"]
  assert len(ours) == 1 and "step 2" in ours[0].message and "trying step 1" in ours[0].message
  assert "\n" not in ours[0].getMessage()
  assert ckpt.all_steps() == [1]  # set aside, so the run can save step 2 again
  assert os.listdir(str(tmp_path / "ck.damaged"))[0].startswith("2-")
  ckpt.close()


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(tmp_path):
  like = _saved(tmp_path)
  _flip(str(tmp_path / "ck" / "1"))
  _flip(str(tmp_path / "ck" / "2"))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  with pytest.raises(checkpoint_lib.CheckpointError, match="no usable checkpoint"):
    ckpt.restore_latest(like)


def test_checkpoint_without_checksum_restores_with_a_warning(tmp_path, caplog):
  like = _saved(tmp_path)
  os.remove(tmp_path / "ck" / "2" / checkpoint_lib.CHECKSUM_NAME)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    step, _ = ckpt.restore_latest(like)
  assert step == 2 and "restored unchecked" in caplog.text
  assert ckpt.latest_checked_step() == 1


def test_run_resumes_from_previous_step_when_latest_is_damaged(tmp_path, caplog):
  c = load("toy.py", "smoke,steps=40")
  c.train.checkpoint_every = 10
  runner.run(c, str(tmp_path))
  _flip(str(tmp_path / "checkpoints" / "40"))
  c.train.steps = 50
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    runner.run(c, str(tmp_path))
  assert "checkpoint step 40" in caplog.text and "resumed" in caplog.text
  assert "from step 30" in caplog.text
  steps = [r["step"] for r in train.read_metrics(str(tmp_path))]
  assert steps == [10, 20, 30, 40, 50]


# Overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize("arg,match", [
    ("smoke,T=1.5", r"config key 'drift.T': cannot set '1.5': expected an integer"),
    ("smoke,steps=2.5", r"config key 'train.steps': cannot set '2.5': expected an integer"),
    ("smoke,tau=abc", r"config key 'drift.tau': cannot set 'abc': expected a number"),
    ("smoke,drift.mask_self=maybe", r"'drift.mask_self': cannot set 'maybe': expected a bool"),
])
def test_overrides_refuse_values_of_the_wrong_type_naming_key_and_value(arg, match):
  with pytest.raises(ValueError, match=match):
    load("toy.py", arg)


def test_integer_overrides_still_take_integers_and_floats_take_ints():
  c = load("toy.py", "smoke,T=3,tau=1,steps=1e3")
  assert c.drift.T == 3 and c.drift.tau == 1.0 and isinstance(c.drift.tau, float)
  assert c.train.steps == 1000
  with pytest.raises(ValueError, match="config key 'tau': cannot set 'x'"):
    load("mnist.py", "smoke,tau=x")


def test_short_key_typo_lists_the_short_keys():
  with pytest.raises(KeyError, match=r"unknown config key 'tua'; short keys: \['T', "):
    load("toy.py", "smoke,tua=0.1")


@pytest.mark.parametrize("name,arg,match", [
    ("mnist.py", "smoke,drift.tau=0.05", "set tau=... or sweep.taus instead"),
    ("latents.py", "smoke,drift.normalization=one_sided", "sweep.methods"),
    ("toy.py", "fig2,tau=0.05", "set sweep.taus instead"),
])
def test_fields_a_sweep_sets_are_refused(name, arg, match):
  with pytest.raises(ValueError, match="is set per sweep setting.*" + re.escape(match)):
    load(name, arg)
  assert load("toy.py", "smoke,tau=0.05").drift.tau == 0.05  # no sweep: takes effect
  out = _cli("--config=configs/mnist.py:smoke", "--config.drift.tau=0.05", "--workdir=/nonexistent")
  assert out.returncode == 2 and "drift.tau is set per sweep setting" in out.stderr


def test_steps_below_the_restored_step_are_refused(tmp_path):
  runner.run(load("toy.py", "smoke,steps=20"), str(tmp_path))
  with pytest.raises(ValueError, match=r"train.steps = 10 but .* at step 20; ask for steps >= 20"):
    runner.run(load("toy.py", "smoke,steps=10"), str(tmp_path))
  assert [r["step"] for r in train.read_metrics(str(tmp_path))] == [10, 20]


# Command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("args,match", [
    (["--config=configs/nope.py"], "no config file 'configs/nope.py'"),
    (["--config=configs/toy.py:smok"], "unknown variant(s) ['smok']"),
    (["--config=configs/toy.py:smoke,T=1.5"], "cannot set '1.5': expected an integer"),
    (["--config=configs/toy.py:smoke,tau=abc"], "cannot set 'abc'"),
    (["--config=configs/toy.py:smoke", "--config.drift.tua=0.1"],
     "unknown config key 'drift.tua'"),
    (["--config=configs/toy.py:smoke", "--config.drift.T=1.5"], "config.drift.T=1.5"),
    (["--config=configs/toy.py:smoke", "--no_such_flag"], "no_such_flag"),
    ([], "--config is required"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(tmp_path, args, match):
  out = _cli(*args, f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 2, out.stderr
  assert "Traceback" not in out.stderr and match in out.stderr, out.stderr
  assert len(out.stderr.strip().splitlines()) == 2  # the error and the usage line
  assert not os.path.exists(tmp_path / "w")


def test_cli_run_errors_are_two_lines_and_debug_shows_the_traceback(tmp_path):
  out = _cli("--config=configs/toy.py:smoke,tau=0", f"--workdir={tmp_path}")
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-2] == (
      "error: bad config.drift: tau must be positive and finite, got 0.0")
  out = _cli("--config=configs/toy.py:smoke,tau=0", f"--workdir={tmp_path}",
             env=dict(SDRIFT_DEBUG="1"))
  assert out.returncode == 1 and "Traceback" in out.stderr


def test_cli_help_lists_every_config_and_variant():
  out = _cli("--help")
  assert out.returncode == 0
  for name in ("toy", "mnist", "latents", "ffhq_alae", "particles"):
    assert f"configs/{name}.py" in out.stdout
  for variant in (":smoke", ":fig2", ":appj", ":table1", ":table3", ":reference",
                  ":scale_free"):
    assert variant in out.stdout


# check_finite ---------------------------------------------------------------------------


def _bad_clouds():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 3)).astype(np.float32)
  bad = x.copy()
  bad[4, 1] = np.nan
  bad[9] = np.inf
  return x, bad


@pytest.mark.parametrize("fn,args,name", [
    ("drift_field", lambda x, b: (b, x, None, 0.1), "x"),
    ("drift_field", lambda x, b: (x, b, None, 0.1), "y_pos"),
    ("drift_field_with_info", lambda x, b: (x, x + 1, b, 0.1), "y_neg"),
    ("sinkhorn", lambda x, b: (x, b, 0.1), "y"),
    ("feature_drift", lambda x, b: (x, x + 1, b), "y_uncond"),
])
def test_check_finite_names_argument_and_first_bad_row(fn, args, name):
  import sdrift_jax
  from sdrift_jax import drift
  f = getattr(sdrift_jax, fn, None) or getattr(drift, fn)
  x, bad = _bad_clouds()
  kw = dict(tau=0.1) if fn == "feature_drift" else {}
  with pytest.raises(ValueError, match=rf"^{name} holds NaN or inf in row 4 \(2 of 20 rows\)"):
    f(*args(x, bad), **kw)
  f(*args(x, bad), **kw, check_finite=False)  # off: computes (NaN), no error


def test_check_finite_under_jit_is_off_by_default_and_refused_when_asked():
  import sdrift_jax
  x, bad = _bad_clouds()
  out = jax.jit(lambda a: sdrift_jax.drift_field(a, x, None, 0.1))(bad)
  assert np.all(np.isnan(out))  # documented: a traced input cannot be checked
  with pytest.raises(ValueError, match="check_finite=True needs concrete arrays"):
    jax.jit(lambda a: sdrift_jax.drift_field(a, x, None, 0.1, check_finite=True))(bad)


# Smoke configs and on-screen notes ------------------------------------------------------


def test_ffhq_smoke_runs_without_a_path_and_the_full_config_says_it_needs_one(tmp_path):
  c = load("ffhq_alae.py", "smoke")
  assert c.data.source == "synthetic" and c.data.dim == 512 and c.data.num_classes == 6
  assert load("ffhq_alae.py", "smoke,path=/x.npz").data.source == "npz"
  with pytest.raises(ValueError, match="config.data.path is empty: give the .npz"):
    runner.run(load("ffhq_alae.py"), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # refused before any work


def test_exactly_zero_drift_is_explained_once(tmp_path, caplog):
  c = load("latents.py", "smoke,tau=0.01")
  c.sweep.methods = ("baseline",)
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    runner.run(c, str(tmp_path))
  notes = [r for r in caplog.records if "the drift is exactly 0" in r.getMessage()]
  assert len(notes) == 1 and "underflow" in notes[0].getMessage()


# MNIST helper networks ------------------------------------------------------------------


def _fit(epochs, checkpoint_dir=None):
  from flax import nnx
  from sdrift_jax import mnist, models
  rng = np.random.default_rng(0)
  x = mnist.to_float(rng.integers(0, 256, (64, 28, 28), dtype=np.uint8))
  y = jnp.asarray(rng.integers(0, 10, 64))
  model = models.SmallCNN(rngs=nnx.Rngs(params=jax.random.key(0)))
  _, params = mnist.fit(model, mnist._clf_loss, x, y, epochs=epochs, batch_size=32,
                        learning_rate=1e-3, key=jax.random.key(1), name="clf",
                        checkpoint_dir=checkpoint_dir)
  return jax.tree.leaves(params)


def test_interrupted_fit_resumes_after_its_last_epoch(tmp_path, caplog):
  reference = _fit(3)
  _fit(1, str(tmp_path / "progress"))  # interrupted after epoch 1
  _flip(str(tmp_path / "progress" / "1"))  # and its checkpoint damaged: starts over
  _fit(2, str(tmp_path / "progress"))  # interrupted after epoch 2
  with caplog.at_level(logging.INFO, logger="sdrift_jax"):
    resumed = _fit(3, str(tmp_path / "progress"))
  assert "resumed after epoch 2/3" in caplog.text
  for a, b in zip(reference, resumed):
    np.testing.assert_array_equal(a, b)


# kill -9 at random steps ----------------------------------------------------------------


def _final_state(workdir, arg):
  from sdrift_jax import toy
  c = load("toy.py", arg)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  step, state = ckpt.restore_latest(train.Trainer(c, toy.make_problem(c)).init())
  ckpt.close()
  return step, jax.tree.leaves(state)


def _without_timing(records):
  return [{k: v for k, v in r.items() if k not in ("steps_per_s", "seconds")}
          for r in records]


@pytest.mark.parametrize("kills,seed", [
    (2, 0), pytest.param(3, 1, marks=pytest.mark.slow)])
def test_kill_9_at_random_steps_then_resume_equals_uninterrupted(tmp_path, kills, seed):
  steps = 60 * (kills + 1)
  arg = f"smoke,steps={steps}"
  cmd = [f"--config=configs/toy.py:{arg}", "--config.train.checkpoint_every=10"]
  c = load("toy.py", arg)
  c.train.checkpoint_every = 10
  runner.run(c, str(tmp_path / "ref"))  # in this process: one interpreter start fewer
  killed = tmp_path / "killed"
  ckpt_dir = killed / "checkpoints"
  rng = random.Random(seed)
  targets = sorted(rng.sample(range(10, steps - 30, 10), kills))
  for target in targets:
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.run", *cmd, f"--workdir={killed}"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      done = [int(p) for p in os.listdir(ckpt_dir) if p.isdigit()] if ckpt_dir.exists() else []
      if any(s >= target for s in done):
        # A random moment after the target: mid-chunk, mid-write or mid-save.
        time.sleep(rng.uniform(0, 0.02))
        break
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  done = [int(p) for p in os.listdir(ckpt_dir) if p.isdigit()]
  assert done and max(done) < steps, f"the run was not interrupted: {done}"
  again = _cli(*cmd, f"--workdir={killed}", timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  step_a, ref_state = _final_state(str(tmp_path / "ref"), arg)
  step_b, state = _final_state(str(killed), arg)
  assert step_a == step_b == steps
  for a, b in zip(ref_state, state):
    np.testing.assert_array_equal(a, b)
  assert _without_timing(train.read_metrics(str(killed))) == _without_timing(
      train.read_metrics(str(tmp_path / "ref")))


@pytest.mark.slow
def test_mnist_rerun_keeps_the_table_total_time(tmp_path):
  first = runner.run(load("mnist.py", "smoke"), str(tmp_path))
  results = json.load(open(tmp_path / "results.json"))["summary"]
  assert results["fit_seconds"] > 0
  assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith("-progress")]
  runner.run(load("mnist.py", "smoke"), str(tmp_path))  # loads everything, trains nothing
  again = json.load(open(tmp_path / "results.json"))["summary"]
  assert again["fit_seconds"] == results["fit_seconds"]
  assert again["generator_seconds"] == pytest.approx(results["generator_seconds"])
  assert again["total_seconds"] >= results["fit_seconds"] + results["generator_seconds"]
  assert len(first) == 2


def test_values_whose_cost_overflows_are_refused():
  import sdrift_jax
  x, _ = _bad_clouds()
  with pytest.raises(ValueError, match=r"x holds values up to .*e\+20: the pairwise cost"):
    sdrift_jax.drift_field(x * 1e20, x, None, 0.1)
  assert np.all(np.isfinite(sdrift_jax.drift_field(x * 1e17, x * 1e17, None, 0.1)))
