"""Minor faults and time of the dense drift (and ott's) with glibc's defaults or
mallopt settings made at runtime. MODE: default; mmap (M_MMAP_MAX=0, M_TRIM_THRESHOLD
2^30); arena (both and M_ARENA_MAX=1); arena-nommap / arena-notrim (one left out);
late-arena (all three, after JAX's first computation).
Usage: python benchmarks/fast_path_scratch/mallopt.py MODE
"""
import ctypes, os, resource, sys
mode = sys.argv[1]
def setopts():
  libc = ctypes.CDLL("libc.so.6")
  M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
  if "arena" in mode: print("arena", libc.mallopt(M_ARENA_MAX, 1))
  if "nommap" not in mode: print("mmap_max", libc.mallopt(M_MMAP_MAX, 0))
  if "notrim" not in mode: print("trim", libc.mallopt(M_TRIM_THRESHOLD, 2**30))
if mode != "default" and "late" not in mode: setopts()
sys.path.insert(0, '.')
import jax
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field
from sdrift_jax.ott_reference import ott_drift_field
out = []
if "late" in mode:
  jax.block_until_ready(jax.jit(lambda x: x @ x.T)(jax.numpy.ones((512, 512)))); setopts()
for n, d, T in ((4096, 2, 41), (4096, 64, 41), (4096, 64, 1)):
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  f = jax.jit(lambda x, y: drift_field(x, y, x, 0.05 * d, T=T))
  g = jax.jit(lambda x, y: ott_drift_field(x, y, x, 0.05 * d, T))
  r0 = resource.getrusage(resource.RUSAGE_SELF)
  t, = interleaved_medians([lambda: f(x, y)], 5)
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  to, = interleaved_medians([lambda: g(x, y)], 3)
  out.append(f"{n},{d},{T}: {1e3*t:.1f} ms (ott {1e3*to:.1f}, {t/to:.3f}) faults {r1.ru_minflt-r0.ru_minflt}")
print(mode, "load", round(os.getloadavg()[0], 2), " | ".join(out),
      "maxrss GiB", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), flush=True)
