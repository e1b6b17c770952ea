"""K v and K^T u on an N x N kernel (10 products in a fori_loop), K^T u as one
product or as a batched product over H row blocks then a sum.
Usage: python benchmarks/fast_path_scratch/rmatvec.py N
"""
import sys
import jax, jax.numpy as jnp
sys.path.insert(0, '.')
from benchmarks.common import interleaved_medians
HI = jax.lax.Precision.HIGHEST
n = int(sys.argv[1])
K = jax.random.uniform(jax.random.key(0), (1, n, n)); v = jnp.ones((1, n)) / n
def rep(f):
  return jax.jit(lambda K, v: jax.lax.fori_loop(0, 10, lambda _, v: f(K, v) / n, v))
fs = {"Kv": lambda K, v: jnp.einsum("bnm,bm->bn", K, v, precision=HI),
      "uK": lambda K, v: jnp.einsum("bnm,bn->bm", K, v, precision=HI)}
for h in (2, 4, 8, 16, 64):
  fs[f"uK_{h}"] = lambda K, v, h=h: jnp.einsum("bhnm,bhn->bhm", K.reshape(1, h, n // h, n), v.reshape(1, h, n // h), precision=HI).sum(1)
for h in (2, 8):
  fs[f"Kv_{h}"] = lambda K, v, h=h: jnp.einsum("bhnm,bm->bhn", K.reshape(1, h, n // h, n), v, precision=HI).reshape(1, n)
js = {k: rep(f) for k, f in fs.items()}
ref = js["uK"](K, v)
print({k: float(jnp.max(jnp.abs(j(K, v) / ref - 1))) for k, j in js.items() if k.startswith("uK")})
ts = interleaved_medians([lambda j=j: j(K, v) for j in js.values()], 7)
gb = n * n * 4 / 1e9
print(n, " ".join(f"{k}={1e3*t/10:.2f}ms({gb/(t/10):.0f}GB/s)" for k, t in zip(js, ts)))
