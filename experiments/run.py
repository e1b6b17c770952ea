"""Runs an experiment from a config file.

    python -m experiments.run --config=configs/toy.py[:variant] [--workdir=DIR]
    python -m experiments.run --config=configs/toy.py --config.drift.tau=0.05

The workdir defaults to ``workdirs/<config name>[_<variant>]``; running again with the
same workdir resumes from its last checkpoint.

Multi-host (docs/cluster.md): with ``--distributed`` (or ``SDRIFT_DISTRIBUTED=1``, or
``config.parallel.distributed=True``) every process calls ``jax.distributed.initialize()``
before anything else touches JAX; with no further arguments JAX finds the coordinator
itself on SLURM, Open MPI and Cloud TPU, or from ``--coordinator_address``,
``--num_processes`` and ``--process_id``.

A mistake on the command line (a config path, variant, key or value, an empty or
file ``--workdir``, an extra argument) prints one line and exits with status 2; a config
or data error found while running (a ValueError, KeyError, FileNotFoundError, a workdir in
use, a damaged checkpoint) or a fault of the file system (read-only, full, a name too
long: the path and what to do) two lines and status 1; Ctrl-C one line and status 130
(rerunning the command resumes from the last checkpoint). ``--debug`` (or
``SDRIFT_DEBUG=1``) shows the traceback instead, and the libraries' own error logs
(orbax's background threads log each failed save with its traceback before the main
thread raises it). ``--help`` lists the configs and their variants.
"""
import ast
import errno
import glob
import importlib.util
import logging
import os
import re
import sys
from typing import Optional

from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (default: workdirs/<config>).")
flags.DEFINE_bool("distributed", os.environ.get("SDRIFT_DISTRIBUTED") == "1",
                  "Call jax.distributed.initialize() (multi-host jobs).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
flags.DEFINE_bool("debug", os.environ.get("SDRIFT_DEBUG") == "1",
                  "Show the traceback of an error (also SDRIFT_DEBUG=1).")
FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USAGE = "usage: python -m experiments.run --config=configs/NAME.py[:variant,key=value,...]"
HINT = "(--debug or SDRIFT_DEBUG=1 shows the traceback)"
INTERRUPTED = "interrupted; rerun the same command to resume from the last checkpoint"
#: Exits at once on Ctrl-C (replaced in tests): see :func:`run`.
_hard_exit = os._exit


def _debug(argv) -> bool:
  return "--debug" in argv or os.environ.get("SDRIFT_DEBUG") == "1"


def _usage_error(message: str) -> None:
  """One line on stderr and exit status 2 (a mistake on the command line)."""
  print(f"error: {message}", file=sys.stderr)
  print(f"{USAGE}  (--help lists the configs and variants)", file=sys.stderr)
  sys.exit(2)


def _message(e: BaseException) -> str:
  text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
  return " ".join(str(text).split())  # one line


def _load_module(path: str):
  spec = importlib.util.spec_from_file_location(
      "config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def help_text() -> str:
  """Usage, the configs under configs/ and their variants, one line each."""
  lines = [USAGE, "", "Configs (variants after ':', combined with commas and key=value "
           "overrides; --config.a.b=value sets any field):"]
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    if os.path.basename(path).startswith("_"):
      continue
    try:
      module = _load_module(path)
    except Exception as e:  # pylint: disable=broad-except
      lines.append(f"  configs/{os.path.basename(path)}  (cannot load: {_message(e)})")
      continue
    doc = (module.__doc__ or "").strip().splitlines()
    lines.append(f"  configs/{os.path.basename(path)}  {doc[0] if doc else ''}")
    for name, description in getattr(module, "VARIANTS", {}).items():
      lines.append(f"      :{name:<11} {description}")
  lines += ["", "Flags:"]
  for name in ("config", "workdir", "debug", "distributed", "coordinator_address",
               "num_processes", "process_id"):
    lines.append(f"  --{name}: {FLAGS[name].help}")
  return "\n".join(lines)


def _check_config_argument(argv) -> None:
  """Loads the ``--config`` file and variant once, so that a mistake in either is one
  line naming it (absl would print the config module's traceback)."""
  arg = _config_argument(argv)
  if arg is None:
    _usage_error("--config is required")
  path, _, variant = arg.partition(":")
  if not os.path.isfile(path):
    names = ", ".join(os.path.relpath(p, ROOT)
                      for p in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
    _usage_error(f"no config file {path!r}; the configs are {names}")
  try:
    module = _load_module(path)
    config = module.get_config(variant or None)
  except (ValueError, KeyError, TypeError) as e:
    _usage_error(f"--config={arg}: {_message(e)}")
  _check_experiment(argv, module, config, path, arg)
  module_per_setting = getattr(module, "PER_SETTING", {})
  for a in argv:
    if a.startswith("--config."):
      dotted = a[len("--config."):].split("=", 1)[0]
      try:
        from experiments import config_lib  # pylint: disable=g-import-not-at-top
        config_lib.check_per_setting(config, [dotted], module_per_setting, path)
      except ValueError as e:
        _usage_error(f"{a}: {_message(e)}")
      node = config
      for i, name in enumerate(dotted.split(".")):
        if not hasattr(node, "keys") or name not in node:
          where = ".".join(dotted.split(".")[:i]) or "the config"
          fields = sorted(node.keys()) if hasattr(node, "keys") else []
          _usage_error(f"unknown config key {dotted!r} in {a}; fields of {where}: {fields}")
        node = node[name]


def _config_experiments() -> dict[str, list[str]]:
  """``{experiment: [configs/NAME.py, ...]}`` of the config files under configs/."""
  out = {}
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    if os.path.basename(path).startswith("_"):
      continue
    try:
      name = _load_module(path).get_config(None).get("experiment")
    except Exception:  # pylint: disable=broad-except
      continue  # reported when that config is used
    out.setdefault(name, []).append(os.path.relpath(path, ROOT))
  return out


def _check_experiment(argv, module, config, path: str, arg: str) -> None:
  """Refuses a ``config.experiment`` other than the config file's own (set by a variant
  or ``--config.experiment``): an experiment reads its own config's fields, so another
  one's config fails somewhere in the middle of the run (or names no experiment at all,
  as ``run``, the command line module, does). Nothing is imported or written first."""
  try:
    own = module.get_config(None).get("experiment")
  except (ValueError, KeyError, TypeError):
    return
  given = [(f"--config={arg}", config.get("experiment"))]
  for i, a in enumerate(argv):
    if a.startswith("--config.experiment="):
      given.append((a, a.split("=", 1)[1]))
    elif a == "--config.experiment" and i + 1 < len(argv):
      given.append((f"{a} {argv[i + 1]}", argv[i + 1]))
  for where, name in given:
    if name == own:
      continue
    configs = _config_experiments()
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    if name in configs:
      fix = f"for {name!r} use {' or '.join(configs[name])}"
    else:
      fix = f"the configs' experiments are {sorted(k for k in configs if k)}"
    _usage_error(f"{where}: {rel} is a config of the {own!r} experiment, whose fields "
                 f"the {name!r} experiment does not read; {fix}")


def _tuple_overrides(argv) -> list:
  """``argv`` with ``--config.a.b=(x,y)`` for a tuple field rewritten as
  ``--config.a.b=('x', 'y')``: the variant form (``:normalizations=(x,y)``) takes bare
  words in a tuple, ml_collections' flags would keep ``'(x,y)'`` as one string."""
  arg = _config_argument(argv)
  if arg is None:
    return list(argv)
  try:
    from experiments import config_lib  # pylint: disable=g-import-not-at-top
    config = config_lib.load(arg)
  except Exception:  # pylint: disable=broad-except
    return list(argv)  # reported by the checks that follow
  out = []
  for a in argv:
    dotted, eq, text = a[len("--config."):].partition("=")
    text = text.strip()
    bracketed = text[:1] + text[-1:] in ("()", "[]")
    if (a.startswith("--config.") and eq and (bracketed or "," in text)
        and not _is_literal(text) and _is_tuple_field(config, dotted)):
      try:  # as the variant form parses it
        config_lib.set_typed(config, dotted, text if bracketed else f"({text})")
      except (ValueError, KeyError) as e:
        _usage_error(f"{a}: {_message(e)}")
      a = f"--config.{dotted}={tuple(_get(config, dotted))!r}"
    out.append(a)
  return out


def _is_literal(text: str) -> bool:
  try:
    ast.literal_eval(text)
    return True
  except (ValueError, SyntaxError):
    return False


def _get(config, dotted: str):
  node = config
  for name in dotted.split("."):
    node = node[name]
  return node


def _is_tuple_field(config, dotted: str) -> bool:
  try:
    return isinstance(_get(config, dotted), (tuple, list))
  except (KeyError, TypeError, AttributeError):
    return False


def check_arguments(rest, workdir: Optional[str]) -> None:
  """Usage errors absl lets through: an extra positional argument (``rest`` is what the
  flags left, the program first), an empty ``--workdir`` (it would fall back to
  workdirs/<config> in the checkout) or one that is an existing file."""
  if len(rest) > 1:
    _usage_error(f"unexpected argument(s) {' '.join(rest[1:])!r}: every setting is a flag "
                 "(--config.a.b=value) or in the variant (:key=value)")
  if workdir is not None:
    if not workdir.strip():
      _usage_error("--workdir is empty: give a directory, or leave the flag out for "
                   "workdirs/<config>")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      _usage_error(f"--workdir={workdir} is a file, not a directory: choose another "
                   "--workdir (or move the file)")


def parse_flags(argv):
  """absl's parser, with ``--help`` (exit 0, configs listed) and usage errors of one
  line (exit 2); with ``--debug`` absl's own behaviour. Tuple flags take bare words
  (:func:`_tuple_overrides`)."""
  if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
    try:
      print(help_text(), flush=True)
    except BrokenPipeError:  # --help | head: the reader has what it wanted
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  try:
    if not _debug(argv):
      sys.unraisablehook = _unraisable_before_run
      _check_config_argument(argv)
    rewritten = _tuple_overrides(argv)
    if argv is sys.argv:
      sys.argv[:] = rewritten  # ml_collections reads the overrides from sys.argv
    argv = rewritten
    try:
      rest = FLAGS(argv)
    except (flags.Error, AttributeError) as e:
      if _debug(argv):
        raise
      _usage_error(_message(e))
    check_arguments(rest, FLAGS.workdir)
    return rest
  except KeyboardInterrupt:
    if _debug(argv):
      raise
    print("interrupted", file=sys.stderr)
    sys.exit(130)


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if variant:
    name += "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", variant)
  return os.path.join("workdirs", name)


def _config_argument(argv):
  """The raw ``--config`` value, variant included (``configs/toy.py:smoke``), or None;
  a second ``--config`` is a usage error (one run, one config, one workdir)."""
  found = []
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      found.append(a.split("=", 1)[1])
    elif a == "--config" and i + 1 < len(argv):
      found.append(argv[i + 1])
  if len(found) > 1:
    _usage_error(f"--config given {len(found)} times ({', '.join(found)}); give it once")
  return found[0] if found else None


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


def _interrupt_now(message: str) -> None:
  """Ctrl-C: ``message`` and exit status 130 at once (see :func:`run`)."""
  print(message, file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  _hard_exit(130)


def _unraisable_before_run(u) -> None:
  """Ctrl-C during start-up that Python would ignore (raised in a gc callback) stops."""
  if issubclass(u.exc_type, KeyboardInterrupt):
    _interrupt_now("interrupted")
  sys.__unraisablehook__(u)


class _HeldBack(logging.Filter):
  """Holds back the tracebacks of the libraries' background work: orbax logs each failed
  save of its threads (several tracebacks each) before the main thread raises it, and
  tensorstore's callbacks into a closed event loop are reported as unraisable exceptions
  (one traceback each, dozens after a failed save). The error that ends the run is
  printed once, in two lines; after a run that succeeds, each is one warning line."""

  def __init__(self):
    super().__init__()
    self.lines = []

  def filter(self, record):
    if (record.exc_info or record.exc_text) and record.levelno >= logging.ERROR and not (
        record.name == "sdrift_jax" or record.name.startswith("sdrift_jax.")):
      self.lines.append(f"{record.name}: {_message(record.getMessage())[:300]}")
      return False
    return True

  def unraisable(self, u) -> None:
    if issubclass(u.exc_type, KeyboardInterrupt):
      _interrupt_now(INTERRUPTED)  # Ctrl-C landed in a callback (JAX's gc hook), ignored
      return
    self.lines.append(f"ignored {u.exc_type.__name__}: {_message(u.exc_value)[:300]}")

  def thread(self, args) -> None:
    name = args.thread.name if args.thread is not None else "?"
    self.lines.append(f"thread {name}: {args.exc_type.__name__}: "
                      f"{_message(args.exc_value)[:300]}")


def _setup_logging(debug: bool) -> _HeldBack:
  # Our progress at INFO; libraries (orbax logs every save) at WARNING.
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stderr, force=True)
  logging.getLogger("sdrift_jax").setLevel(logging.INFO)
  held = _HeldBack()
  if not debug:
    import threading  # pylint: disable=g-import-not-at-top
    for handler in logging.getLogger().handlers:
      handler.addFilter(held)
    sys.unraisablehook = held.unraisable
    threading.excepthook = held.thread
  return held


def run(config, workdir: str, debug: bool = False, held: Optional[_HeldBack] = None):
  """Runs ``config`` in ``workdir`` and returns its summary; the errors of a user or of
  the environment end the process with two lines on stderr (status 1), Ctrl-C with one
  (status 130). With ``debug`` they raise.

  On Ctrl-C the process exits at once (``os._exit``), not through the interpreter's
  shutdown, which would wait for orbax's save in flight and print its threads'
  tracebacks: the files of the run are closed by then (the exception unwound them), a
  step orbax had not finished is a temporary directory that is never restored, and one
  whose checksum was not written yet is restored with a warning. A Ctrl-C that Python
  would ignore (raised in a callback: JAX's gc hook) exits the same way from the
  unraisable-exception hook, without unwinding: the kernel releases the workdir lock, and
  a partial last line of ``metrics.jsonl`` is dropped on resume.
  """
  try:
    import experiments  # pylint: disable=g-import-not-at-top
    summary = experiments.run_experiment(config, workdir)
  except KeyboardInterrupt:
    if debug:
      raise
    _interrupt_now(INTERRUPTED)
    raise  # only when _hard_exit is replaced
  except Exception as e:  # pylint: disable=broad-except
    from sdrift_jax import training  # pylint: disable=g-import-not-at-top
    from sdrift_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    user_errors = (ValueError, KeyError, FileNotFoundError, ImportError,
                   workdir_lib.WorkdirBusyError, training.NonFiniteLossError)
    # An error of ours names the problem better than the OSError that it reports.
    message = environment_message(e, workdir, follow_causes=not isinstance(e, user_errors))
    if debug or (message is None and not isinstance(e, user_errors)):
      raise
    print(f"error: {message or _message(e)}", file=sys.stderr)
    print(HINT, file=sys.stderr)
    if message is not None:
      # Not through the interpreter's shutdown: it would wait for orbax's writes in flight
      # into the same failing file system and print their errors.
      sys.stdout.flush()
      sys.stderr.flush()
      _hard_exit(1)
    sys.exit(1)
  for line in (held.lines if held else []):  # the run succeeded all the same
    print(f"warning: {line} (--debug shows the traceback)", file=sys.stderr)
  return summary


def main(argv):
  del argv
  held = _setup_logging(FLAGS.debug)
  try:
    parallel = FLAGS.config.get("parallel") or {}
    if FLAGS.distributed or parallel.get("distributed", False):
      import jax  # pylint: disable=g-import-not-at-top
      jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                                 num_processes=FLAGS.num_processes,
                                 process_id=FLAGS.process_id)
      logging.getLogger("sdrift_jax").info(
          "process %d of %d, %d local / %d global devices", jax.process_index(),
          jax.process_count(), jax.local_device_count(), jax.device_count())
  except KeyboardInterrupt:
    if FLAGS.debug:
      raise
    print("interrupted", file=sys.stderr)
    sys.exit(130)
  config_arg = (_config_argument(sys.argv)
                or config_flags.get_config_filename(FLAGS["config"]))
  workdir = FLAGS.workdir or default_workdir(config_arg)
  run(FLAGS.config, workdir, FLAGS.debug, held)
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(f"outputs in {os.path.abspath(workdir)}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
