"""Cost of ``check_finite`` (the NaN/inf refusal) in eager calls of the drift.

Outside ``jax.jit``, ``drift_field`` and ``feature_drift`` check their point clouds by
default: one fused reduction over all inputs and one host sync. This benchmark times
eager calls with ``check_finite=True`` and ``False``, interleaved in rounds (median of
the rounds), and the check alone, at several sizes. Inside ``jit`` the check does not run
(the values are traced), so jitted training steps pay nothing.

    python -m benchmarks.check_finite --out docs/benchmarks/check_finite_cpu.md
"""
from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from benchmarks.common import interleaved_medians, write_markdown_table
from sdrift_jax import drift_field, feature_drift, validation


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="64x2,256x2,1024x2,1024x64,4096x64")
  parser.add_argument("--rounds", type=int, default=30)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  rows = []
  for size in args.sizes.split(","):
    n, d = map(int, size.split("x"))
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(n, d)).astype(np.float32))
    y = jax.device_put(rng.normal(size=(n, d)).astype(np.float32) + 1)
    fns = [lambda: drift_field(x, y, None, 0.1, 41, check_finite=False),
           lambda: drift_field(x, y, None, 0.1, 41, check_finite=True),
           lambda: feature_drift(x, y, tau=0.1, check_finite=False).drift,
           lambda: feature_drift(x, y, tau=0.1, check_finite=True).drift,
           lambda: validation.check_finite(True, x=x, y_pos=y) or x]
    off, on, f_off, f_on, alone = interleaved_medians(fns, args.rounds)
    rows.append([f"{n} x {d}", f"{off * 1e3:.3f}", f"{on * 1e3:.3f}",
                 f"{100 * (on - off) / off:+.1f}%", f"{f_off * 1e3:.3f}", f"{f_on * 1e3:.3f}",
                 f"{100 * (f_on - f_off) / f_off:+.1f}%", f"{alone * 1e6:.0f}"])
  return write_markdown_table(
      "benchmarks.check_finite", argv if argv is not None else sys.argv[1:],
      ["N x d (x, y_pos)", "drift_field off (ms)", "on (ms)", "cost",
       "feature_drift off (ms)", "on (ms)", "cost", "check alone (us)"], rows, args.out)


if __name__ == "__main__":
  main()
