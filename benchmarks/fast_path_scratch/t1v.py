import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import costs
from sdrift_jax.ott_reference import ott_drift_field
HI = jax.lax.Precision.HIGHEST
rounds = int(sys.argv[1])
for spec in sys.argv[2:]:
  n, d = map(int, spec.split(','))
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d
  lb = jnp.full((n,), -jnp.log(n))
  def base(x, y, tau, cost_fn, addb, prec):
    def one(yy):
      L = -cost_fn(x, yy) / tau
      if addb: L = L + lb
      return jnp.matmul(jax.nn.softmax(L, axis=1), yy, precision=prec)
    return one(y) - one(x)
  def expand(x, y):
    return jnp.sum(x * x, 1)[:, None] + jnp.sum(y * y, 1)[None] - 2 * x @ y.T
  def expand_clip(x, y):
    return jnp.maximum(expand(x, y), 0.0)
  variants = {
    "ours_now": lambda x, y, tau: base(x, y, tau, costs.pairwise_cost, True, HI),
    "no_logb": lambda x, y, tau: base(x, y, tau, costs.pairwise_cost, False, HI),
    "no_logb_def": lambda x, y, tau: base(x, y, tau, costs.pairwise_cost, False, None),
    "expand": lambda x, y, tau: base(x, y, tau, expand, False, None),
    "expand_clip": lambda x, y, tau: base(x, y, tau, expand_clip, False, HI),
    "ott": lambda x, y, tau: ott_drift_field(x, y, x, tau, 1),
  }
  fs = {k: jax.jit(v) for k, v in variants.items()}
  ts = interleaved_medians([lambda f=f: f(x, y, tau) for f in fs.values()], rounds)
  print(n, d, {k: round(1e3 * t, 2) for k, t in zip(fs, ts)}, flush=True)
  v0 = fs["no_logb"](x, y, tau); v1 = fs["no_logb_def"](x, y, tau); v2 = fs["expand"](x, y, tau)
  print("def vs HI rel", float(jnp.linalg.norm(v1 - v0) / jnp.linalg.norm(v0)), "expand vs HI", float(jnp.linalg.norm(v2 - v0) / jnp.linalg.norm(v0)))
