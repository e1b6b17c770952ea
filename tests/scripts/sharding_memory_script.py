"""Run by tests in a fresh process with 4 fake CPU devices.

Compiles each drift engine (and feature_drift) once on one device and once with ``x``
and ``y`` sharded along their rows over 4 devices, and prints per-engine the compiled
program's temporary bytes per device, as JSON: XLA's partitioner splits the couplings
along the rows, so each device should hold about a quarter.
"""
import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

sys.path.insert(0, sys.argv[1])
from sdrift_jax.drift import field  # noqa: E402
from sdrift_jax.drift import loss  # noqa: E402

N = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
D = 8


def temp_bytes(fn, shardings, *shapes):
  jitted = jax.jit(fn, in_shardings=shardings)
  return jitted.lower(*shapes).compile().memory_analysis().temp_size_in_bytes


def main():
  mesh = Mesh(np.array(jax.devices()), ("data",))
  rows = NamedSharding(mesh, PartitionSpec("data", None))
  rows3 = NamedSharding(mesh, PartitionSpec("data", None, None))
  cloud = jax.ShapeDtypeStruct((N, D), jnp.float32)
  feats = jax.ShapeDtypeStruct((N, 1, D), jnp.float32)
  out = {}
  for algorithm in ("scaling", "log", "blocked"):
    fn = lambda x, y, a=algorithm: field.compute(x, y, x, 0.1, T=21, algorithm=a).drift
    one = temp_bytes(fn, None, cloud, cloud)
    four = temp_bytes(fn, (rows, rows), cloud, cloud)
    out[f"drift_field/{algorithm}"] = [one, four]
  for algorithm in ("scaling", "log", "blocked"):
    fn = lambda x, y, a=algorithm: loss.feature_drift(x, y, tau=0.05, T=21, algorithm=a).drift
    one = temp_bytes(fn, None, feats, feats)
    four = temp_bytes(fn, (rows3, rows3), feats, feats)
    out[f"feature_drift/{algorithm}"] = [one, four]
  print(json.dumps(out))


if __name__ == "__main__":
  main()
