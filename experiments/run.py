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

A mistake on the command line (a config path, variant, key or value) prints one line and
exits with status 2; a config or data error found while running (a ValueError, KeyError,
FileNotFoundError, a workdir in use, a damaged checkpoint) one or two lines and status 1.
``--debug`` (or ``SDRIFT_DEBUG=1``) shows the traceback instead. ``--help`` lists the
configs and their variants.
"""
import glob
import importlib.util
import logging
import os
import re
import sys

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


def parse_flags(argv):
  """absl's parser, with ``--help`` (exit 0, configs listed) and usage errors of one
  line (exit 2); with ``--debug`` absl's own behaviour."""
  if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
    print(help_text())
    sys.exit(0)
  if not _debug(argv):
    _check_config_argument(argv)
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError) as e:
    if _debug(argv):
      raise
    _usage_error(_message(e))


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


def main(argv):
  del argv
  # Our progress at INFO; libraries (orbax logs every save) at WARNING.
  logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stderr, force=True)
  logging.getLogger("sdrift_jax").setLevel(logging.INFO)
  parallel = FLAGS.config.get("parallel") or {}
  if FLAGS.distributed or parallel.get("distributed", False):
    import jax
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
    logging.getLogger("sdrift_jax").info(
        "process %d of %d, %d local / %d global devices", jax.process_index(),
        jax.process_count(), jax.local_device_count(), jax.device_count())
  import experiments
  from sdrift_jax import training
  from sdrift_jax.training import workdir as workdir_lib
  config_arg = (_config_argument(sys.argv)
                or config_flags.get_config_filename(FLAGS["config"]))
  workdir = FLAGS.workdir or default_workdir(config_arg)
  user_errors = (ValueError, KeyError, FileNotFoundError, ImportError,
                 workdir_lib.WorkdirBusyError, training.NonFiniteLossError)
  try:
    experiments.run_experiment(FLAGS.config, workdir)
  except user_errors as e:
    if FLAGS.debug:
      raise
    print(f"error: {_message(e)}", file=sys.stderr)
    print("(--debug or SDRIFT_DEBUG=1 shows the traceback)", file=sys.stderr)
    sys.exit(1)
  import jax
  if jax.process_index() == 0:
    print(f"outputs in {os.path.abspath(workdir)}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
