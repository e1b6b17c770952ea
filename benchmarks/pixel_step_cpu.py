"""Times the pixel generator's train step (configs/mnist_pixels.py: the convolutional
generator, the masked-autoencoder encoder's feature sets, the feature-drift loss) three
ways, interleaved, medians over rounds: as the trainer runs it now (one jitted step per
call, no seed vmap), inside ``lax.scan`` (``train.scan = True``), and with the one seed
vmapped (``jax.vmap`` over a seed axis of size 1). Also the share of the step that is
the drift: the loss's gradient with respect to the generated images alone.

    python -m benchmarks.pixel_step_cpu [--batch 32] [--rounds 3] [--chunk 3]

Random data and an untrained encoder: the cost of a step does not depend on either.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import machine_description
from experiments import mnist_pixels
from experiments import config_lib
from sdrift_jax.models import pixel as pixel_models
from sdrift_jax import training
from sdrift_jax.training import trainer as trainer_lib


def build(batch: int, scan: bool, vmap_one_seed: bool):
  c = config_lib.load("configs/mnist_pixels.py")
  enc = pixel_models.MaskedConvEncoder(tuple(c.encoder.widths), rngs=nnx.Rngs(0))
  graph, params = nnx.split(enc)
  rng = np.random.default_rng(0)
  per_class = [rng.random((400, 784)).astype(np.float32) for _ in range(10)]
  problem = training.class_conditional_problem(
      per_class, [p[:100] for p in per_class],
      features=mnist_pixels.make_feature_fn(graph, c.features), feature_params=params)
  c.drift.tau = tuple(c.sweep.taus[0])
  c.train.batch_size = batch
  c.train.scan = scan
  trainer = training.Trainer(c, problem)
  return trainer, trainer.init()


def first_chunk(trainer, state, length, vmap_one_seed):
  """Compiles and runs the first chunk; with ``vmap_one_seed`` the trainer's seed map is
  ``jax.vmap`` even for one seed while the chunk is traced (the program keeps it)."""
  original = trainer_lib.over_seeds
  if vmap_one_seed:
    trainer_lib.over_seeds = lambda fn, in_axes, _: jax.vmap(fn, in_axes=in_axes)
  try:
    chunk = trainer.make_chunk(length)
    state, m = chunk(state, trainer.seed_keys(), trainer.objective.tau_array())
    jax.block_until_ready(m)
  finally:
    trainer_lib.over_seeds = original
  return chunk, state


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--chunk", type=int, default=3)
  args = ap.parse_args()
  print(machine_description())
  variants = {"one jitted step per call (now)": (False, False),
              "lax.scan over the chunk": (True, False),
              "one seed vmapped, one step per call": (False, True)}
  runs = {}
  for name, (scan, vm) in variants.items():
    trainer, state = build(args.batch, scan, vm)
    keys, tau = trainer.seed_keys(), trainer.objective.tau_array()
    t0 = time.perf_counter()
    chunk, state = first_chunk(trainer, state, args.chunk, vm)
    print(f"{name}: first chunk (compile + run) {time.perf_counter() - t0:.1f} s")
    runs[name] = [trainer, state, chunk, keys, tau, []]
  for _ in range(args.rounds):
    for name, r in runs.items():
      trainer, state, chunk, keys, tau, times = r
      t0 = time.perf_counter()
      state, m = chunk(state, keys, tau)
      jax.block_until_ready(m)
      times.append((time.perf_counter() - t0) / args.chunk)
      r[1] = state
  for name, r in runs.items():
    print(f"{name}: {statistics.median(r[5]):.3f} s per step (median of {args.rounds})")
  # The drift's share: the loss's gradient w.r.t. the generated images (encoder included).
  trainer, state = runs["one jitted step per call (now)"][:2]
  obj, G, B = trainer.objective, 10, args.batch
  rng = np.random.default_rng(1)
  x, y = (jnp.asarray(rng.random((G, B, 784)), jnp.float32) for _ in range(2))
  u = jnp.asarray(rng.random((G, 16, 784)), jnp.float32)
  tau = obj.tau_array(tuple(config_lib.load("configs/mnist_pixels.py").sweep.taus[0]))
  f = jax.jit(jax.grad(lambda x: obj.batch_loss(x, y, u, 2.0, tau,
                                                trainer.problem.feature_params)[0]))
  jax.block_until_ready(f(x))
  times = []
  for _ in range(args.rounds):
    t0 = time.perf_counter()
    jax.block_until_ready(f(x))
    times.append(time.perf_counter() - t0)
  print(f"loss gradient w.r.t. the images (encoder + feature drift): "
        f"{statistics.median(times):.3f} s")


if __name__ == "__main__":
  main()
