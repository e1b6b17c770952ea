import sys, time
import jax, jax.numpy as jnp
sys.path.insert(0, '.')
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_jax.ott_reference import ott_drift_field
HI = jax.lax.Precision.HIGHEST
for n in [int(a) for a in sys.argv[1:]]:
  d, T = 2, 41
  kx, ky = jax.random.split(jax.random.key(n))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d
  ours = jax.jit(lambda x, y: drift_field(x, y, x, tau, T=T))
  ours1 = jax.jit(lambda x, y: drift_field(x, y, x, tau, T=1))
  ott = jax.jit(lambda x, y: ott_drift_field(x, y, x, tau, T))
  K = jnp.exp(-jnp.sum((x[:, None] - y[None]) ** 2, -1) / tau)[None]
  v = jnp.ones((1, n))
  mv = jax.jit(lambda K, v: jnp.einsum("bnm,bm->bn", K, v, precision=HI))
  rmv = jax.jit(lambda K, v: jnp.einsum("bnm,bn->bm", K, v, precision=HI))
  mv0 = jax.jit(lambda K, v: jnp.einsum("bnm,bm->bn", K, v))
  rmv0 = jax.jit(lambda K, v: jnp.einsum("bnm,bn->bm", K, v))
  build = jax.jit(lambda x, y: jnp.exp(-jnp.sum((x[:, None] - y[None]) ** 2, -1) / tau))
  names = ["ours", "ours_T1", "ott", "matvec", "rmatvec", "matvec_def", "rmatvec_def", "build"]
  fns = [lambda: ours(x, y), lambda: ours1(x, y), lambda: ott(x, y), lambda: mv(K, v), lambda: rmv(K, v),
         lambda: mv0(K, v), lambda: rmv0(K, v), lambda: build(x, y)]
  ts = interleaved_medians(fns, 5)
  ent = n * n
  print(n, {k: f"{1e3*t:.2f}ms {1e9*t/ent:.2f}ns/e" for k, t in zip(names, ts)}, flush=True)
