"""How the command line (:mod:`experiments.run`) reports what goes wrong while running.

Holds the faults of the environment (read-only, full, a name too long, a file in the way)
put in one line naming the path and what to do (:func:`environment_message`); the
libraries' background tracebacks held back while a run goes on (:class:`HeldBack`,
installed by :func:`setup_logging`), each one warning line after a run that succeeds;
and Ctrl-C, one line and exit status 130 at once (:func:`interrupt_now`), also when it
lands where Python would ignore it (:func:`unraisable_before_run`,
:meth:`HeldBack.unraisable`).

Nothing here reads the command line's flags: :mod:`experiments.run` passes what is needed.
"""
import errno
import logging
import os
import re
import sys
from typing import Optional

__all__ = ["INTERRUPTED", "HeldBack", "environment_message", "exit_now", "interrupt_now",
           "one_line", "setup_logging", "unraisable_before_run"]

INTERRUPTED = "interrupted; rerun the same command to resume from the last checkpoint"
#: Exits at once (replaced in tests): see :func:`exit_now`.
_hard_exit = os._exit


def one_line(e) -> str:
  """The text of an error (or a string) in one line; a KeyError's key as given."""
  text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
  return " ".join(str(text).split())


def environment_message(e: BaseException, workdir: Optional[str] = None,
                        follow_causes: bool = True) -> Optional[str]:
  """One line for a fault of the file system (read-only, full, a name too long, a file in
  the way): the path, the error and what to do; ``None`` for any other error.

  Takes an ``OSError`` with an errno (its file name, else ``workdir``, is named), or an
  error whose text carries tensorstore's ``os_error_code`` (orbax's checkpoint writes),
  or (``follow_causes``) one raised while handling either.
  """
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    found = _environment_fault(e, workdir)
    if found is not None:
      code, path, what = found
      return _fault_line(code, path, what)
    if not follow_causes:
      return None
    e = e.__cause__ if e.__cause__ is not None or e.__suppress_context__ else e.__context__
  return None


def _environment_fault(e: BaseException, workdir: Optional[str]):
  """``(errno, path, what)`` of an environment fault, or None."""
  if isinstance(e, OSError) and e.errno in _ADVICE:
    if e.filename is not None:
      return e.errno, os.fsdecode(e.filename), ""
    return e.errno, workdir or "?", "a file under "
  text = str(e)
  code = re.search(r"os_error_code='?(\d+)", text)
  path = re.search(r'local file "([^"]+)"', text) or re.search(r'"(/[^"]+)"', text)
  if code and path and int(code.group(1)) in _ADVICE:
    # The step's temporary directory (orbax renames it when the save is done).
    return (int(code.group(1)), re.sub(r"\.orbax-checkpoint-tmp.*$", "", path.group(1)),
            "checkpoint ")
  return None


_WRITABLE = "use a --workdir on a writable file system"
_SPACE = "free some space there (or use another --workdir), then rerun the same command"
_IN_THE_WAY = "a file is in the way of a directory: move it or use another --workdir"
#: errno -> (verb, what to do) of the faults of the environment reported in one line.
_ADVICE = {
    errno.EROFS: ("write", _WRITABLE),
    errno.EACCES: ("access", "check its permissions, or use another --workdir"),
    errno.EPERM: ("access", "check its permissions, or use another --workdir"),
    errno.ENOSPC: ("write", _SPACE),
    errno.EDQUOT: ("write", _SPACE),
    errno.EFBIG: ("write", "the file system or ulimit -f limits the size of a file"),
    errno.ENAMETOOLONG: ("create", "use a shorter --workdir (at most 255 bytes a "
                                   "name, 4096 a path)"),
    errno.EEXIST: ("create", _IN_THE_WAY),
    errno.ENOTDIR: ("create", _IN_THE_WAY),
    errno.EISDIR: ("write", "a directory is in the way of a file: move it or use another "
                            "--workdir"),
    errno.ENOENT: ("access", None),
    errno.EIO: ("write", "the disk or network file system failed; check it"),
}


def _fault_line(code: int, path: str, what: str) -> str:
  verb, advice = _ADVICE[code]
  line = f"cannot {verb} {what}{path}: [Errno {code}] {os.strerror(code)}"
  return f"{line}; {advice}" if advice else line


def exit_now(code: int) -> None:
  """Flushes stdout and stderr and ends the process with ``code`` at once, not through the
  interpreter's shutdown (which would wait for orbax's writes in flight and print their
  threads' errors)."""
  sys.stdout.flush()
  sys.stderr.flush()
  _hard_exit(code)


def interrupt_now(message: str) -> None:
  """Ctrl-C: ``message`` and exit status 130 at once (see :func:`experiments.run.run`)."""
  print(message, file=sys.stderr)
  exit_now(130)


def unraisable_before_run(u) -> None:
  """Ctrl-C during start-up that Python would ignore (raised in a gc callback) stops."""
  if issubclass(u.exc_type, KeyboardInterrupt):
    interrupt_now("interrupted")
  sys.__unraisablehook__(u)


class HeldBack(logging.Filter):
  """Holds back the tracebacks of the libraries' background work: orbax logs each failed
  save of its threads (several tracebacks each) before the main thread raises it, and
  tensorstore's callbacks into a closed event loop are reported as unraisable exceptions
  (one traceback each, dozens after a failed save). The error that ends the run is
  printed once, in two lines; after a run that succeeds, each is one warning line
  (``lines``)."""

  def __init__(self):
    super().__init__()
    self.lines = []

  def filter(self, record):
    if (record.exc_info or record.exc_text) and record.levelno >= logging.ERROR and not (
        record.name == "sdrift_jax" or record.name.startswith("sdrift_jax.")):
      self.lines.append(f"{record.name}: {one_line(record.getMessage())[:300]}")
      return False
    return True

  def unraisable(self, u) -> None:
    if issubclass(u.exc_type, KeyboardInterrupt):
      interrupt_now(INTERRUPTED)  # Ctrl-C landed in a callback (JAX's gc hook), ignored
      return
    self.lines.append(f"ignored {u.exc_type.__name__}: {one_line(u.exc_value)[:300]}")

  def thread(self, args) -> None:
    name = args.thread.name if args.thread is not None else "?"
    self.lines.append(f"thread {name}: {args.exc_type.__name__}: "
                      f"{one_line(args.exc_value)[:300]}")


def setup_logging(debug: bool) -> HeldBack:
  """Our progress at INFO, the libraries (orbax logs every save) at WARNING; without
  ``debug`` the libraries' background tracebacks held back by the returned filter."""
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stderr, force=True)
  logging.getLogger("sdrift_jax").setLevel(logging.INFO)
  held = HeldBack()
  if not debug:
    import threading  # pylint: disable=g-import-not-at-top
    for handler in logging.getLogger().handlers:
      handler.addFilter(held)
    sys.unraisablehook = held.unraisable
    threading.excepthook = held.thread
  return held
