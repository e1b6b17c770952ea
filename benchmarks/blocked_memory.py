"""Wall time and peak memory of the drift at sizes where the dense matrices do not fit.

Runs ``drift_field`` with the default algorithm (``auto``; prints which one it picked)
on N = M random points, reports the wall time of the jitted call (after a compile call)
and the process's peak resident memory (CPU) or the device's peak bytes in use (GPU).
With ``--check-rows K`` it also recomputes the drift of K random rows against the full
clouds in float64 NumPy, blockwise, prints the relative difference and exits nonzero
when it exceeds 1e-5. The 1-minute load average before and after is printed with the
time (other processes on the machine inflate it).

    python -m benchmarks.blocked_memory --n 65536 --d 64 --T 3 --once
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import machine_description
from sdrift_jax import DriftSpec, drift_field


def _numpy_rows(x, y, rows, tau, T, block=2048):
  """float64 drift of x[rows] (log domain, costs recomputed per block: low memory)."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  n, m = len(x), len(y)
  la, lb = np.full(n, -np.log(n)), np.full(m, -np.log(m))

  def logits(xb):
    return -(np.sum(xb**2, 1)[:, None] + np.sum(y**2, 1)[None] - 2 * xb @ y.T) / tau

  def lse(z, axis):
    mx = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(mx, axis) + np.log(np.sum(np.exp(z - mx), axis=axis))

  g = lb.copy()
  for _ in range(T // 2):
    f = np.concatenate([la[i:i + block] - lse(logits(x[i:i + block]) + g, 1)
                        for i in range(0, n, block)])
    col = np.full(m, -np.inf)
    for i in range(0, n, block):
      col = np.logaddexp(col, lse(logits(x[i:i + block]) + f[i:i + block, None], 0))
    g = lb - col
  L = logits(x[rows]) + g
  P = np.exp(L - L.max(1, keepdims=True))
  return (P / P.sum(1, keepdims=True)) @ y


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=65536)
  parser.add_argument("--d", type=int, default=64)
  parser.add_argument("--T", type=int, default=3)
  parser.add_argument("--algorithm", default="auto")
  parser.add_argument("--check-rows", type=int, default=0)
  parser.add_argument("--once", action="store_true",
                      help="one call only: its time includes compilation")
  args = parser.parse_args(argv)
  n, d, T = args.n, args.d, args.T
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, d), jnp.float32)
  y = jax.random.normal(ky, (n, d), jnp.float32) + 0.5
  tau = 0.05 * d
  algorithm = DriftSpec(T=T, algorithm=args.algorithm).resolve_algorithm(n, n, 4)
  load_before = os.getloadavg()[0]
  fn = jax.jit(lambda x, y: drift_field(x, y, x, tau, T=T, algorithm=args.algorithm))
  t0 = time.perf_counter()
  v = jax.block_until_ready(fn(x, y))
  first = time.perf_counter() - t0
  wall = first
  if not args.once:
    t0 = time.perf_counter()
    v = jax.block_until_ready(fn(x, y))
    wall = time.perf_counter() - t0
  dev = jax.devices()[0]
  stats = dev.memory_stats() if dev.platform != "cpu" else None
  peak = (stats or {}).get("peak_bytes_in_use") or resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss * 1024
  row = dict(N=n, d=d, T=T, algorithm=algorithm, seconds=wall,
             ns_per_entry=1e9 * wall / (n * n), load_before_after=(load_before, os.getloadavg()[0]),
             first_call_seconds=first, peak_gib=peak / 2**30,
             dense_matrix_gib=n * n * 4 / 2**30, finite=bool(jnp.all(jnp.isfinite(v))),
             machine=machine_description())
  if args.check_rows:
    rows = np.random.default_rng(0).choice(n, args.check_rows, replace=False)
    xs, ys = np.asarray(x), np.asarray(y)
    expected = _numpy_rows(xs, ys, rows, tau, T) - _numpy_rows(xs, xs, rows, tau, T)
    got = np.asarray(v)[rows]
    row["check_rows_rel_diff"] = float(np.linalg.norm(got - expected) / np.linalg.norm(expected))
  print(json.dumps(row), flush=True)
  if row.get("check_rows_rel_diff", 0.0) > 1e-5 or not row["finite"]:
    raise SystemExit("blocked drift differs from float64 NumPy by more than 1e-5")


if __name__ == "__main__":
  main()
