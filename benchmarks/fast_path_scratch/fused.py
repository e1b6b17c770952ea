import sys, time
import jax, jax.numpy as jnp
sys.path.insert(0, '.')
from benchmarks.common import interleaved_medians
HI = jax.lax.Precision.HIGHEST
n = int(sys.argv[1]); tiles = [int(a) for a in sys.argv[2:]]
K = jax.random.uniform(jax.random.key(0), (n, n))
a = jnp.full((n,), 1.0 / n); b = a
def sep(K, v):
  def it(_, v):
    u = a / jnp.matmul(K, v, precision=HI)
    return b / jnp.matmul(u, K, precision=HI)
  return jax.lax.fori_loop(0, 10, it, v)
def fused(K, v, tile):
  Kt = K.reshape(n // tile, tile, n)
  at = a.reshape(n // tile, tile)
  def it(_, v):
    def body(i, acc):
      Kb = Kt[i]
      u = at[i] / jnp.matmul(Kb, v, precision=HI)
      return acc + jnp.matmul(u, Kb, precision=HI)
    s = jax.lax.fori_loop(0, n // tile, body, jnp.zeros_like(v))
    return b / s
  return jax.lax.fori_loop(0, 10, it, v)
def fused_scan(K, v, tile):
  Kt = K.reshape(n // tile, tile, n)
  at = a.reshape(n // tile, tile)
  def it(_, v):
    def body(acc, xs):
      Kb, ab = xs
      u = ab / jnp.matmul(Kb, v, precision=HI)
      return acc + jnp.matmul(u, Kb, precision=HI), None
    s, _ = jax.lax.scan(body, jnp.zeros_like(v), (Kt, at))
    return b / s
  return jax.lax.fori_loop(0, 10, it, v)
v = jnp.ones((n,))
fns = [jax.jit(sep)] + [jax.jit(lambda K, v, t=t: fused(K, v, t)) for t in tiles] + [jax.jit(lambda K, v, t=t: fused_scan(K, v, t)) for t in tiles]
ref = fns[0](K, v)
for f in fns[1:]:
  print(float(jnp.max(jnp.abs(f(K, v) / ref - 1))))
ts = interleaved_medians([lambda f=f: f(K, v) for f in fns], 5)
print(n, [f"{1e3*t/10:.2f}" for t in ts], "ms/iter: sep, fused(tiles), scan(tiles)", tiles)
