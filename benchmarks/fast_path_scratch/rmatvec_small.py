"""K^T u, plain against 8 row blocks (and K v), on small batched problems [B, n, n].
Usage: python benchmarks/fast_path_scratch/rmatvec_small.py
"""
import sys
import jax, jax.numpy as jnp
sys.path.insert(0, '.')
from benchmarks.common import interleaved_medians
HI = jax.lax.Precision.HIGHEST
for B, n in ((1, 256), (8, 256), (8, 512), (4, 1024), (16, 128), (2, 2048)):
  K = jax.random.uniform(jax.random.key(0), (B, n, n)); v = jnp.ones((B, n)) / n
  def rep(f):
    return jax.jit(lambda K, v: jax.lax.fori_loop(0, 50, lambda _, v: f(K, v) / n, v))
  plain = rep(lambda K, v: jnp.einsum("bnm,bn->bm", K, v, precision=HI))
  grouped = rep(lambda K, v: jnp.einsum("bhnm,bhn->bhm", K.reshape(B, 8, n // 8, n), v.reshape(B, 8, n // 8), precision=HI).sum(1))
  rowmv = rep(lambda K, v: jnp.einsum("bnm,bm->bn", K, v, precision=HI))
  ts = interleaved_medians([lambda: plain(K, v), lambda: grouped(K, v), lambda: rowmv(K, v)], 9)
  print(B, n, "us per product: plain %.1f grouped %.1f  (K v %.1f)" % tuple(1e6 * t / 50 for t in ts), flush=True)
