import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import costs, stabilized
HI = jax.lax.Precision.HIGHEST
n, d = int(sys.argv[1]), int(sys.argv[2])
kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
tau = 0.05 * d
lb = jnp.full((n,), -jnp.log(n))
def L(x, y): return -costs.pairwise_cost(x, y) / tau
def old(x, y):
  return jnp.matmul(jax.nn.softmax(L(x, y) + lb, axis=1), y, precision=HI)
def new(x, y):
  return stabilized.barycentric_map(L(x, y), lb, lb, y, 1)[0]
def nocond(x, y):
  s = L(x, y) + lb
  K = jnp.exp(s - jnp.max(s, 1, keepdims=True))
  Z = jnp.matmul(K, jnp.concatenate([y, jnp.ones((n, 1))], 1), precision=HI)
  return Z[:, :-1] / Z[:, -1:]
def nocond2(x, y):
  s = L(x, y) + lb
  K = jnp.exp(s - jnp.max(s, 1, keepdims=True))
  Z = jnp.matmul(K, y, precision=HI)
  return Z / jnp.sum(K, 1, keepdims=True)
def costonly(x, y):
  return jnp.sum(L(x, y), 1)
fs = [jax.jit(f) for f in (old, new, nocond, nocond2, costonly)]
ts = interleaved_medians([lambda f=f: f(x, y) for f in fs], 5)
print(n, d, ["%.1f" % (1e3 * t) for t in ts], "old new nocond nocond2 costonly")
