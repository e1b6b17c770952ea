"""sdrift_jax.host_memory: glibc keeps freed memory, so large temporaries stop faulting."""
import json
import os
import subprocess
import sys

import jax
import pytest

from sdrift_jax import host_memory

# Minor page faults of each of 24 calls of a jitted function with a 64 MiB temporary
# (above glibc's largest mmap threshold, 32 MiB), in a fresh process.
_PROBE = """
import json, resource, sys
if sys.argv[1] == "reuse":
  from sdrift_jax import host_memory
  host_memory.reuse_freed_memory()
import jax, jax.numpy as jnp
x = jnp.linspace(0.0, 1.0, 4096)
f = jax.jit(lambda x: jnp.exp(-(x[:, None] - x[None, :]) ** 2) @ x)
faults = []
for _ in range(24):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  out = f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"faults": faults, "sum": float(out.sum())}))
"""


def _probe(mode):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("GLIBC_TUNABLES", None)
  out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                       env=env, timeout=300, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.heavy
def test_reuse_cuts_the_page_faults_of_large_temporaries():
  default, reuse = _probe("default"), _probe("reuse")
  assert reuse["sum"] == default["sum"]
  # Default: every call maps its temporary afresh (16384 pages of 4 KiB). Reuse: freed
  # pages are taken again. The heap still grows now and then (the runtime frees a call's
  # buffers after the next call may have started): over calls 9-24, 0-5 of the 16
  # faulted in 8 runs, against all 16 by default
  # (benchmarks/fast_path_scratch/probe_runs.py 8).
  later = slice(8, None)
  assert sum(default["faults"][later]) > 16 * 16000, default
  assert sum(reuse["faults"][later]) < 0.5 * sum(default["faults"][later]), reuse


def test_refused_once_jax_has_started():
  jax.devices()  # starts the backends
  with pytest.raises(RuntimeError, match="before JAX's first computation"):
    host_memory.reuse_freed_memory()


@pytest.mark.parametrize("keep", [0, -1, True, 2**31, 1.5])
def test_keep_bytes_is_validated(keep):
  with pytest.raises(ValueError, match="keep_bytes"):
    host_memory.reuse_freed_memory(keep)


def test_tunables_spell_the_same_settings():
  assert host_memory.tunables(1 << 20) == (
      "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1048576")
