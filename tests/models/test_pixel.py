"""sdrift_jax.models.pixel: the convolutional generator, the masked-autoencoder encoder
and its masks."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from sdrift_jax.models import generators as models
from sdrift_jax.models import pixel as pixel_models


def _generator(**kw):
  return pixel_models.ConvGenerator(6, width=8, rngs=nnx.Rngs(0), **kw)


@pytest.mark.long
def test_generator_maps_noise_to_flat_images_in_unit_range():
  g = _generator(num_classes=10, embed_dim=4, omega_dim=4)
  eps = jax.random.normal(jax.random.key(1), (5, 6))
  x = g(eps, jnp.arange(5), jnp.full((5,), 2.0))
  assert x.shape == (5, 784)
  assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
  # the label and omega change the image
  assert not np.allclose(x, g(eps, jnp.arange(5) + 1, jnp.full((5,), 2.0)))
  assert not np.allclose(x, g(eps, jnp.arange(5), jnp.full((5,), 3.0)))


@pytest.mark.long
def test_generator_refuses_missing_conditioning():
  with pytest.raises(ValueError, match="pass labels"):
    _generator(num_classes=10)(jnp.zeros((2, 6)))
  with pytest.raises(ValueError, match="omega must be given exactly"):
    _generator()(jnp.zeros((2, 6)), None, jnp.ones((2,)))
  with pytest.raises(ValueError, match="multiple of 4"):
    pixel_models.ConvGenerator(6, width=6, rngs=nnx.Rngs(0))


@pytest.mark.long
def test_make_generator_builds_the_conv_kind_and_refuses_what_it_ignores():
  mc = ml_collections.ConfigDict(dict(kind="conv", noise_dim=6, width=8, activation="silu",
                                      embed_dim=4, omega_dim=0))
  g = models.make_generator(mc, 784, jax.random.key(0), num_classes=10)
  assert isinstance(g, pixel_models.ConvGenerator)
  with pytest.raises(ValueError, match="dimension 2"):
    models.make_generator(mc, 2, jax.random.key(0))
  mc.hidden = 32
  with pytest.raises(ValueError, match=r"\['hidden'\] do not apply to model.kind='conv'"):
    models.make_generator(mc, 784, jax.random.key(0))


@pytest.mark.long
def test_encoder_feature_maps_have_three_stages():
  enc = pixel_models.MaskedConvEncoder((4, 8, 16), rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  maps = enc.feature_maps(x)
  assert {k: v.shape for k, v in maps.items()} == {
      "s1": (3, 14, 14, 4), "s2": (3, 7, 7, 8), "s3": (3, 4, 4, 16)}
  # no mask is the all-visible mask
  full = enc.feature_maps(x, jnp.zeros_like(x))
  for k in maps:
    np.testing.assert_array_equal(maps[k], full[k])
  assert enc.reconstruct_logits(x, jnp.ones_like(x)).shape == (3, 28, 28, 1)


def test_patch_mask_hides_whole_patches_at_a_share_up_to_the_maximum():
  m = np.asarray(pixel_models.patch_mask(jax.random.key(0), 400, max_ratio=0.75))
  assert m.shape == (400, 28, 28, 1) and set(np.unique(m)) <= {0.0, 1.0}
  blocks = m[..., 0].reshape(400, 7, 4, 7, 4)
  # constant within each 4 x 4 patch
  assert np.all(blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4)))
  share = blocks[:, :, 0, :, 0].mean(axis=(1, 2))
  # uniform ratio on [0, 0.75]: mean 0.375 (sd of the mean ~0.011), nothing above ~0.75
  assert abs(share.mean() - 0.375) < 0.04
  assert share.max() <= 0.9 and share.min() < 0.05


@pytest.mark.long
def test_mae_loss_weights_hidden_pixels_and_trains():
  enc = pixel_models.MaskedConvEncoder((4, 8, 8), rngs=nnx.Rngs(0))
  graph, params = nnx.split(enc)
  x = (jax.random.uniform(jax.random.key(1), (16, 28, 28, 1)) > 0.7).astype(jnp.float32)
  loss = lambda p: pixel_models.mae_loss(nnx.merge(graph, p), x, jax.random.key(2))
  l0, g = jax.value_and_grad(loss)(params)
  assert np.isfinite(float(l0))
  p1 = jax.tree.map(lambda a, b: a - 0.05 * b, params, g)
  assert float(loss(p1)) < float(l0)
