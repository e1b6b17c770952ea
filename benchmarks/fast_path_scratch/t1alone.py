"""The dense drift (ours, log domain, ott) interleaved and then each alone (back to
back calls of one function), e.g. at T = 1. REUSE=1: host_memory.reuse_freed_memory();
SYNC=1: jax_cpu_enable_async_dispatch off.
Usage: [REUSE=1] [SYNC=1] python benchmarks/fast_path_scratch/t1alone.py N d T
"""
import sys, os
sys.path.insert(0, '.')
if os.environ.get("REUSE"):
  from sdrift_jax import host_memory; host_memory.reuse_freed_memory()
import jax
if os.environ.get("SYNC"): jax.config.update("jax_cpu_enable_async_dispatch", False)
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_jax.ott_reference import ott_drift_field
n = int(sys.argv[1]); d = int(sys.argv[2]); T = int(sys.argv[3])
kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
fs = {"ours": jax.jit(lambda x, y: drift_field(x, y, x, 0.05 * d, T=T)),
      "log": jax.jit(lambda x, y: drift_field(x, y, x, 0.05 * d, T=T, algorithm='log')),
      "ott": jax.jit(lambda x, y: ott_drift_field(x, y, x, 0.05 * d, T))}
ts = interleaved_medians([lambda f=f: f(x, y) for f in fs.values()], 7)
print({k: round(1e3 * t, 1) for k, t in zip(fs, ts)})
for k in fs:
  t, = interleaved_medians([lambda f=fs[k]: f(x, y)], 7)
  print(k, "alone", round(1e3 * t, 1))
