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
"""
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
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def default_workdir(config_arg: str) -> str:
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if variant:
    name += "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", variant)
  return os.path.join("workdirs", name)


def _config_argument(argv) -> str:
  """The raw ``--config`` value, variant included (``configs/toy.py:smoke``)."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      return a.split("=", 1)[1]
    if a == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return config_flags.get_config_filename(FLAGS["config"])


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
  from sdrift_jax import runner, train
  config_arg = _config_argument(sys.argv)
  workdir = FLAGS.workdir or default_workdir(config_arg)
  try:
    runner.run(FLAGS.config, workdir)
  except train.NonFiniteLossError as e:
    logging.getLogger("sdrift_jax").error("%s", e)
    sys.exit(1)
  import jax
  if jax.process_index() == 0:
    print(f"outputs in {os.path.abspath(workdir)}")


if __name__ == "__main__":
  app.run(main)
