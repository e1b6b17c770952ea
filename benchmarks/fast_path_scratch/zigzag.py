"""Bare loop (10 iterations): two products on one K, against K as a tuple of H row
blocks with the row pass in block order and the column pass in reverse order (zig-zag,
so the blocks read last stay in cache), and against the one-pass tuple (both products
per block)."""
import sys
import jax, jax.numpy as jnp
sys.path.insert(0, '.')
from benchmarks.common import interleaved_medians
HI = jax.lax.Precision.HIGHEST
n = int(sys.argv[1]); hs = [int(a) for a in sys.argv[2:]]
K = jax.random.uniform(jax.random.key(0), (n, n))
a = jnp.full((n,), 1.0 / n); b = a
def sep(K, v):
  def it(_, v):
    u = a / jnp.matmul(K, v, precision=HI)
    h = 8; Kb = K.reshape(h, n // h, n)
    return b / jnp.einsum("hnm,hn->hm", Kb, u.reshape(h, n // h), precision=HI).sum(0)
  return jax.lax.fori_loop(0, 10, it, v)
def zig(Ks, v):
  r = Ks[0].shape[0]
  def it(_, v):
    us = [a[j * r:(j + 1) * r] / jnp.matmul(Kj, v, precision=HI) for j, Kj in enumerate(Ks)]
    col = None
    for j in reversed(range(len(Ks))):
      c = jnp.matmul(us[j], Ks[j], precision=HI)
      col = c if col is None else col + c
    return b / col
  return jax.lax.fori_loop(0, 10, it, v)
v = jnp.ones((n,))
fns = [lambda: jax.jit(sep)(K, v)]; names = ["sep"]
for h in hs:
  Ks = tuple(jnp.array(K[i:i + n // h]) for i in range(0, n, n // h))
  f = jax.jit(zig)
  fns.append(lambda f=f, Ks=Ks: f(Ks, v)); names.append(f"zig{h}")
ref = fns[0]()
for nm, f in zip(names[1:], fns[1:]):
  print(nm, float(jnp.max(jnp.abs(f() / ref - 1))))
ts = interleaved_medians(fns, 7)
print(n, " ".join(f"{nm}={1e3*t/10:.2f}" for nm, t in zip(names, ts)), "ms/iter", flush=True)
