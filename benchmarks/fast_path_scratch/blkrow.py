"""The blocked drift with and without the row constant in its tiles (d > 16), interleaved.

The old module is the blocked.py of commit 3ed65cd, written out first:

    git show 3ed65cd:sdrift_jax/blocked.py > /tmp/blocked_old.py
    python benchmarks/fast_path_scratch/blkrow.py ROUNDS N,d,T ...   (e.g. 5 8192,64,3)
"""
import importlib.util
import sys; sys.path.insert(0, '.')
import jax, jax.numpy as jnp, numpy as np
from benchmarks.common import interleaved_medians
from sdrift_jax import blocked
spec = importlib.util.spec_from_file_location("sdrift_jax.blocked_old", "/tmp/blocked_old.py")
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
rounds = int(sys.argv[1])
for case in sys.argv[2:]:
  n, d, T = (int(v) for v in case.split(","))
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = jnp.float32(0.05 * d)
  la = jnp.full((n,), -np.log(n), jnp.float32)
  block = blocked.block_rows(n, n)
  def make(mod):
    def V(x, y):
      bary = lambda t: mod.barycentric_map(x, t, la, la, tau, T, "sqeuclidean", False, block, False)[0]
      return bary(y) - bary(x)
    return jax.jit(V)
  fns = [make(blocked), make(old)]
  outs = [np.asarray(f(x, y)) for f in fns]
  diff = float(np.linalg.norm(outs[0] - outs[1]) / np.linalg.norm(outs[1]))
  t_new, t_old = interleaved_medians([lambda f=f: f(x, y) for f in fns], rounds)
  print(f"N=M={n} d={d} T={T}: new {t_new:.2f} s ({1e9*t_new/n/n:.1f} ns/entry), old {t_old:.2f} s "
        f"({1e9*t_old/n/n:.1f}), new/old {t_new/t_old:.2f}, rel diff {diff:.1e}", flush=True)
