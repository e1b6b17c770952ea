"""Blocked drift with tiles cut along y in 2^A-column blocks (blocked.MAX_TILE_COLS and
SPLIT_COLS_ABOVE both 2^A) against whole-row tiles
(2^B >= N), interleaved in one process, medians; d = 64, T = 3, both problems.

    python benchmarks/fast_path_scratch/cols.py ROUNDS A B N ...   (e.g. 5 12 20 8192 16384)
"""
import sys; sys.path.insert(0, '.')
import jax
from benchmarks.common import interleaved_medians
from sdrift_jax import blocked, drift_field
rounds, a, b = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
default = blocked.MAX_TILE_COLS, blocked.SPLIT_COLS_ABOVE
for n in (int(v) for v in sys.argv[4:]):
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, 64)); y = jax.random.normal(ky, (n, 64)) + 0.5
  fns, outs = [], []
  for c in (a, b):
    blocked.MAX_TILE_COLS = blocked.SPLIT_COLS_ABOVE = 1 << c
    jax.clear_caches()  # drift_field's own jit cache does not see the module constant
    f = jax.jit(lambda x, y: drift_field(x, y, x, 3.2, T=3, algorithm="blocked"))
    outs.append(jax.block_until_ready(f(x, y)))  # traced with this setting
    fns.append(f)
  blocked.MAX_TILE_COLS, blocked.SPLIT_COLS_ABOVE = default
  diff = float(abs(outs[0] - outs[1]).max() / abs(outs[1]).max())
  ta, tb = interleaved_medians([lambda f=f: f(x, y) for f in fns], rounds)
  print(f"N=M={n}: 2^{a} cols {ta:.2f} s ({1e9*ta/n/n:.2f} ns/entry), 2^{b} cols {tb:.2f} s "
        f"({1e9*tb/n/n:.2f}), ratio {ta/tb:.2f}, max diff / max |V| {diff:.1e}", flush=True)
