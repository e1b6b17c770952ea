"""Run by tests/training/test_mesh.py: one training process, or one of two localhost processes.

    python tests/scripts/multihost_script.py ROOT OUT single
    python tests/scripts/multihost_script.py ROOT OUT worker PROCESS_ID PORT

Workers join a 2-process job through ``jax.distributed.initialize`` (coordinator on
localhost, gloo CPU collectives, 2 CPU devices each: a 4-device mesh) and run
``training.train_generator`` (chunks of 2 steps, evaluation, orbax checkpoints, metrics) with
the classes sharded per group, then with the batch sharded globally, each in a workdir
they share, ``OUT/<mode>_<scope>``. Each process writes its final parameters to
``OUT/params_<name>_<scope>.npz`` and prints how many training rows it read (its share of
the data table, of 400).
"""
import sys

import jax
import numpy as np

root, out, mode = sys.argv[1:4]
if mode == "worker":
  pid, port = int(sys.argv[4]), sys.argv[5]
  jax.config.update("jax_num_cpu_devices", 2)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                             process_id=pid)
sys.path.insert(0, root)
from configs import latents as latents_config  # noqa: E402
from sdrift_jax import training as train  # noqa: E402

rng = np.random.default_rng(0)
per_class = [rng.normal(size=(100, 4)).astype(np.float32) + 3 * c for c in range(4)]
held = [rng.normal(size=(20, 4)).astype(np.float32) + 3 * c for c in range(4)]


def run(coupling):
  config = latents_config.get_config("smoke")
  config.train.update(steps=4, batch_size=16, log_every=2, eval_every=4, checkpoint_every=2)
  config.eval.num_samples = 20
  config.drift.T = 11
  config.drift.tau = 0.5
  config.parallel.devices = 0 if mode == "worker" else 1
  config.parallel.coupling = coupling
  problem = train.class_conditional_problem(per_class, held)
  summary = train.train_generator(config, f"{out}/{mode}_{coupling}", problem)
  return summary["state"], problem.table.rows_read


name = f"worker{jax.process_index()}" if mode == "worker" else "single"
for coupling in (("per_group", "global") if mode == "worker" else ("per_group",)):
  state, rows_read = run(coupling)
  leaves = [np.asarray(x.addressable_data(0)) for x in jax.tree_util.tree_leaves(state.params)]
  np.savez(f"{out}/params_{name}_{coupling}.npz", *leaves)
  print(f"{name} {coupling}: read {rows_read} rows")
print(f"{name}: {jax.process_count()} process(es), {jax.device_count()} device(s)")
if mode == "worker":
  jax.distributed.shutdown()
