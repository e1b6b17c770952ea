"""The paper's 2-D toy targets (Sec. 5.2, App. J) as jittable samplers.

Every sampler takes a ``jax.random`` key and a static sample count and returns an array
of shape ``[n, 2]``.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp


def eight_gaussians(key, n: int) -> jax.Array:
  """Eight Gaussians (std 0.08) at radius 2, one every 45 degrees."""
  k_mode, k_noise = jax.random.split(key)
  angle = jax.random.randint(k_mode, (n,), 0, 8) * (math.pi / 4)
  centers = 2.0 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
  return centers + 0.08 * jax.random.normal(k_noise, (n, 2))


def checkerboard(key, n: int) -> jax.Array:
  """4 x 4 checkerboard on [-2, 2]^2: the 8 unit cells with floor(x) + floor(y) even,
  uniform inside, plus Gaussian noise of std 0.05."""
  k_cell, k_pos, k_noise = jax.random.split(key, 3)
  cells = jnp.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0],
                    jnp.float32)
  corner = cells[jax.random.randint(k_cell, (n,), 0, cells.shape[0])]
  points = corner + jax.random.uniform(k_pos, (n, 2)) - 2.0
  return points + 0.05 * jax.random.normal(k_noise, (n, 2))


def two_moons(key, n: int) -> jax.Array:
  """Two interleaved half circles (the usual "moons" geometry), centred, scaled by 1.5,
  plus Gaussian noise of std 0.08."""
  k_side, k_t, k_noise = jax.random.split(key, 3)
  t = jax.random.uniform(k_t, (n,)) * math.pi
  upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
  lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=-1)
  side = jax.random.bernoulli(k_side, 0.5, (n, 1))
  points = jnp.where(side, upper, lower) - jnp.array([0.5, 0.25])
  return 1.5 * points + 0.08 * jax.random.normal(k_noise, (n, 2))


def spiral(key, n: int) -> jax.Array:
  """Archimedean spiral: t uniform in [0, 4 pi], radius t / (4 pi), scale 2.5, noise 0.05."""
  k_t, k_noise = jax.random.split(key)
  t = jax.random.uniform(k_t, (n,)) * (4 * math.pi)
  r = t / (4 * math.pi)
  points = 2.5 * r[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
  return points + 0.05 * jax.random.normal(k_noise, (n, 2))


TARGETS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "moons": two_moons,
    "spiral": spiral,
}


def get_target(name: str) -> Callable[[jax.Array, int], jax.Array]:
  """Returns the sampler ``(key, n) -> [n, 2]`` of a toy target by name."""
  if name not in TARGETS:
    raise ValueError(f"unknown toy target {name!r}: expected one of {tuple(TARGETS)}")
  return TARGETS[name]


def particle_clouds(key, n: int = 100, source_std: float = 1.5, target_std: float = 0.5,
                    corner: float = 3.0) -> tuple[jax.Array, jax.Array]:
  """Source and target of the particle experiment (Sec. 5.1).

  Returns:
    ``(source, target)``, each of shape ``[n, 2]``: the source from
    ``N(0, source_std^2 I)``, the target from four Gaussians (std ``target_std``) at
    ``(+-corner, +-corner)``, fixed once drawn.
  """
  k_src, k_mode, k_noise = jax.random.split(key, 3)
  source = source_std * jax.random.normal(k_src, (n, 2))
  signs = jnp.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], jnp.float32)
  centers = corner * signs[jax.random.randint(k_mode, (n,), 0, 4)]
  return source, centers + target_std * jax.random.normal(k_noise, (n, 2))
