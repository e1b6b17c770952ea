"""Training-step time against coupling error, in the real training loop: the MNIST
reference recipe (``configs/mnist.py``: 6-d autoencoder latents, 64 generated and 64
positives per class, CFG, AdamW), Sinkhorn, per kernel and relative temperature.

Contenders (``config.drift``): ``fixed`` (T = 41 from zero potentials, today's), ``tol``
(at most ``--T-max`` half-steps, stopped at ``--tol``), ``tol+warm`` (started from the
previous step's potentials, carried in the train state), ``tol+anneal``
(``anneal_start = 1 / tau``, decay 0.8: from the mean cost down to tau) and
``tol+warm+anneal``. Each trains its own generator from the same initialization; their
chunks of ``--chunk`` steps run interleaved, after ``--train-first`` untimed steps each
(at initialization the samples are nearly one point and every coupling converges in a few
half-steps), and the step time is the median over ``--rounds`` chunks. Reported: the step time in ms and
relative to ``fixed``, the median half-steps of the timed steps, and the largest column
errors of the positive and negative (self-) couplings at the end (generated samples against held-out latents,
64 per class, the contender's own controls from a cold start, as the evaluation
measures it).

    python -m benchmarks.convergence_training --cache /tmp/mnistcache
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import config_lib
from experiments import mnist
from experiments import sweep
from sdrift_jax import training


CONTENDERS = {
    "fixed": {},
    "tol": {"tol": True},
    "tol+warm": {"tol": True, "warm_start": True},
    "tol+anneal": {"tol": True, "anneal": True},
    "tol+warm+anneal": {"tol": True, "warm_start": True, "anneal": True},
}


def _config(base, kernel, tau, contender, args):
  c = sweep.setting_config(base, {"kernel": kernel, "tau": tau, "method": "sinkhorn"},
                           mnist.AXES)
  flags = CONTENDERS[contender]
  if flags:
    c.drift.T = args.T_max
    c.drift.tol = args.tol
    c.drift.warm_start = bool(flags.get("warm_start"))
    if flags.get("anneal"):
      c.drift.anneal_start = 1.0 / tau
  return c


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cache", required=True, help="the main job's helper-network cache")
  ap.add_argument("--kernels", default="gaussian,laplacian")
  ap.add_argument("--taus", default="0.005,0.05")
  ap.add_argument("--contenders", default=",".join(CONTENDERS))
  ap.add_argument("--T-max", type=int, default=4001)
  ap.add_argument("--tol", type=float, default=1e-3)
  ap.add_argument("--chunk", type=int, default=50)
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--train-first", type=int, default=1000,
                  help="untimed steps each contender trains first (its couplings are easy "
                       "while the generator's samples are still collapsed)")
  args = ap.parse_args()
  base = config_lib.load("configs/mnist.py:methods=(sinkhorn,)")
  base.mnist.cache_dir = args.cache
  problem = mnist.prepare(base, "/tmp/unused")["problem"]
  held_out = jnp.asarray(np.stack([s[: base.train.batch_size] for s in problem.eval_sets()]))
  names = [c for c in args.contenders.split(",") if c]
  print(f"# MNIST reference recipe, {jax.devices()[0].platform}; chunks of {args.chunk} "
        f"steps, median of {args.rounds} after one compiling chunk; tol {args.tol}, "
        f"T_max {args.T_max}\n")
  print("| kernel | tau | contender | ms / step | step / fixed | half-steps (median) | "
        "column error pos / neg at the end |")
  print("|---|---:|---|---:|---:|---:|---:|")
  for kernel in args.kernels.split(","):
    for tau in (float(t) for t in args.taus.split(",")):
      runs = {}
      for name in names:
        trainer = training.Trainer(_config(base, kernel, tau, name, args), problem)
        state, chunk = trainer.init(), trainer.make_chunk(args.chunk)
        keys, t = trainer.seed_keys(), trainer.objective.tau_array()
        for _ in range(max(1, args.train_first // args.chunk)):  # compiles, then trains
          state, _ = jax.block_until_ready(chunk(state, keys, t))
        runs[name] = dict(trainer=trainer, state=state, chunk=chunk, keys=keys, tau=t,
                          times=[], half=[])
      for _ in range(args.rounds):
        for name in names:  # interleaved
          r = runs[name]
          t0 = time.perf_counter()
          r["state"], ms = jax.block_until_ready(r["chunk"](r["state"], r["keys"], r["tau"]))
          r["times"].append((time.perf_counter() - t0) / args.chunk)
          if "half_steps" in ms:
            r["half"].extend(np.asarray(ms["half_steps"]).ravel().tolist())
      base_t = statistics.median(runs[names[0]]["times"])
      for name in names:
        r = runs[name]
        trainer = r["trainer"]
        eps = jax.random.normal(jax.random.key(99), (10, base.train.batch_size,
                                                     trainer.noise_dim))
        samples = trainer.make_sampler()(trainer.eval_params(r["state"]), eps)
        err = np.asarray(trainer.make_diagnostics()(samples, held_out, r["tau"]))[0]
        ms_step = statistics.median(r["times"])
        half = statistics.median(r["half"]) if r["half"] else 41
        print(f"| {kernel} | {tau:g} | {name} | {1e3 * ms_step:.2f} | "
              f"{ms_step / base_t:.2f} | {half:.0f} | {err[0]:.3g} / {err[1]:.3g} |", flush=True)


if __name__ == "__main__":
  main()
