import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
n, d = 4096, 512
x = jax.random.normal(jax.random.key(0), (n, d)); W = jax.random.uniform(jax.random.key(1), (n, n))
for p in [jax.lax.Precision.HIGHEST, jax.lax.Precision.DEFAULT]:
  f1 = jax.jit(lambda x: jnp.matmul(x, x.T, precision=p)); f2 = jax.jit(lambda W, x: jnp.matmul(W, x, precision=p))
  print(p, float(jnp.max(jnp.abs(f2(W, x) - jnp.matmul(W.astype(jnp.float64) if False else W, x, precision=jax.lax.Precision.HIGHEST)))))
fs = [jax.jit(lambda x, p=p: jnp.matmul(x, x.T, precision=p)) for p in [jax.lax.Precision.HIGHEST, jax.lax.Precision.DEFAULT]]
gs = [jax.jit(lambda W, x, p=p: jnp.matmul(W, x, precision=p)) for p in [jax.lax.Precision.HIGHEST, jax.lax.Precision.DEFAULT]]
ts = interleaved_medians([lambda: fs[0](x), lambda: fs[1](x), lambda: gs[0](W, x), lambda: gs[1](W, x)], 5)
print(["%.1f" % (1e3 * t) for t in ts], "xxT HI, DEF; Wx HI, DEF")
