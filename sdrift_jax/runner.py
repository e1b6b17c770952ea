"""``run(config, workdir)``: the experiment named by ``config.experiment``."""
from __future__ import annotations

EXPERIMENTS = ("particles", "toy", "mnist", "latents")


def run(config, workdir: str):
  """Runs the experiment of ``config`` in ``workdir`` and returns its summary."""
  kind = config.get("experiment")
  if kind == "particles":
    from sdrift_jax import particles
    return particles.run_particles(config, workdir)
  if kind == "toy":
    from sdrift_jax import toy
    if config.sweep.enabled:
      return toy.run_sweep(config, workdir)
    return toy.run_toy(config, workdir)
  if kind == "mnist":
    from sdrift_jax import mnist
    return mnist.run_mnist(config, workdir)
  if kind == "latents":
    from sdrift_jax import latents
    return latents.run_latents(config, workdir)
  raise ValueError(f"unknown config.experiment {kind!r}: expected one of {EXPERIMENTS}")
