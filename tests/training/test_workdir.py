"""sdrift_jax.training.workdir: the workdir lock, atomic writes and a tolerant metrics.jsonl
(docs/reliability.md)."""
import errno
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import experiments
from tests.helpers import HOLD_SCRIPT, ROOT, holder, load
from sdrift_jax import training
from sdrift_jax.training import workdir as workdir_lib
from sdrift_jax.training import writers

# Workdir lock ---------------------------------------------------------------------------


@pytest.mark.heavy
def test_second_run_into_a_held_workdir_is_refused_naming_the_holder(tmp_path):
  proc = holder(tmp_path)
  try:
    t0 = time.perf_counter()
    with pytest.raises(workdir_lib.WorkdirBusyError, match=f"pid {proc.pid} on "):
      experiments.run_experiment(load("toy.py", "smoke"), str(tmp_path))
    assert time.perf_counter() - t0 < 5  # at once, not after a timeout
    assert not os.path.exists(tmp_path / "checkpoints")
    assert not os.path.exists(tmp_path / "8gaussians")  # no setting started either
  finally:
    proc.kill()
    proc.wait()


@pytest.mark.heavy
def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
  proc = holder(tmp_path)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert os.path.exists(tmp_path / ".lock")  # left behind, but no longer locked
  with workdir_lib.hold(str(tmp_path)):
    pass
  assert not os.path.exists(tmp_path / ".lock")


@pytest.mark.heavy
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


def test_lock_is_reentrant_and_released_in_one_process(tmp_path):
  with workdir_lib.hold(str(tmp_path)):
    assert os.path.exists(tmp_path / ".lock")
    with workdir_lib.hold(str(tmp_path)):
      pass
    assert os.path.exists(tmp_path / ".lock")  # the outer hold still holds it
  assert not os.path.exists(tmp_path / ".lock")


def test_a_directory_in_place_of_the_lock_is_refused_in_one_line(tmp_path):
  (tmp_path / ".lock").mkdir()
  with pytest.raises(workdir_lib.WorkdirLockError) as e:
    with workdir_lib.hold(str(tmp_path)):
      pass
  lock = os.path.realpath(tmp_path / ".lock")
  assert str(e.value) == (f"{lock} is a directory, not the run's lock file; remove it "
                          f"(rm -r {lock}) and rerun")
  assert isinstance(e.value, ValueError)  # the command line prints it as one line
  assert os.path.isdir(tmp_path / ".lock")


def test_a_lock_file_that_cannot_be_written_is_named_and_released(tmp_path, monkeypatch):
  def full_disk():
    raise OSError(errno.ENOSPC, "No space left on device")  # as a write() reports it

  monkeypatch.setattr(workdir_lib.socket, "gethostname", full_disk)  # while writing
  with pytest.raises(OSError) as e:
    with workdir_lib.hold(str(tmp_path)):
      pass
  assert e.value.errno == errno.ENOSPC  # with the file, for the one-line message
  assert e.value.filename == os.path.realpath(tmp_path / ".lock")
  monkeypatch.undo()
  with workdir_lib.hold(str(tmp_path)):  # not left locked
    pass


# metrics.jsonl and atomic writes --------------------------------------------------------


def test_partial_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 10}\n{"step": 20}\n{"step": 3')
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    assert training.read_metrics(str(tmp_path)) == [{"step": 10}, {"step": 20}]
  assert "partial last line" in caplog.text and str(path) in caplog.text
  writers.JsonlWriter(str(path), resume_step=10)  # the resume rewrites it whole
  assert path.read_text() == '{"step": 10}\n'


def test_corrupt_metrics_line_names_file_and_line(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 10}\n{"step": 2x}\n{"step": 30}\n')
  with pytest.raises(workdir_lib.MetricsFileError, match=r"metrics.jsonl, line 2"):
    training.read_metrics(str(tmp_path))


def test_write_jsonl_round_trips(tmp_path):
  records = [dict(step=1, w2=[0.5, 0.25]), dict(step=2, note="x")]
  workdir_lib.write_jsonl(str(tmp_path / "m.jsonl"), records)
  assert workdir_lib.read_jsonl(str(tmp_path / "m.jsonl")) == records


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
