import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field, blocked
rounds = int(sys.argv[1]); n = int(sys.argv[2]); tiles = [int(t) for t in sys.argv[3:]]
d, T = 64, 3
kx, ky = jax.random.split(jax.random.key(0))
x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
tau = 0.05 * d
fns = []
for t in tiles:
  blocked.TILE_ENTRIES = 1 << t
  f = jax.jit(lambda x, y: drift_field(x, y, x, tau, T=T, algorithm="blocked"))
  jax.block_until_ready(f(x, y))  # trace with this tile size
  fns.append(f)
ts = interleaved_medians([lambda f=f: f(x, y) for f in fns], rounds)
print(n, {f"2^{t}": f"{s:.2f}s {1e9*s/n/n:.1f}ns" for t, s in zip(tiles, ts)}, flush=True)
