"""One-sided drift (T = 1) with the row constant |x_i|^2 left out of the logits.

softmax_j(-(|x_i|^2 + |y_j|^2 - 2 x_i.y_j) / tau) = softmax_j((2 x_i.y_j - |y_j|^2) / tau):
a row constant does not change a row softmax. Variants timed interleaved with the
library's drift_field(T=1) and ott-jax; usage: python benchmarks/fast_path_scratch/t1row.py
ROUNDS N,d ...
"""
import os
import sys
sys.path.insert(0, '.')
import jax
import jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_jax.ott_reference import ott_drift_field

HI = jax.lax.Precision.HIGHEST
rounds = int(sys.argv[1])
print("load", os.getloadavg()[0], flush=True)
for spec in sys.argv[2:]:
  n, d = map(int, spec.split(','))
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d

  def rowfree(x, y, tau, prec):
    def one(t):
      L = (2.0 * jnp.matmul(x, t.T, precision=prec) - jnp.sum(t * t, 1)[None]) / tau
      return jnp.matmul(jax.nn.softmax(L, axis=1), t, precision=prec)
    return one(y) - one(x)

  variants = {
      "drift_field": lambda x, y, tau: drift_field(x, y, x, tau, T=1),
      "rowfree_HI": lambda x, y, tau: rowfree(x, y, tau, HI),
      "rowfree_default": lambda x, y, tau: rowfree(x, y, tau, None),
      "ott": lambda x, y, tau: ott_drift_field(x, y, x, tau, 1),
  }
  fs = {k: jax.jit(v) for k, v in variants.items()}
  ts = interleaved_medians([lambda f=f: f(x, y, tau) for f in fs.values()], rounds)
  ref = fs["ott"](x, y, tau)
  rel = {k: float(jnp.linalg.norm(f(x, y, tau) - ref) / jnp.linalg.norm(ref)) for k, f in fs.items()}
  print(n, d, {k: round(1e3 * t, 2) for k, t in zip(fs, ts)},
        {k: round(t / ts[-1], 2) for k, t in zip(fs, ts)}, "rel vs ott", rel, flush=True)
print("load", os.getloadavg()[0], flush=True)
