"""Building blocks shared by the generators: activations by name, the class and
guidance conditioning of a generator's input, PyTorch-like initialization, sub-pixel
upsampling."""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["ACTIVATIONS", "SubPixelUpsample", "activation", "conditioned_input",
           "depth_to_space", "torch_like_linear"]

ACTIVATIONS = {"relu": jax.nn.relu, "silu": jax.nn.silu, "gelu": jax.nn.gelu}


def activation(name: str):
  """The activation function called ``name`` (a key of :data:`ACTIVATIONS`)."""
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}: expected one of {tuple(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def conditioned_input(module, eps: jax.Array, labels: Optional[jax.Array],
                      omega: Optional[jax.Array]) -> jax.Array:
  """The noise, concatenated with ``module.embed(labels)`` (if ``module.embed``) and with
  ``omega_out(SiLU(omega_in(omega)))`` (if ``module.omega_in``); refuses a missing
  label or an ``omega`` the module does not take (or a missing one it needs)."""
  h = eps
  if module.embed is not None:
    if labels is None:
      raise ValueError("this generator is class-conditional: pass labels")
    h = jnp.concatenate([h, module.embed(labels)], axis=-1)
  if (omega is None) != (module.omega_in is None):
    raise ValueError("omega must be given exactly when the generator has model.omega_dim "
                     "> 0 (classifier-free guidance)")
  if omega is not None:
    o = module.omega_out(jax.nn.silu(module.omega_in(omega.astype(eps.dtype)[:, None])))
    h = jnp.concatenate([h, o], axis=-1)
  return h


def torch_like_linear(fan_in: int, fan_out: int, rngs: nnx.Rngs) -> nnx.Linear:
  """Linear layer initialized like PyTorch's default: weights and biases uniform in
  ``+-1 / sqrt(fan_in)`` (a third of the variance of Flax's default lecun-normal)."""
  bound = 1.0 / float(fan_in) ** 0.5
  init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
  return nnx.Linear(fan_in, fan_out, kernel_init=init, bias_init=init, rngs=rngs)


def depth_to_space(h: jax.Array, scale: int = 2) -> jax.Array:
  """``[B, H, W, s*s*C] -> [B, s*H, s*W, C]`` (pixel shuffle)."""
  b, height, width, c = h.shape
  h = h.reshape(b, height, width, scale, scale, c // (scale * scale))
  return h.transpose(0, 1, 3, 2, 4, 5).reshape(b, height * scale, width * scale, -1)


class SubPixelUpsample(nnx.Module):
  """Stride-2 upsampling: a 3x3 conv to ``4 * out`` channels, then depth-to-space.

  Used instead of ``nnx.ConvTranspose``, which maps the same shapes but ran slower on
  the CPU (``python -m benchmarks.mnist_conv_cpu``; docs/performance.md).
  """

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_features, 4 * out_features, kernel_size=(3, 3), padding="SAME",
                         rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    return depth_to_space(self.conv(h))
