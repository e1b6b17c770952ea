"""Cost of Sinkhorn with CFG column weights computed inside ``jit``.

Classifier-free guidance gives the unconditional negatives a column weight that depends
on ``omega``, a traced value in a train step. ``drift_field`` with traced
``weights_neg`` cannot prove them positive and falls back to the log domain under
``algorithm='auto'``; ``feature_drift`` floors the weights (``max(w, 1e-6)``) so they are
positive by construction and keeps the scaling domain. This benchmark times, per size,
inside one jitted call with a traced ``omega``:

* ``feature_drift(..., algorithm='scaling')`` (what 'auto' runs) and ``algorithm='log'``
  (the fallback it avoids), Sinkhorn split form, T = 41, 3 temperatures;
* ``drift_field`` with the same weights traced (``'auto'`` -> log domain) and passed as
  concrete numbers (``'auto'`` -> scaling), single temperature.

Contenders are interleaved in rounds; medians of the rounds. The benchmark fails if the
two paths differ by more than 1e-5 relative.

    python -m benchmarks.guided_weights --out docs/benchmarks/guided_weights_cpu.md
"""
from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import interleaved_medians, write_markdown_table
from sdrift_jax import drift_field, feature_drift


def run(sizes, dim, rounds):
  rows = []
  for n in sizes:
    u = max(n // 4, 1)
    k = jax.random.split(jax.random.key(n), 3)
    x = jax.random.normal(k[0], (n, dim))
    y = jax.random.normal(k[1], (n, dim)) + 0.5
    yu = jax.random.normal(k[2], (u, dim))
    omega = jnp.float32(2.5)

    def feat(algorithm):
      return jax.jit(lambda o: feature_drift(x, y, yu, tau=(0.02, 0.05, 0.2), omega=o,
                                             T=41, algorithm=algorithm).drift)

    w = (n - 1) * (2.5 - 1) / u
    weights = np.concatenate([np.ones(n), np.full(u, w)]).astype(np.float32)
    y_neg = jnp.concatenate([x, yu])
    tau = 0.05 * dim
    field_traced = jax.jit(lambda b: drift_field(x, y, y_neg, tau, T=41, weights_neg=b))
    field_concrete = jax.jit(lambda: drift_field(x, y, y_neg, tau, T=41,
                                                 weights_neg=weights))
    fast, slow = feat("scaling"), feat("log")
    a, b = fast(omega), slow(omega)
    rel = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
    c, d = field_concrete(), field_traced(jnp.asarray(weights))
    rel2 = float(jnp.max(jnp.abs(c - d)) / jnp.max(jnp.abs(d)))
    if max(rel, rel2) > 1e-5:
      raise SystemExit(f"paths disagree at n={n}: feature {rel:.2e}, drift_field {rel2:.2e}")
    t = interleaved_medians([lambda: fast(omega), lambda: slow(omega), field_concrete,
                             lambda: field_traced(jnp.asarray(weights))], rounds)
    rows.append([str(n), str(u), f"{1e3 * t[0]:.2f}", f"{1e3 * t[1]:.2f}",
                 f"{t[1] / t[0]:.2f}", f"{1e3 * t[2]:.2f}", f"{1e3 * t[3]:.2f}",
                 f"{t[3] / t[2]:.2f}", f"{max(rel, rel2):.1e}"])
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 2048])
  p.add_argument("--dim", type=int, default=6)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--out", default=None)
  args = p.parse_args(argv)
  rows = run(args.sizes, args.dim, args.rounds)
  header = ["N = M+", "U", "feature scaling (ms)", "feature log (ms)", "log / scaling",
            "drift_field concrete w (ms)", "drift_field traced w (ms)", "traced / concrete",
            "max rel diff"]
  write_markdown_table("benchmarks.guided_weights", argv if argv is not None else sys.argv[1:],
                       header, rows, args.out)


if __name__ == "__main__":
  main()
