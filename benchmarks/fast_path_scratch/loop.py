import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import costs, stabilized
HI = jax.lax.Precision.HIGHEST
n = int(sys.argv[1]); d = 2
kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
tau = 0.05 * d
la = jnp.full((n,), -jnp.log(n))
def stab(T):
  return jax.jit(lambda x, y: stabilized.row_normalized_coupling(-costs.pairwise_cost(x, y) / tau, la, la, T))
def simple(T):
  def f(x, y):
    L = -costs.pairwise_cost(x, y) / tau
    g = la; fr = la - jnp.max(L + g, axis=1)
    K = jnp.exp(L + fr[:, None] + g[None])
    a = jnp.exp(la)
    def it(_, v):
      u = a / jnp.matmul(K, v, precision=HI)
      return a / jnp.matmul(u, K, precision=HI)
    v = jax.lax.fori_loop(0, T // 2, it, jnp.ones((n,)))
    W = K * v
    return W / jnp.sum(W, 1, keepdims=True)
  return jax.jit(f)
fs = [stab(1), stab(3), stab(41), simple(3), simple(41)]
print(float(jnp.max(jnp.abs(fs[2](x, y) - fs[4](x, y)))))
ts = interleaved_medians([lambda f=f: f(x, y) for f in fs], 5)
print(n, ["%.1f" % (1e3 * t) for t in ts], "stab T1,3,41 simple 3,41")
