"""Steps per second of the sharded train step on 1, 2, 4, 8 devices.

On a CPU the devices are fake (``--fake_cpu_devices 8``): they share the host's cores, so
the numbers show the overhead of partitioning and collectives, not a speed-up. On a GPU
or TPU host, run it without that flag. The problem: the class-conditional latent
generator of configs/latents.py (8 classes, D = 64 here, 64 per class per step, T = 61),
drift coupled per group (each device owns whole classes) or globally. The training data
table is sharded like the batch (sdrift_jax.training.PositiveTable). Reported: the median
over ``--repeats`` timings of ``--steps`` steps, each blocked on.

    python -m benchmarks.sharded_throughput --fake_cpu_devices 8 --out docs/benchmarks/sharded_cpu.md
"""
from __future__ import annotations

import argparse
import time


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--fake_cpu_devices", type=int, default=0)
  parser.add_argument("--dim", type=int, default=64)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3, help="report the median of these")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  import jax
  if args.fake_cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.fake_cpu_devices)
  import numpy as np
  from benchmarks.common import write_markdown_table
  from configs import latents as latents_config
  from experiments import latents as latents_exp
  from experiments import sweep
  from sdrift_jax import training as train

  rng = np.random.default_rng(0)
  per_class = [rng.normal(size=(500, args.dim)).astype(np.float32) + c for c in range(8)]
  held = [rng.normal(size=(50, args.dim)).astype(np.float32) + c for c in range(8)]
  problem = train.class_conditional_problem(per_class, held)
  rows = []
  for coupling in ("per_group", "global"):
    for n in (1, 2, 4, 8):
      if n > jax.device_count():
        continue
      config = latents_config.get_config()
      config.model.update(noise_dim=args.dim, embed_dim=16, hidden=256)
      config.train.batch_size = args.batch
      config.parallel.update(devices=n, coupling=coupling)
      config = sweep.setting_config(config, {"tau": config.sweep.taus[0], "method": "sinkhorn"},
                                    latents_exp.AXES)
      trainer = train.Trainer(config, problem)
      tau = trainer.objective.tau_array()
      state = trainer.init()
      chunk = trainer.make_chunk(1)
      keys = trainer.seed_keys()
      state, _ = chunk(state, keys, tau)
      jax.block_until_ready(state)
      rates = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):  # blocked per step
          state, _ = chunk(state, keys, tau)
          jax.block_until_ready(state)
        rates.append(args.steps / (time.perf_counter() - t0))
      rate = float(np.median(rates))
      rows.append((coupling, n, rate))
      print(f"{coupling} {n} devices: {rate:.2f} steps/s", flush=True)
  write_markdown_table("benchmarks.sharded_throughput", argv, ["coupling", "devices", "steps/s"],
                       [[c, str(n), f"{r:.2f}"] for c, n, r in rows], args.out)

if __name__ == "__main__":
  main()
