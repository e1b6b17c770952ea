"""Float64 error of the blocked drift with the row constant left out (this blocked.py) and
with the full costs (blocked.py of commit 3ed65cd), worst over a grid of d, costs, T,
masks, temperatures and cloud offsets; 7-row tiles.

    git show 3ed65cd:sdrift_jax/blocked.py > /tmp/blocked_old.py
    python benchmarks/fast_path_scratch/blkerr.py
"""
import sys, importlib.util
sys.path.insert(0, 'tests'); sys.path.insert(0, '.')
import numpy as np, jax
import numpy_reference as ref
from conftest import clouds
from sdrift_jax import blocked
spec = importlib.util.spec_from_file_location("sdrift_jax.blocked_old", "/tmp/blocked_old.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
blocked.TILE_ENTRIES = 7 * 37; old.TILE_ENTRIES = 7 * 37
def rel(a, b): return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))
worst = {}
for d in (17, 64):
 for cost in ("sqeuclidean", "half_sqeuclidean"):
  for normalization, T in (("sinkhorn", 9), ("sinkhorn", 41), ("sinkhorn", 2), ("one_sided", 1)):
   for mask_self in (False, True):
    for tau_rel in (1e-3, 1e-2, 0.5):
     for shift in (0.5, 3.0):
      x, y_pos, y_neg = clouds(d, n=46, m=30, d=d, shift=shift)
      y_neg = x if mask_self else y_neg
      tau = tau_rel * float(np.median(ref.cost(x, y_pos, cost)))
      want = ref.drift(x, y_pos, y_neg, tau, T=T, normalization=normalization, cost_name=cost, mask_self=mask_self)
      import jax.numpy as jnp
      def V(mod):
        la = jnp.full((len(x),), -np.log(len(x)), jnp.float32)
        def bary(y, mask):
          lb = jnp.full((len(y),), -np.log(len(y) - (1 if mask else 0)), jnp.float32)
          f = jax.jit(mod.barycentric_map, static_argnums=(5, 6, 7, 8, 9))
          return f(x, y, la, lb, jnp.float32(tau), T, cost, mask, 7, False)[0]
        return np.asarray(bary(y_pos, False) - bary(y_neg, mask_self))
      new, o = V(blocked), V(old)
      k = tau_rel
      worst.setdefault(k, [0, 0])
      worst[k][0] = max(worst[k][0], rel(new, want)); worst[k][1] = max(worst[k][1], rel(o, want))
print("tau_rel: worst rel err new / old", worst)
