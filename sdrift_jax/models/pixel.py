"""Pixel-space models (Flax NNX): a one-step convolutional image generator and the frozen
feature encoder whose feature sets it is trained to match (Deng et al., App. A.5).

* :class:`ConvGenerator`: noise (+ class, + guidance strength ``omega``) to a
  ``28 x 28`` image in ``[0, 1]``, returned flat ``[B, 784]`` so that it is a sample of
  dimension 784 to the trainer.
* :class:`MaskedConvEncoder`: three convolutional stages (14 x 14, 7 x 7, 4 x 4) trained
  as a masked autoencoder (kind ``'encoder'`` of ``experiments/mnist_models.py``): patches of the input are
  hidden and the light decoder reconstructs the image from the deepest stage. Its
  feature maps, turned into feature sets by :func:`sdrift_jax.drift.feature_sets.feature_sets`,
  are what the generator's drift is computed on.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from sdrift_jax.models import layers

__all__ = ["ConvGenerator", "IMAGE_SHAPE", "mae_loss", "MASK_PATCH", "MaskedConvEncoder",
           "patch_mask"]

IMAGE_SHAPE = (28, 28, 1)
MASK_PATCH = 4  # the masked autoencoder hides 4 x 4 pixel patches: a 7 x 7 grid


class ConvGenerator(nnx.Module):
  """``Linear(cond -> 7 x 7 x W)``, a 3x3 conv, sub-pixel upsampling to 14 x 14 (W/2
  channels), a 3x3 conv, upsampling to 28 x 28 (W/4), a 3x3 conv to one channel and a
  sigmoid.

  ``cond`` is the noise, concatenated with a learned class embedding (``num_classes``)
  and with ``omega`` through ``Linear(1, omega_dim)``, SiLU, ``Linear(omega_dim,
  omega_dim)`` (``omega_dim > 0``, classifier-free guidance). ``cond`` also adds a
  learned per-channel bias at the 7 x 7 and 14 x 14 stages, so the label reaches every
  resolution.
  """

  def __init__(self, noise_dim: int, *, width: int = 64, activation: str = "silu",
               num_classes: Optional[int] = None, embed_dim: int = 32, omega_dim: int = 0,
               rngs: nnx.Rngs):
    if width < 4 or width % 4:
      raise ValueError(f"model.width must be a positive multiple of 4, got {width}")
    self.act = layers.activation(activation)
    self.width = width
    self.embed = nnx.Embed(num_classes, embed_dim, rngs=rngs) if num_classes else None
    self.omega_in = nnx.Linear(1, omega_dim, rngs=rngs) if omega_dim else None
    self.omega_out = nnx.Linear(omega_dim, omega_dim, rngs=rngs) if omega_dim else None
    cond = noise_dim + (embed_dim if num_classes else 0) + omega_dim
    conv = lambda i, o: nnx.Conv(i, o, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    self.inp = nnx.Linear(cond, 7 * 7 * width, rngs=rngs)
    self.bias7 = nnx.Linear(cond, width, rngs=rngs)
    self.conv7 = conv(width, width)
    self.up14 = layers.SubPixelUpsample(width, width // 2, rngs=rngs)
    self.bias14 = nnx.Linear(cond, width // 2, rngs=rngs)
    self.conv14 = conv(width // 2, width // 2)
    self.up28 = layers.SubPixelUpsample(width // 2, width // 4, rngs=rngs)
    self.out = conv(width // 4, 1)

  def __call__(self, eps: jax.Array, labels: Optional[jax.Array] = None,
               omega: Optional[jax.Array] = None) -> jax.Array:
    """Noise ``[B, noise_dim]`` (and labels ``[B]``, ``omega [B]``) -> images flattened
    to ``[B, 784]`` in ``[0, 1]``."""
    c = layers.conditioned_input(self, eps, labels, omega)
    B = eps.shape[0]
    h = self.act(self.inp(c)).reshape(B, 7, 7, self.width)
    h = self.act(self.conv7(h) + self.bias7(c)[:, None, None, :])
    h = self.act(self.up14(h))
    h = self.act(self.conv14(h) + self.bias14(c)[:, None, None, :])
    h = self.act(self.up28(h))
    return jax.nn.sigmoid(self.out(h)).reshape(B, -1)


class MaskedConvEncoder(nnx.Module):
  """Feature encoder for 28 x 28 x 1 images, trained as a masked autoencoder.

  Input: the image with hidden pixels zeroed and a second channel marking them (1 =
  hidden; all zeros when nothing is hidden, as when features are extracted). Stages
  (3x3 convs, SiLU): ``s1`` stride-2 conv and a conv, ``14 x 14 x w1``; ``s2`` the same,
  ``7 x 7 x w2``; ``s3`` one stride-2 conv, ``4 x 4 x w3``. Decoder (training only):
  ``Linear(4*4*w3 -> 7*7*w2)``, two sub-pixel upsamplings to 28 x 28 logits.
  """

  def __init__(self, widths=(32, 64, 128), *, rngs: nnx.Rngs):
    w1, w2, w3 = (int(w) for w in widths)
    conv = lambda i, o, s=1: nnx.Conv(i, o, kernel_size=(3, 3), strides=(s, s),
                                      padding="SAME", rngs=rngs)
    self.s1a, self.s1b = conv(2, w1, 2), conv(w1, w1)
    self.s2a, self.s2b = conv(w1, w2, 2), conv(w2, w2)
    self.s3 = conv(w2, w3, 2)
    self.dec_in = nnx.Linear(4 * 4 * w3, 7 * 7 * w2, rngs=rngs)
    self.dec1 = layers.SubPixelUpsample(w2, w1, rngs=rngs)
    self.dec2 = layers.SubPixelUpsample(w1, 1, rngs=rngs)
    self.w2 = w2

  def feature_maps(self, images: jax.Array, mask: Optional[jax.Array] = None) -> dict:
    """``images [B, 28, 28, 1]`` in [0, 1] (``mask`` the same shape, 1 = hidden; None:
    nothing hidden) -> ``{'s1': [B, 14, 14, w1], 's2': [B, 7, 7, w2], 's3': [B, 4, 4,
    w3]}``."""
    if mask is None:
      mask = jnp.zeros_like(images)
    h = jnp.concatenate([images * (1.0 - mask), mask], axis=-1)
    s1 = jax.nn.silu(self.s1b(jax.nn.silu(self.s1a(h))))
    s2 = jax.nn.silu(self.s2b(jax.nn.silu(self.s2a(s1))))
    s3 = jax.nn.silu(self.s3(s2))
    return dict(s1=s1, s2=s2, s3=s3)

  def reconstruct_logits(self, images: jax.Array, mask: jax.Array) -> jax.Array:
    """Logits ``[B, 28, 28, 1]`` of the image reconstructed from its visible part."""
    s3 = self.feature_maps(images, mask)["s3"]
    h = jax.nn.silu(self.dec_in(s3.reshape(s3.shape[0], -1)))
    h = jax.nn.silu(self.dec1(h.reshape(-1, 7, 7, self.w2)))
    return self.dec2(h)


def patch_mask(key: jax.Array, batch: int, max_ratio: float = 0.75) -> jax.Array:
  """A ``[batch, 28, 28, 1]`` mask hiding a random share of the 7 x 7 grid of 4 x 4
  patches, the share drawn per image uniformly in ``[0, max_ratio]`` (so that unmasked
  images, the ones features are extracted from, are in the training distribution)."""
  k_ratio, k_u = jax.random.split(key)
  grid = 28 // MASK_PATCH
  ratio = jax.random.uniform(k_ratio, (batch, 1, 1)) * max_ratio
  hidden = (jax.random.uniform(k_u, (batch, grid, grid)) < ratio).astype(jnp.float32)
  return jnp.repeat(jnp.repeat(hidden, MASK_PATCH, 1), MASK_PATCH, 2)[..., None]


def mae_loss(model: MaskedConvEncoder, images: jax.Array, key: jax.Array, *,
             max_mask_ratio: float = 0.75, visible_weight: float = 0.1) -> jax.Array:
  """Binary cross-entropy of the reconstruction, hidden pixels weighted 1 and visible
  ones ``visible_weight`` (mostly a prediction of what is hidden, as in a masked
  autoencoder); masks from :func:`patch_mask` with ``max_mask_ratio``."""
  mask = patch_mask(key, images.shape[0], max_mask_ratio)
  logits = model.reconstruct_logits(images, mask)
  bce = jnp.maximum(logits, 0) - logits * images + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  weight = mask + visible_weight * (1.0 - mask)
  return jnp.sum(bce * weight) / jnp.sum(weight)
