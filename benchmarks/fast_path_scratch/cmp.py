import sys; sys.path.insert(0, '.'); sys.path.insert(0, '/tmp/sdrift_old_pkg')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_old import drift_field as old_field
from sdrift_jax.ott_reference import ott_drift_field
rounds = int(sys.argv[1])
for spec in sys.argv[2:]:
  n, d, T = map(int, spec.split(','))
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d
  new = jax.jit(lambda x, y: drift_field(x, y, x, tau, T=T))
  old = jax.jit(lambda x, y: old_field(x, y, x, tau, T=T))
  ott = jax.jit(lambda x, y: ott_drift_field(x, y, x, tau, T))
  w = ott(x, y)
  rel = lambda v: float(jnp.linalg.norm(v - w) / jnp.linalg.norm(w))
  ts = interleaved_medians([lambda: new(x, y), lambda: old(x, y), lambda: ott(x, y)], rounds)
  print(f"N={n} d={d} T={T} new {1e3*ts[0]:.1f} old {1e3*ts[1]:.1f} ott {1e3*ts[2]:.1f} ms | new/ott {ts[0]/ts[2]:.2f} old/ott {ts[1]/ts[2]:.2f} | rel new {rel(new(x,y)):.1e} old {rel(old(x,y)):.1e} | ns/entry new {1e9*ts[0]/n/n:.1f}", flush=True)
