"""The dense drift against the package at an older commit ("old", imported as
sdrift_old: git archive COMMIT sdrift_jax, renamed as in this folder's README) and
ott-jax, interleaved. REUSE=1 runs the process with host_memory.reuse_freed_memory().
Old = 17fd4fa for the row-block K^T u and stabilizer table.
Usage: [REUSE=1] python benchmarks/fast_path_scratch/newold.py ROUNDS N,d,T ...
"""
import os
import sys
sys.path.insert(0, '.')
sys.path.insert(0, '/tmp/sdrift_old_pkg')
if os.environ.get('REUSE'):
  from sdrift_jax import host_memory; host_memory.reuse_freed_memory()
import jax
import jax.numpy as jnp
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_old import drift_field as old_drift_field
from sdrift_jax.ott_reference import ott_drift_field

rounds = int(sys.argv[1])
print("load", os.getloadavg()[0], flush=True)
for spec in sys.argv[2:]:
  n, d, T = map(int, spec.split(','))
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  tau = 0.05 * d
  fs = {"new": jax.jit(lambda x, y: drift_field(x, y, x, tau, T=T)),
        "old": jax.jit(lambda x, y: old_drift_field(x, y, x, tau, T=T)),
        "ott": jax.jit(lambda x, y: ott_drift_field(x, y, x, tau, T))}
  ts = interleaved_medians([lambda f=f: f(x, y) for f in fs.values()], rounds)
  ref = fs["ott"](x, y)
  rel = {k: float(jnp.linalg.norm(f(x, y) - ref) / jnp.linalg.norm(ref)) for k, f in fs.items()}
  print(n, d, T, "ms", {k: round(1e3 * t, 2) for k, t in zip(fs, ts)},
        "/ott", {k: round(t / ts[-1], 3) for k, t in zip(fs, ts)},
        "new/old", round(ts[0] / ts[1], 3), "rel vs ott", {k: f"{v:.1e}" for k, v in rel.items()},
        flush=True)
print("load", os.getloadavg()[0], flush=True)
