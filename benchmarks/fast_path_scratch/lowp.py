"""K in float32, bfloat16 and float16 (float32 accumulation) for the loop of two matrix-vector
products: time per iteration and how far the scalings move.

    python benchmarks/fast_path_scratch/lowp.py 8192
"""
import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
n = int(sys.argv[1])
K = jax.random.uniform(jax.random.key(0), (n, n))
a = jnp.full((n,), 1.0 / n); b = a
def make(dt):
  Kd = K.astype(dt)
  def sep(Kd, v):
    def it(_, v):
      u = a / jnp.matmul(Kd, v.astype(dt), preferred_element_type=jnp.float32)
      return b / jnp.matmul(u.astype(dt), Kd, preferred_element_type=jnp.float32)
    return jax.lax.fori_loop(0, 10, it, v)
  f = jax.jit(sep)
  return f, Kd
v = jnp.ones((n,))
fs = [make(dt) for dt in (jnp.float32, jnp.bfloat16, jnp.float16)]
ref = fs[0][0](fs[0][1], v)
for f, Kd in fs[1:]:
  print("max rel diff of v after 10 iterations", float(jnp.max(jnp.abs(f(Kd, v) / ref - 1))))
ts = interleaved_medians([lambda f=f, Kd=Kd: f(Kd, v) for f, Kd in fs], 5)
print(n, [f"{1e3*t/10:.2f}" for t in ts], "ms/iter: float32, bfloat16, float16 K")
