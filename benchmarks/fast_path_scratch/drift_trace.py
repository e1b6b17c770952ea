"""Per-thunk times (jax.profiler trace, summed over threads and two calls) of the default
drift at N = M = ARG, d = ARG2 (default 2), tau = 0.05 d, T = 41; writes the compiled HLO
to /tmp/prof/drift_hlo.txt. REUSE=1 runs it with host_memory.reuse_freed_memory().

    [REUSE=1] python benchmarks/fast_path_scratch/drift_trace.py 8192 [d]
"""
import os, sys, glob, collections, tempfile
sys.path.insert(0, '.')
if os.environ.get('REUSE'):
  from sdrift_jax import host_memory; host_memory.reuse_freed_memory()
import jax
from jax._src.lib import _profile_data
from sdrift_jax import drift_field
n = int(sys.argv[1]); d = int(sys.argv[2]) if len(sys.argv) > 2 else 2

x = jax.random.normal(jax.random.key(0), (n, d)); y = jax.random.normal(jax.random.key(1), (n, d)) + 0.5
f = jax.jit(lambda x, y: drift_field(x, y, x, 0.05 * d, T=41))
jax.block_until_ready(f(x, y))
hlo = f.lower(x, y).compile().as_text()
os.makedirs('/tmp/prof', exist_ok=True); open('/tmp/prof/drift_hlo.txt', 'w').write(hlo)
with tempfile.TemporaryDirectory() as tmp:
  with jax.profiler.trace(tmp):
    for _ in range(2): jax.block_until_ready(f(x, y))
  pd = _profile_data.ProfileData.from_file(glob.glob(tmp + "/**/*.xplane.pb", recursive=True)[0])
tot = collections.Counter(); cnt = collections.Counter()
for plane in pd.planes:
  for line in plane.lines:
    for ev in line.events:
      if ev.name.startswith(("ThunkExecutor", "$")): continue
      tot[ev.name] += ev.duration_ns; cnt[ev.name] += 1
for k, v in tot.most_common(25):
  print(f"{v/2e6:9.2f} ms/call n={cnt[k]//2:5d} {k}")
