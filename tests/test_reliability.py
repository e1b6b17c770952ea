"""Faults a run must survive or refuse clearly: shared workdirs, kills, damaged
checkpoints and logs, bad overrides, command-line mistakes (docs/reliability.md)."""
import json
import logging
import os
import random
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
