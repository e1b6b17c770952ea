"""Workdir I/O that survives kills and refuses sharing: the run lock, atomic whole-file
writes and the tolerant reader of ``metrics.jsonl``.

A run owns its workdir through ``flock`` on ``<workdir>/.lock``; the kernel releases it
when the process exits, however it exits, so a killed run never leaves a stale lock. The
lock file names its holder (pid, host, start time) for the message a second run gets.
Whole files (configs, tables, summaries, caches) are written to a temporary file in the
same directory and renamed over the target, so a reader sees the old file or the new
one, never half of one.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import tempfile
from typing import Any, Iterator

__all__ = ["WorkdirBusyError", "WorkdirLockError", "MetricsFileError", "hold", "atomic_write",
           "atomic_write_json", "read_jsonl", "write_jsonl"]

log = logging.getLogger("sdrift_jax")

LOCK_NAME = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir's lock."""


class WorkdirLockError(ValueError):
  """Something that is not a lock file (a directory) is at ``<workdir>/.lock``."""


class MetricsFileError(ValueError):
  """A line of a JSON-lines file that is not a record (other than a partial last line)."""


# Locks this process holds: realpath -> [open file, depth]. flock locks belong to an open
# file description, so a second open of the same file in this process would conflict with
# the first; nested holds (a sweep's top workdir, then a run in it) share one.
_HELD: dict[str, list] = {}


def _holder_text(path: str) -> str:
  try:
    with open(path) as f:
      holder = json.loads(f.read() or "{}")
  except (OSError, ValueError):
    holder = {}
  if not holder:
    return "another process (no holder recorded yet)"
  return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since "
          f"{holder.get('started', '?')}")


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds ``<workdir>/.lock`` for the body; refuses at once if another process holds it.

  Args:
    workdir: the run's directory (created if missing).
    enabled: ``False`` on every process but process 0 of a multi-process job, which share
      the workdir and must not refuse each other.

  Raises:
    WorkdirBusyError: another process holds the lock; the message names it.
    WorkdirLockError: ``<workdir>/.lock`` is a directory; the message says to remove it.
  """
  if not enabled:
    yield
    return
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.realpath(os.path.join(workdir, LOCK_NAME))
  if path in _HELD:
    _HELD[path][1] += 1
    try:
      yield
    finally:
      _HELD[path][1] -= 1
    return
  f = _acquire(path, workdir)
  try:
    f.seek(0)
    f.truncate()
    f.write(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(),
                            started=datetime.datetime.now().isoformat(timespec="seconds"))))
    f.flush()
  except OSError as e:  # a full disk, say: the error names the lock file
    with contextlib.suppress(OSError):
      f.close()  # flushes again, and fails again
    if e.filename is None:
      raise OSError(e.errno, e.strerror, path) from e
    raise
  _HELD[path] = [f, 1]
  try:
    yield
  finally:
    _HELD[path][1] -= 1
    if _HELD[path][1] == 0:
      del _HELD[path]
      # Unlinked while still held: a process that opened it meanwhile sees, once it has
      # the lock, that its file is no longer the one at the path, and tries again.
      with contextlib.suppress(OSError):
        os.remove(path)
      fcntl.flock(f, fcntl.LOCK_UN)
      f.close()
      if created:  # a run refused before writing anything leaves no directory behind
        with contextlib.suppress(OSError):
          os.rmdir(workdir)


def _acquire(path: str, workdir: str):
  """Opens and locks ``path``; the open file, whose inode is the one at ``path``."""
  while True:
    try:
      f = open(path, "a+")
    except IsADirectoryError:
      raise WorkdirLockError(f"{path} is a directory, not the run's lock file; remove it "
                             f"(rm -r {path}) and rerun") from None
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      f.close()
      if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
        raise
      raise WorkdirBusyError(f"workdir {workdir} is in use by {_holder_text(path)}; wait "
                             "for that run to end or use another --workdir") from None
    try:
      same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return f
    f.close()  # released and removed by its holder between our open and our lock


def atomic_write(path: str, data: str | bytes) -> None:
  """Writes ``data`` to ``path`` whole or not at all (temporary file, fsync, rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def atomic_write_json(path: str, obj: Any, **kwargs) -> None:
  atomic_write(path, json.dumps(obj, **kwargs))


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSON-lines file; ``[]`` if it does not exist.

  A last line with no newline that does not parse is what a kill during an append leaves:
  it is dropped with a warning. Any other line that does not parse raises.

  Raises:
    MetricsFileError: naming the file and the line number.
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = f.readlines()
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except ValueError as e:
      if i == len(lines) - 1 and not line.endswith("\n"):
        log.warning("%s: dropped a partial last line (%d characters; a run killed while "
                    "writing it)", path, len(line))
        break
      raise MetricsFileError(f"{path}, line {i + 1}: not a JSON record ({e}): "
                             f"{line.strip()[:80]!r}; fix or delete the line") from None
  return records


def write_jsonl(path: str, records: list[dict]) -> None:
  """Replaces ``path`` with ``records``, one JSON line each, atomically."""
  atomic_write(path, "".join(json.dumps(r) + "\n" for r in records))
