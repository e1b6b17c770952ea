"""Marginal error against time per drift call: today's fixed T against a tolerance,
warm starts and annealing, over a sequence of calls that mimics training.

Each of ``--steps`` calls couples generated points to positives. Generated rows are
either new samples every call from a distribution that drifts slowly (``fresh``: new
noise per training step, today's trainers) or the same points moved slightly (``moved``:
each shrinks by 1 % per call toward the origin, as a fixed noise batch would move under
training); positives are new draws from the data (``fresh``) or the same every call
(``persistent``, as a memory bank coupled whole would be). Contenders, interleaved in one process:

* ``fixed``: ``T`` half-steps from the reference kernel (today);
* ``tol``: at most ``T_max`` half-steps, stopped at ``--tol``;
* ``tol+warm``: the same, started from the previous call's ``.state``;
* ``tol+anneal`` and ``tol+warm+anneal``: with ``anneal=(1 / tau_rel, 0.8)`` (from
  the mean cost down to tau).

Reported per contender: the median wall time of a call (all but the first two calls),
the median half-steps, and the largest column error (positive and negative couplings).
Run: ``python -m benchmarks.convergence`` (defaults: the settings of docs/performance.md).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from sdrift_jax import drift_field_with_info
from sdrift_jax.drift.warm import DriftState


def _data(kind, rng, n):
  if kind == "toy2d":  # eight Gaussians on a circle
    k = rng.integers(0, 8, n)
    centers = np.stack([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)], 1) * 2.0
    return (centers + 0.1 * rng.normal(size=(n, 2))).astype(np.float32)
  d = 6  # a 6-d "latent" mixture of ten classes
  k = rng.integers(0, 10, n)
  centers = np.random.default_rng(123).normal(size=(10, d)) * 2.0
  return (centers[k] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def run(kind, tau_rel, cost, rows_mode, support, T, T_max, tol, steps, move, n, seed=0):
  rng = np.random.default_rng(seed)
  data = _data(kind, rng, 20000)
  persistent = data[rng.choice(len(data), n, replace=False)]
  spread = float(np.std(data))
  anneal = (1.0 / tau_rel, 0.8)
  common = dict(relative_tau=True, cost=cost, algorithm="scaling")
  fns = {
      "fixed": jax.jit(lambda x, y, s: drift_field_with_info(x, y, None, tau_rel, T=T,
                                                             **common)),
      "tol": jax.jit(lambda x, y, s: drift_field_with_info(x, y, None, tau_rel, T=T_max,
                                                           tol=tol, **common)),
      "tol+warm": jax.jit(lambda x, y, s: drift_field_with_info(
          x, y, None, tau_rel, T=T_max, tol=tol, init=s, **common)),
      "tol+anneal": jax.jit(lambda x, y, s: drift_field_with_info(
          x, y, None, tau_rel, T=T_max, tol=tol, anneal=anneal, **common)),
      "tol+warm+anneal": jax.jit(lambda x, y, s: drift_field_with_info(
          x, y, None, tau_rel, T=T_max, tol=tol, init=s, anneal=anneal, **common)),
  }
  d = data.shape[1]
  states = {k: DriftState.cold((n, d)) for k in fns}
  rows = {k: ([], [], []) for k in fns}
  x0 = 0.7 * data[rng.choice(len(data), n)] + 0.3 * rng.normal(size=(n, d))
  for step in range(steps):
    # Generated points: data-like but displaced and too narrow, moving toward the data.
    frac = step / max(steps - 1, 1)
    if rows_mode == "fresh":
      x = (0.7 * data[rng.choice(len(data), n)] + 0.3 * rng.normal(size=(n, d))
           + move * spread * (1 - frac)).astype(np.float32)
    else:
      x = (x0 * (1 - 0.01 * step)).astype(np.float32)
    y = persistent if support == "persistent" else data[rng.choice(len(data), n)]
    for name in fns:  # interleaved
      start = time.perf_counter()
      info = fns[name](x, y, states[name])
      info.drift.block_until_ready()
      elapsed = time.perf_counter() - start
      states[name] = info.state
      rows[name][0].append(elapsed)
      rows[name][1].append(int(info.half_steps))
      rows[name][2].append(max(float(info.marginal_error_pos), float(info.marginal_error_neg)))
  out = {}
  for name, (ts, hs, es) in rows.items():
    out[name] = (1e3 * float(np.median(ts[2:])), float(np.median(hs[2:])), float(max(es[2:])))
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=256)
  p.add_argument("--steps", type=int, default=12)
  p.add_argument("--tol", type=float, default=1e-3)
  p.add_argument("--T_max", type=int, default=4001)
  p.add_argument("--move", type=float, default=0.05)
  args = p.parse_args()
  settings = [("toy2d", 0.01, "sqeuclidean", "fresh", "fresh", 201),
              ("toy2d", 0.01, "sqeuclidean", "moved", "persistent", 201),
              ("latent6d", 0.05, "sqeuclidean", "fresh", "fresh", 41),
              ("latent6d", 0.05, "sqeuclidean", "moved", "persistent", 41),
              ("latent6d", 0.005, "sqeuclidean", "fresh", "fresh", 41),
              ("latent6d", 0.005, "sqeuclidean", "fresh", "persistent", 41),
              ("latent6d", 0.005, "sqeuclidean", "moved", "persistent", 41),
              ("latent6d", 0.005, "euclidean", "moved", "persistent", 41)]
  print(f"# jax {jax.__version__}, {jax.devices()[0].platform}, N = M = {args.n}, "
        f"tol {args.tol}, T_max {args.T_max}, {args.steps} calls, scaling engine")
  print("| data | tau (rel.) | cost | generated | positives | contender | ms / call | "
        "half-steps | max column error |")
  print("|---|---|---|---|---|---|---:|---:|---:|")
  for kind, tau, cost, rows_mode, support, T in settings:
    res = run(kind, tau, cost, rows_mode, support, T, args.T_max, args.tol, args.steps,
              args.move, args.n)
    for name, (ms, hs, err) in res.items():
      label = f"fixed T={T}" if name == "fixed" else name
      print(f"| {kind} | {tau} | {cost} | {rows_mode} | {support} | {label} | {ms:.1f} | "
            f"{hs:.0f} | {err:.2g} |", flush=True)


if __name__ == "__main__":
  main()
