import sys, time; sys.path.insert(0, '.'); sys.path.insert(0, '/tmp/sdrift_old_pkg')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_old import drift_field as old_field
rounds = int(sys.argv[1])
for n in map(int, sys.argv[2:]):
  d, T = 64, 3
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d
  new = jax.jit(lambda x, y: drift_field(x, y, x, tau, T=T, algorithm="blocked"))
  old = jax.jit(lambda x, y: old_field(x, y, x, tau, T=T, algorithm="blocked"))
  v, w = new(x, y), old(x, y)
  rel = float(jnp.linalg.norm(v - w) / jnp.linalg.norm(w))
  ts = interleaved_medians([lambda: new(x, y), lambda: old(x, y)], rounds)
  print(f"N={n} new {ts[0]:.2f}s old {ts[1]:.2f}s new/old {ts[0]/ts[1]:.2f} | ns/entry new {1e9*ts[0]/n/n:.2f} old {1e9*ts[1]/n/n:.2f} | rel {rel:.1e}", flush=True)
