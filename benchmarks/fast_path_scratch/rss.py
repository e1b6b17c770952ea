"""Faulting calls and resident memory over 300 calls of a function with a 64 MiB
temporary. Usage: python benchmarks/fast_path_scratch/rss.py default|reuse [imports]
("imports": jax, sdrift_jax, flax and optax imported before the setting).
"""
import json, resource, sys
if sys.argv[2:] == ["imports"]:
  sys.path.insert(0, '.')
  import jax, sdrift_jax, flax, optax
if sys.argv[1] == "reuse":
  sys.path.insert(0, '.')
  from sdrift_jax import host_memory
  host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
x = jnp.linspace(0.0, 1.0, 4096)
f = jax.jit(lambda x: jnp.exp(-(x[:, None] - x[None, :]) ** 2) @ x)
faults = []
for i in range(300):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  out = f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  if i % 50 == 49:
    rss = int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
    print(i, "faulting calls", sum(a > 8000 for a in faults), "rss MiB", round(rss), flush=True)
