"""Times the fused (Pallas) drift against the XLA paths and ott-jax, over tile shapes.

For each size and dimension: the full drift (positive and negative problems, y_neg = x,
tau = 0.05 d, inputs as in ``benchmarks.drift_vs_ott``) by ``algorithm='log'``,
``'scaling'``, ott-jax (traced under ``jax.default_matmul_precision('highest')``, so
that its costs are float32 like ours, not TF32) and the fused kernels for each tile
shape ``(rows, cols, warps)``. Every contender's output is compared with the log domain
first (relative difference, at tau and at a tiny tau of 1e-3 of the median cost for the
fused kernels); the contenders are then timed interleaved, medians over the rounds.
Meant for a GPU: on a CPU the kernels run in Pallas' interpreter.

    python -m benchmarks.fused_gpu --sizes 16384 --dims 2 6 16 --T 31
"""
from __future__ import annotations

import argparse
import functools
import json

import jax
import jax.numpy as jnp

from benchmarks.common import interleaved_medians, machine_description
from sdrift_jax import drift_field, fused
from sdrift_jax.ott_reference import ott_drift_field

TILES = ((32, 128, 4), (64, 128, 4), (64, 64, 4), (128, 64, 4), (64, 256, 8),
         (128, 128, 8), (32, 64, 2))


def _fused_drift(x, y, tau, T, tile):
  n = x.shape[0]
  la = jnp.full((n,), -jnp.log(n), jnp.float32)
  one = functools.partial(fused.barycentric_map, log_a=la, log_b=la, tau=tau, T=T,
                          cost="sqeuclidean", with_col_error=False, block_n=tile[0],
                          block_m=tile[1], num_warps=tile[2])
  return one(x, y, mask_diagonal=False)[0] - one(x, x, mask_diagonal=False)[0]


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[16384])
  parser.add_argument("--dims", type=int, nargs="+", default=[2, 6, 16])
  parser.add_argument("--T", type=int, default=31)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--tiles", default=None,
                      help="tile shapes rows,cols,warps separated by ';' (default: a sweep)")
  args = parser.parse_args(argv)
  tiles = TILES if args.tiles is None else tuple(
      tuple(int(v) for v in t.split(",")) for t in args.tiles.split(";"))
  print(json.dumps(dict(machine=machine_description())), flush=True)
  T = args.T
  for n in args.sizes:
    for d in args.dims:
      kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
      x = jax.random.normal(kx, (n, d), jnp.float32)
      y = jax.random.normal(ky, (n, d), jnp.float32) + 0.5
      tau = 0.05 * d
      names = ["log", "scaling", "ott"] + [f"fused {t[0]}x{t[1]} w{t[2]}" for t in tiles]
      log = jax.jit(lambda x, y, tau: drift_field(x, y, x, tau, T=T, algorithm="log"))
      scaling = jax.jit(lambda x, y, tau: drift_field(x, y, x, tau, T=T,
                                                      algorithm="scaling"))
      ott_jit = jax.jit(lambda x, y: ott_drift_field(x, y, x, tau, T))

      def ott(x, y, tau):  # the precision is part of the trace's context: every call
        del tau
        with jax.default_matmul_precision("highest"):
          return ott_jit(x, y)

      fns = [log, scaling, ott] + [
          jax.jit(functools.partial(_fused_drift, T=T, tile=t)) for t in tiles]
      ref = log(x, y, tau)
      tiny = 1e-3 * 2.0 * d
      ref_tiny = log(x, y, tiny)
      rows = {}
      for name, fn in zip(names, fns):
        try:
          out = fn(x, y, tau)
          rows[name] = dict(rel_vs_log=_rel(out, ref))
          if name.startswith("fused"):
            rows[name]["tiny_rel_vs_log"] = _rel(fn(x, y, tiny), ref_tiny)
        except Exception as e:  # pylint: disable=broad-except
          rows[name] = dict(error=f"{type(e).__name__}: {str(e)[:300]}")
      ok = [k for k in names if "error" not in rows[k]]
      times = interleaved_medians(
          [functools.partial(fns[names.index(k)], x, y, tau) for k in ok], args.repeats)
      for k, t in zip(ok, times):
        rows[k]["ms"] = 1e3 * t
      for k in names:
        print(json.dumps(dict(N=n, d=d, T=T, contender=k, **rows[k])), flush=True)
      best = min((k for k in ok if k.startswith("fused")), key=lambda k: rows[k]["ms"],
                 default=None)
      if best:
        print(json.dumps(dict(N=n, d=d, T=T, best=best, best_ms=rows[best]["ms"],
                              log_over_best=rows["log"]["ms"] / rows[best]["ms"],
                              ott_over_best=rows.get("ott", {}).get("ms", float("nan"))
                              / rows[best]["ms"])), flush=True)


if __name__ == "__main__":
  main()
