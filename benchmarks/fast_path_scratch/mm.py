import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
HI = jax.lax.Precision.HIGHEST
n = 4096
K = jax.random.uniform(jax.random.key(0), (1, n, n))
fs, names = [], []
for k in [2, 3, 64, 65, 66, 72, 80, 512, 513]:
  y = jnp.ones((1, n, k))
  f = jax.jit(lambda K, y: jnp.einsum("bnm,bmk->bnk", K, y, precision=HI))
  g = jax.jit(lambda K, y: jnp.matmul(K[0], y[0], precision=HI))
  fs += [lambda f=f, y=y: f(K, y), lambda g=g, y=y: g(K, y)]; names += [f"b{k}", f"{k}"]
ts = interleaved_medians(fs, 3)
print({nm: round(1e3 * t, 1) for nm, t in zip(names, ts)})
