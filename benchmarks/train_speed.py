"""Training steps per second of the toy and MNIST generator configs, per drift algorithm.

Times the jitted train chunk (``Trainer.make_chunk``: ``chunk`` steps in one
``lax.scan``, seeds vmapped) after a warm-up call, with the drift run by the plain log
domain (``algorithm=log``, the plain log-domain implementation) and by the default
(``auto``: the scaling domain). No evaluation or checkpointing is included; the MNIST case
uses synthetic 6-d class latents of the same shapes (10 classes x 64), since its real
latents need the autoencoder.

    python -m benchmarks.train_speed --out docs/benchmarks/train_speed_cpu.md
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import write_markdown_table
from experiments import sweep
from configs import mnist as mnist_config
from configs import toy as toy_config
from experiments import toy
from sdrift_jax import training as train_lib


def _mnist_like_problem():
  centers = jax.random.normal(jax.random.key(7), (10, 1, 6)) * 3.0

  def sample(key, n):
    return centers + jax.random.normal(key, (10, n, 6))

  eval_data = tuple(np.asarray(sample(jax.random.key(8), 100))[c] for c in range(10))
  return train_lib.Problem(dim=6, sample_positives=sample, eval_data=eval_data,
                           name="mnist-like", num_classes=10)


CASES = {
    "toy paper setup (MLP 2 x 256), Sinkhorn T=41, 1 seed":
        lambda: (toy_config.get_config(), None),
    "toy paper setup, Sinkhorn T=41, 5 seeds (per 5-seed step)":
        lambda: (toy_config.get_config("seeds=5"), None),
    "toy paper setup, one-sided, 1 seed":
        lambda: (toy_config.get_config("normalization=one_sided"), None),
    "toy reference model (resmlp 256 x 6), Sinkhorn T=41, 1 seed":
        lambda: (toy_config.get_config("reference"), None),
    "toy reference model, one-sided (the model's own cost), 1 seed":
        lambda: (toy_config.get_config("reference,normalization=one_sided"), None),
    "MNIST generator (10 classes x 64, d=6), Sinkhorn T=41":
        lambda: (mnist_config.get_config(), _mnist_like_problem()),
}


def steps_per_second(config, problem, algorithm, chunk, repeats):
  config = config.copy_and_resolve_references()
  config.drift.algorithm = algorithm
  config = sweep.setting_config(config, sweep.settings(config, toy.AXES)[0], toy.AXES) if (
      config.experiment == "toy") else config
  problem = problem or toy.make_problem(config)
  trainer = train_lib.Trainer(config, problem)
  tau = trainer.objective.tau_array()
  state = trainer.init()
  run = trainer.make_chunk(chunk)
  keys = trainer.seed_keys()
  state, _ = run(state, keys, tau)
  jax.block_until_ready(state)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, ms = run(state, keys, tau)
    jax.block_until_ready((state, ms))
    times.append(time.perf_counter() - t0)
  return chunk / float(np.median(times))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--chunk", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--cases", nargs="*", default=None, help="substrings of case names")
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  rows = []
  for name, make in CASES.items():
    if args.cases and not any(c in name for c in args.cases):
      continue
    config, problem = make()
    row = dict(case=name)
    for algorithm in ("log", "auto"):
      row[algorithm] = steps_per_second(config, problem, algorithm, args.chunk, args.repeats)
    rows.append(row)
    print(json.dumps(row), flush=True)
  write_markdown_table(
      "benchmarks.train_speed", argv,
      ["run", "steps/s, log domain (before)", "steps/s, default (after)", "speed-up"],
      [[r["case"], f"{r['log']:.1f}", f"{r['auto']:.1f}", f"{r['auto'] / r['log']:.2f}"]
       for r in rows], args.out)

if __name__ == "__main__":
  main()
