"""Measured ceilings of an accelerator for the dense drift, and the floors they imply.

The dense Sinkhorn drift at N = M reads its ``N x M`` kernel once per half-step (a
matrix-vector product), so its floor is the time to read that matrix ``T`` times per
problem at the device's read bandwidth. This script measures, with jitted XLA programs
on the default device (median of ``--repeats`` timed calls after a warm-up):

- ``copy``: ``a * 1.5`` over an ``N x N`` float32 array (bytes read + written / time);
- ``row_sum``: a row reduction of the same array (bytes read / time);
- ``K v`` and ``K^T u`` at HIGHEST precision (bytes of K / time);
- ``fused row pass``: ``sum(exp(-C / tau) * v, 1)`` with the costs recomputed from
  ``x, y`` at dimension ``--d-small`` (what XLA does when nothing is stored);
- a float32 matrix product ``N x d x N`` at HIGHEST precision and at DEFAULT.

It prints one JSON line per measurement and the floors for ``T`` half-steps of both
problems: ``2 T`` reads of the ``N x N`` kernel at the ``K v`` bandwidth.

    python -m benchmarks.gpu_floors --n 16384 --T 31
"""
from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp

from benchmarks.common import machine_description, time_call

_HI = jax.lax.Precision.HIGHEST


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=16384)
  parser.add_argument("--T", type=int, default=31)
  parser.add_argument("--d-small", type=int, default=6)
  parser.add_argument("--d-large", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args(argv)
  n = args.n
  median = functools.partial(time_call, repeats=args.repeats, min_total_s=0.0)
  print(json.dumps(dict(machine=machine_description())), flush=True)
  k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
  K = jax.random.uniform(k1, (n, n), jnp.float32)
  v = jax.random.uniform(k2, (n,), jnp.float32)
  mat_bytes = 4 * n * n
  out = {}

  def record(name, seconds, **extra):
    out[name] = seconds
    print(json.dumps(dict(name=name, ms=1e3 * seconds, **extra)), flush=True)

  t = median(jax.jit(lambda a: a * 1.5), K)
  record("copy", t, gb_per_s=2 * mat_bytes / t / 1e9)
  t = median(jax.jit(lambda a: jnp.sum(a, 1)), K)
  record("row_sum", t, gb_per_s=mat_bytes / t / 1e9)
  t = median(jax.jit(lambda a, b: jnp.matmul(a, b, precision=_HI)), K, v)
  record("K v", t, gb_per_s=mat_bytes / t / 1e9)
  t = median(jax.jit(lambda a, b: jnp.matmul(b, a, precision=_HI)), K, v)
  record("K^T u", t, gb_per_s=mat_bytes / t / 1e9)
  del K
  for d in (args.d_small, args.d_large):
    x = jax.random.normal(k3, (n, d), jnp.float32)
    y = jax.random.normal(k4, (n, d), jnp.float32)
    for name, prec in (("HIGHEST", _HI), ("DEFAULT", None)):
      t = median(jax.jit(lambda a, b: jnp.matmul(a, b.T, precision=prec)), x, y)
      record(f"matmul N x {d} x N {name}", t, tflop_per_s=2 * n * n * d / t / 1e12)
    tau = 0.05 * d

    def row_pass(x, y, v):
      c = (jnp.sum(x * x, 1)[:, None] + jnp.sum(y * y, 1)[None]
           - 2 * jnp.matmul(x, y.T, precision=_HI))
      return jnp.sum(jnp.exp(-c / tau) * v[None], 1)

    t = median(jax.jit(row_pass), x, y, v)
    record(f"fused row pass d={d}", t, ns_per_entry=1e9 * t / (n * n))
  half_steps = 2 * args.T  # both problems
  floor = half_steps * mat_bytes / (mat_bytes / out["K v"])
  print(json.dumps(dict(
      floor=f"{half_steps} reads of the {n} x {n} kernel at the K v bandwidth",
      ms=1e3 * floor,
      recompute_floor_d_small_ms=1e3 * half_steps * out[f"fused row pass d={args.d_small}"])),
      flush=True)


if __name__ == "__main__":
  main()
