"""Runs an experiment from a config file.

    python -m experiments.run --config=configs/toy.py[:variant] [--workdir=DIR]
    python -m experiments.run --config=configs/toy.py --config.drift.tau=0.05

The workdir defaults to ``workdirs/<config name>[_<variant>]``; running again with the
same workdir resumes from its last checkpoint; ``--restart`` moves what it holds to
``<workdir>.old-<time>/`` and starts over (a workdir whose history cannot be resumed, its
checkpoints damaged or deleted, is refused without it).

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

This module holds the flags (defined here only), their parsing and the run;
:mod:`experiments.cli_args` checks the arguments before anything runs and
:mod:`experiments.cli_faults` reports what goes wrong while running.
"""
import glob
import logging
import os
import sys
from typing import Optional

from absl import app, flags
from ml_collections import config_flags

from experiments import cli_args, cli_faults

config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (default: workdirs/<config>).")
flags.DEFINE_bool("restart", False, "Move what the workdir holds to <workdir>.old-<time>/ "
                  "and start over (nothing is deleted).")
flags.DEFINE_bool("distributed", os.environ.get("SDRIFT_DISTRIBUTED") == "1",
                  "Call jax.distributed.initialize() (multi-host jobs).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
flags.DEFINE_bool("debug", os.environ.get("SDRIFT_DEBUG") == "1",
                  "Show the traceback of an error (also SDRIFT_DEBUG=1).")
FLAGS = flags.FLAGS

__all__ = ["help_text", "main", "parse_flags", "run"]

HINT = "(--debug or SDRIFT_DEBUG=1 shows the traceback)"
INTERRUPTED = cli_faults.INTERRUPTED


def _debug(argv) -> bool:
  return "--debug" in argv or os.environ.get("SDRIFT_DEBUG") == "1"


def help_text() -> str:
  """Usage, the configs under configs/ and their variants, one line each."""
  lines = [cli_args.USAGE, "", "Configs (variants after ':', combined with commas and "
           "key=value overrides; --config.a.b=value sets any field):"]
  for path in sorted(glob.glob(os.path.join(cli_args.ROOT, "configs", "*.py"))):
    if os.path.basename(path).startswith("_"):
      continue
    try:
      module = cli_args.load_module(path)
    except Exception as e:  # pylint: disable=broad-except
      lines.append(f"  configs/{os.path.basename(path)}  "
                   f"(cannot load: {cli_faults.one_line(e)})")
      continue
    doc = (module.__doc__ or "").strip().splitlines()
    lines.append(f"  configs/{os.path.basename(path)}  {doc[0] if doc else ''}")
    for name, description in getattr(module, "VARIANTS", {}).items():
      lines.append(f"      :{name:<11} {description}")
  lines += ["", "Flags:"]
  for name in ("config", "workdir", "restart", "debug", "distributed",
               "coordinator_address", "num_processes", "process_id"):
    lines.append(f"  --{name}: {FLAGS[name].help}")
  return "\n".join(lines)


def parse_flags(argv):
  """absl's parser, with ``--help`` (exit 0, configs listed) and usage errors of one
  line (exit 2); with ``--debug`` absl's own behaviour. Tuple flags take bare words
  (:func:`experiments.cli_args.tuple_overrides`)."""
  if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
    try:
      print(help_text(), flush=True)
    except BrokenPipeError:  # --help | head: the reader has what it wanted
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  try:
    if not _debug(argv):
      sys.unraisablehook = cli_faults.unraisable_before_run
      unknown = [a for a in argv[1:] if a.startswith("--") and not a.startswith("--config")
                 and a[2:].split("=", 1)[0].removeprefix("no") not in FLAGS]
      if unknown:
        cli_args.usage_error(f"unknown flag {unknown[0]}"
                             + ("; did you mean --config?" if unknown[0].startswith("--conf")
                                else "; --help lists the flags"))
      cli_args.check_config_argument(argv)
    rewritten = cli_args.tuple_overrides(argv)
    if argv is sys.argv:
      sys.argv[:] = rewritten  # ml_collections reads the overrides from sys.argv
    argv = rewritten
    try:
      rest = FLAGS(argv)
    except (flags.Error, AttributeError) as e:
      if _debug(argv):
        raise
      cli_args.usage_error(cli_faults.one_line(e))
    cli_args.check_arguments(rest, FLAGS.workdir)
    return rest
  except KeyboardInterrupt:
    if _debug(argv):
      raise
    print("interrupted", file=sys.stderr)
    sys.exit(130)


def run(config, workdir: str, debug: bool = False,
        held: Optional[cli_faults.HeldBack] = None, restart: bool = False):
  """Runs ``config`` in ``workdir`` and returns its summary; the errors of a user or of
  the environment end the process with two lines on stderr (status 1), Ctrl-C with one
  (status 130). With ``debug`` they raise. ``restart`` first moves what ``workdir`` holds
  aside (:func:`experiments.run_experiment`).

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
    summary = experiments.run_experiment(config, workdir, restart=restart)
  except KeyboardInterrupt:
    if debug:
      raise
    cli_faults.interrupt_now(INTERRUPTED)
    raise  # only when the exit is replaced (tests)
  except Exception as e:  # pylint: disable=broad-except
    from sdrift_jax import training  # pylint: disable=g-import-not-at-top
    from sdrift_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    user_errors = (ValueError, KeyError, FileNotFoundError, ImportError,
                   workdir_lib.WorkdirBusyError, training.NonFiniteLossError)
    # An error of ours names the problem better than the OSError that it reports.
    message = cli_faults.environment_message(
        e, workdir, follow_causes=not isinstance(e, user_errors))
    if (message is None and isinstance(e, RuntimeError)
        and "Unable to initialize backend" in str(e)):
      message = (f"JAX cannot start its backend ({cli_faults.one_line(e)[:160]}); check "
                 f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', '')!r} and that jax is "
                 "installed for that accelerator")
    if debug or (message is None and not isinstance(e, user_errors)):
      raise
    print(f"error: {message or cli_faults.one_line(e)}", file=sys.stderr)
    print(HINT, file=sys.stderr)
    if message is not None:
      # Not through the interpreter's shutdown: it would wait for orbax's writes in flight
      # into the same failing file system and print their errors.
      cli_faults.exit_now(1)
    sys.exit(1)
  for line in (held.lines if held else []):  # the run succeeded all the same
    print(f"warning: {line} (--debug shows the traceback)", file=sys.stderr)
  return summary


def main(argv):
  del argv
  held = cli_faults.setup_logging(FLAGS.debug)
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
  config_arg = (cli_args.config_argument(sys.argv)
                or config_flags.get_config_filename(FLAGS["config"]))
  workdir = FLAGS.workdir or cli_args.default_workdir(config_arg)
  run(FLAGS.config, workdir, FLAGS.debug, held, restart=FLAGS.restart)
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(f"outputs in {os.path.abspath(workdir)}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
