"""x x^T on the CPU: one product against the upper blocks only (2 x 2 and 4 x 4 blocks,
the lower ones as transposes), assembled into the N x N matrix, and the same followed by
a row softmax (as the one-sided drift consumes it).
Usage: python benchmarks/fast_path_scratch/symgram.py N d
"""
import sys
import jax, jax.numpy as jnp
sys.path.insert(0, '.')
from benchmarks.common import interleaved_medians
HI = jax.lax.Precision.HIGHEST
n, d = int(sys.argv[1]), int(sys.argv[2])
x = jax.random.normal(jax.random.key(0), (n, d))
def full(x):
  return jnp.matmul(x, x.T, precision=HI)
def blocks(x, k):
  xs = jnp.split(x, k)
  G = [[None] * k for _ in range(k)]
  for i in range(k):
    for j in range(i, k):
      G[i][j] = jnp.matmul(xs[i], xs[j].T, precision=HI)
      if j > i: G[j][i] = G[i][j].T
  return jnp.block(G)
fs = {"full": jax.jit(full), "sym2": jax.jit(lambda x: blocks(x, 2)), "sym4": jax.jit(lambda x: blocks(x, 4)),
      "full+softmax": jax.jit(lambda x: jax.nn.softmax(full(x), axis=1) @ x),
      "sym2+softmax": jax.jit(lambda x: jax.nn.softmax(blocks(x, 2), axis=1) @ x)}
print({k: float(jnp.max(jnp.abs(f(x) - fs["full" if "softmax" not in k else "full+softmax"](x)))) for k, f in fs.items()})
ts = interleaved_medians([lambda f=f: f(x) for f in fs.values()], 7)
print(n, d, " ".join(f"{k}={1e3*t:.1f}ms" for k, t in zip(fs, ts)), flush=True)
