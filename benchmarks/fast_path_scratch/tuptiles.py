"""Bare Sinkhorn loop (10 iterations) on an n x n kernel: two products on one K, against
one pass over K held as a tuple of separate row-tile buffers (static Python loop, no
dynamic slices), with and without an optimization_barrier that chains the tiles."""
import sys
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
def tup(Ks, v, chain):
  r = Ks[0].shape[0]
  def it(_, v):
    col = jnp.zeros_like(v)
    for t, Kt in enumerate(Ks):
      vv = v
      if chain:
        vv, col = jax.lax.optimization_barrier((v, col))
      u = a[t * r:(t + 1) * r] / jnp.matmul(Kt, vv, precision=HI)
      col = col + jnp.matmul(u, Kt, precision=HI)
    return b / col
  return jax.lax.fori_loop(0, 10, it, v)
v = jnp.ones((n,))
fns = [lambda: jax.jit(sep)(K, v)]
names = ["sep"]
for t in tiles:
  Ks = tuple(jnp.array(K[i:i + t]) for i in range(0, n, t))
  for chain in (False, True):
    f = jax.jit(lambda Ks, v, c=chain: tup(Ks, v, c))
    fns.append(lambda f=f, Ks=Ks: f(Ks, v)); names.append(f"tup{t}{'c' if chain else ''}")
ref = fns[0]()
for nm, f in zip(names[1:], fns[1:]):
  print(nm, float(jnp.max(jnp.abs(f() / ref - 1))))
ts = interleaved_medians(fns, 5)
print(n, " ".join(f"{nm}={1e3*t/10:.2f}" for nm, t in zip(names, ts)), "ms/iter", flush=True)
