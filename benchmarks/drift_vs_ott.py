"""Times ``drift_field`` (Sinkhorn) against ott-jax at equal half-iterations.

Both sides compute the full drift (positive and negative problems, N = M, y_neg = x)
from the same inputs; the output of each pair is compared before timing. The three
contenders are timed interleaved (one call of each per round, medians over the rounds),
so that load from other processes hits them alike; the load average is printed with the
table. At ``T = 1``
no Sinkhorn iteration runs, so the ott column is a row softmax of ott's cost matrix.
Our drift is timed twice: the default (``algorithm='auto'``: the scaling domain on a CPU,
the log domain on a GPU) and the plain log domain (``algorithm='log'``). A last check
runs the default at a tiny temperature (1e-3 of the median cost) and compares it with
the log domain there.
ott-jax's matmuls run at HIGHEST precision, as ours do: at its default precision a GPU
computes its costs in TF32 (relative differences of 1e-4 to 4e-3 against ours on an
H200, where both agree to 1e-6 at HIGHEST); ``--ott-precision default`` times that.
``--reuse-host-memory`` runs the whole process (both sides) with
:func:`sdrift_jax.host_memory.reuse_freed_memory`.

    python -m benchmarks.drift_vs_ott --out docs/benchmarks/drift_vs_ott_cpu.md
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

import jax
import jax.numpy as jnp

from benchmarks.common import interleaved_medians, machine_description
from sdrift_jax import drift_field, host_memory
from sdrift_jax.drift.ott_reference import ott_drift_field


def run(sizes, dims, Ts, repeats, ott_precision="highest"):
  rows = []
  for n, d, T in itertools.product(sizes, dims, Ts):
    kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
    x = jax.random.normal(kx, (n, d), jnp.float32)
    y = jax.random.normal(ky, (n, d), jnp.float32) + 0.5
    tau = 0.05 * d  # about 1/40 of the median squared distance (~2 d)
    ours = jax.jit(lambda x, y, tau: drift_field(x, y, x, tau, T=T))
    plain = jax.jit(lambda x, y, tau: drift_field(x, y, x, tau, T=T, algorithm="log"))
    ott_jit = jax.jit(lambda x, y: ott_drift_field(x, y, x, tau, T))

    def theirs(x, y):  # the precision belongs to the trace's context: set it every call
      with jax.default_matmul_precision(ott_precision):
        return ott_jit(x, y)

    v, w = ours(x, y, tau), theirs(x, y)
    rel = float(jnp.linalg.norm(v - w) / jnp.linalg.norm(w))
    t_ours, t_log, t_ott = interleaved_medians(
        [lambda: ours(x, y, tau), lambda: plain(x, y, tau), lambda: theirs(x, y)], repeats)
    # Tiny temperature: finite, and the same as the log domain.
    tiny = 1e-3 * 2.0 * d
    v_tiny, w_tiny = ours(x, y, tiny), plain(x, y, tiny)
    rel_tiny = float(jnp.linalg.norm(v_tiny - w_tiny) / jnp.linalg.norm(w_tiny))
    row = dict(N=n, d=d, T=T, ns_per_entry=1e9 * t_ours / (n * n), ours_ms=1e3 * t_ours, log_ms=1e3 * t_log, ott_ms=1e3 * t_ott,
               ratio=t_ours / t_ott, rel_diff=rel, tiny_rel_diff=rel_tiny,
               finite=bool(jnp.all(jnp.isfinite(v)) and jnp.all(jnp.isfinite(v_tiny))))
    rows.append(row)
    print(json.dumps(row), flush=True)
  return rows


def to_markdown(rows, command, loads):
  lines = [f"Machine: {machine_description()}", "", f"Command: `{command}`", "",
           "Load average (1 min) before / after: " + " / ".join(f"{l:.1f}" for l in loads), "",
           "| N = M | d | T | drift_field (ms) | ns / entry | log domain (ms) | ott-jax (ms) "
           "| ours / ott | rel. diff of V vs ott | tiny tau: finite, rel. diff vs log |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    lines.append(f"| {r['N']} | {r['d']} | {r['T']} | {r['ours_ms']:.2f} "
                 f"| {r['ns_per_entry']:.1f} | {r['log_ms']:.2f} "
                 f"| {r['ott_ms']:.2f} | {r['ratio']:.2f} | {r['rel_diff']:.1e} "
                 f"| {'yes' if r['finite'] else 'NO'}, {r['tiny_rel_diff']:.1e} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
  parser.add_argument("--dims", type=int, nargs="+", default=[2, 64, 512])
  parser.add_argument("--Ts", type=int, nargs="+", default=[1, 5, 31])
  parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
  parser.add_argument("--out", default=None, help="markdown file for the table")
  parser.add_argument("--ott-precision", default="highest", choices=["highest", "default"],
                      help="matmul precision of ott-jax's costs: 'highest' (float32, like "
                           "ours; default) or 'default' (TF32 on recent GPUs)")
  parser.add_argument("--reuse-host-memory", action="store_true",
                      help="glibc keeps freed memory for reuse (sdrift_jax.host_memory)")
  args = parser.parse_args(argv)
  if args.reuse_host_memory:
    host_memory.reuse_freed_memory()
  loads = [os.getloadavg()[0]]
  rows = run(args.sizes, args.dims, args.Ts, args.repeats, args.ott_precision)
  loads.append(os.getloadavg()[0])
  tolerance = 1e-5 if args.ott_precision == "highest" else 1e-2
  bad = [r for r in rows if r["rel_diff"] > tolerance or not r["finite"]]
  table = to_markdown(rows, "python -m benchmarks.drift_vs_ott " + " ".join(argv or sys.argv[1:]),
                      loads)
  print(table)
  if args.out:
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
      f.write(table)
  if bad:
    raise SystemExit(f"outputs disagree with ott-jax: {bad}")


if __name__ == "__main__":
  main()
