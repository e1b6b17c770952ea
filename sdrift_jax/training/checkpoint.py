"""Checkpoints through orbax: the one module that imports it.

A checkpoint is a pytree of arrays (the training state). Saving is asynchronous; call
:meth:`Checkpointer.wait` before reading it back or exiting. In a multi-host job every
process calls the same methods and orbax coordinates the writes.

Orbax keeps no checksum of what it wrote (bytes flipped in array data restore silently),
so once a save has finished, process 0 writes ``<step>/sha256.json``: the SHA-256 and size
of every file of the step. :meth:`Checkpointer.restore_latest` verifies it, and a step
whose files differ, or that fails to restore, is moved aside to
``<directory>.damaged/`` with one log line and the previous kept step is tried. A step
is *checked* once its checksum file is written and verified; only checked steps are
called good (:meth:`Checkpointer.latest_checked_step`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "CheckpointError", "CHECKSUM_NAME"]

log = logging.getLogger("sdrift_jax")

CHECKSUM_NAME = "sha256.json"


class CheckpointError(ValueError):
  """No kept checkpoint of a run can be restored."""


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def step_files(step_dir: str) -> dict[str, list]:
  """``{relative path: [size, sha256]}`` of every file of a step but the checksum file."""
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, step_dir)
      if rel != CHECKSUM_NAME:
        out[rel] = [os.path.getsize(full), _digest(full)]
  return out


def verify_step(step_dir: str) -> Optional[str]:
  """``None`` if the step's files match its checksum file, else what is wrong.

  A step with no checksum file is reported as such (``'no checksum'``): written by a run
  that stopped between the end of the save and the checksum, or before checksums existed.
  """
  path = os.path.join(step_dir, CHECKSUM_NAME)
  if not os.path.exists(path):
    return "no checksum"
  try:
    with open(path) as f:
      expected = json.load(f)["files"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    return f"unreadable {CHECKSUM_NAME} ({e})"
  actual = step_files(step_dir)
  missing = sorted(expected.keys() - actual.keys())
  if missing:
    return f"missing file(s) {missing[:3]}"
  changed = sorted(k for k in expected if expected[k] != actual[k])
  if changed:
    return f"content differs from its checksum in {changed[:3]}"
  return None


class Checkpointer:
  """Keeps the last ``max_to_keep`` checkpoints of a run under ``directory``."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._max_to_keep = max_to_keep
    self._pending: Optional[int] = None  # saved, checksum not yet written
    self._manager = self._make_manager()

  def _make_manager(self):
    return ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep,
                                                             create=True))

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_checked_step(self) -> Optional[int]:
    """The newest step whose files match their checksum (waits for a pending save)."""
    self.wait()
    for step in reversed(self.all_steps()):
      if verify_step(self.step_dir(step)) is None:
        return step
    return None

  def save(self, step: int, state: Any) -> None:
    self._record_pending()
    self._manager.save(step, args=ocp.args.StandardSave(state))
    self._pending = step

  def _record_pending(self) -> None:
    """Waits for the save in flight and writes its checksum file (process 0)."""
    self._manager.wait_until_finished()
    step, self._pending = self._pending, None
    if step is None or jax.process_index() != 0 or not os.path.isdir(self.step_dir(step)):
      return
    from sdrift_jax.training import workdir  # pylint: disable=g-import-not-at-top
    workdir.atomic_write_json(os.path.join(self.step_dir(step), CHECKSUM_NAME),
                              dict(step=step, files=step_files(self.step_dir(step))))

  def restore(self, step: int, like: Any) -> Any:
    """Restores ``step`` into the structure, shapes, dtypes and shardings of ``like``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_latest(self, like: Any) -> tuple[Optional[int], Any]:
    """The newest kept step that verifies and restores: ``(step, state)``.

    A damaged step (files that differ from the checksum, missing or empty, or that orbax
    cannot read) is reported in one warning and moved to ``<directory>.damaged/``, and
    the step before it is tried. A step with no checksum file is restored if orbax can
    read it, with a warning that it is unchecked.

    Returns:
      ``(None, like)`` when there is no checkpoint.

    Raises:
      CheckpointError: checkpoints exist but none can be restored.
      ValueError: a checkpoint restores with another tree structure than ``like`` (a
        different config, not damage).
    """
    tried = []
    for step in reversed(self.all_steps()):
      problem = verify_step(self.step_dir(step))
      if problem not in (None, "no checksum"):
        self._set_aside(step, problem, tried)
        continue
      try:
        state = self.restore(step, like)
      except Exception as e:  # pylint: disable=broad-except
        if "tree structures do not match" in str(e):
          raise
        self._set_aside(step, f"orbax cannot restore it: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160] if str(e) else ''}", tried)
        continue
      if problem == "no checksum":
        log.warning("checkpoint step %d in %s has no checksum (saved by a run that stopped "
                    "before writing it, or by an older version): restored unchecked",
                    step, self.directory)
      return step, state
    if tried:
      raise CheckpointError(
          f"no usable checkpoint in {self.directory}: " + "; ".join(tried) +
          f". The damaged steps are in {self.directory}.damaged; rerun with --restart "
          "to start the run over (its files are moved aside)")
    return None, like

  def _set_aside(self, step: int, problem: str, tried: list) -> None:
    remaining = [s for s in self.all_steps() if s < step]
    tried.append(f"step {step}: {problem}")
    log.warning("checkpoint step %d in %s is damaged (%s); %s", step, self.directory,
                problem, f"trying step {remaining[-1]}" if remaining else "no earlier step")
    if jax.process_index() == 0:
      aside = os.path.join(f"{self.directory}.damaged", f"{step}-{int(time.time())}")
      os.makedirs(os.path.dirname(aside), exist_ok=True)
      shutil.move(self.step_dir(step), aside)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"checkpoint step {step} set aside")
    # The manager caches its step list; a fresh one sees the step gone.
    self._manager.close()
    self._manager = self._make_manager()

  def wait(self) -> None:
    self._record_pending()

  def close(self) -> None:
    self._record_pending()
    self._manager.close()
