"""Medians of drift_field at a few sizes, for runs with and without transparent huge pages
for malloc's large blocks (GLIBC_TUNABLES=glibc.malloc.hugetlb=1; the kernel's THP mode
here is 'madvise'). The setting is per process, so the two are alternated as processes:
  for i in 1 2; do python benchmarks/fast_path_scratch/thp.py; \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/fast_path_scratch/thp.py; done
"""
import os
import resource
import sys
sys.path.insert(0, '.')
import jax
from benchmarks.common import interleaved_medians
from sdrift_jax import drift_field

rows = []
for n, d, T in ((4096, 2, 41), (4096, 64, 41), (8192, 2, 41), (4096, 64, 1)):
  kx, ky = jax.random.split(jax.random.key(n * 1000 + d))
  x = jax.random.normal(kx, (n, d)); y = jax.random.normal(ky, (n, d)) + 0.5
  f = jax.jit(lambda x, y: drift_field(x, y, x, 0.05 * d, T=T))
  r0 = resource.getrusage(resource.RUSAGE_SELF)
  t, = interleaved_medians([lambda: f(x, y)], 5)
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  rows.append(f"{n},{d},{T}: {1e3 * t:.1f} ms, minor faults {r1.ru_minflt - r0.ru_minflt}, "
              f"sys {r1.ru_stime - r0.ru_stime:.2f} s")
print(os.environ.get("GLIBC_TUNABLES", "default"), "load", os.getloadavg()[0], " | ".join(rows),
      flush=True)
