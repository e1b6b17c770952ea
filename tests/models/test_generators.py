"""sdrift_jax.models.generators: the reference codes' generators (residual MLP output init and
residual scale, torch-like MLP init) and make_generator's wiring."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from tests.helpers import load
from sdrift_jax.models import generators as models


def test_output_init_std_gives_small_weights_and_zero_bias():
  model = models.ResidualMLPGenerator(16, 2, hidden=256, blocks=6, res_scale=0.9,
                                      out_init_std=0.001, rngs=nnx.Rngs(0))
  w, b = np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])
  assert w.shape == (256, 2) and 0.0009 < w.std() < 0.0011 and abs(w.mean()) < 2e-4
  np.testing.assert_array_equal(b, 0.0)
  default = models.ResidualMLPGenerator(16, 2, hidden=256, rngs=nnx.Rngs(0))
  assert np.asarray(default.out.kernel[...]).std() > 0.02  # torch-like U(+-1/16)
  norms = [model.inp_norm, *model.n1, *model.n2]
  assert len(norms) == 13 and all(n.epsilon == 1e-5 for n in norms)


def forward64(model, eps):
  """The reference ResidualMLP.forward in float64 NumPy."""
  val = lambda p: np.asarray(p[...], np.float64)
  lin = lambda layer, h: h @ val(layer.kernel) + val(layer.bias)
  silu = lambda h: h / (1 + np.exp(-h))

  def ln(norm, h):
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-5) * val(norm.scale) + val(norm.bias)

  h = silu(ln(model.inp_norm, lin(model.inp, eps)))
  for w1, n1, w2, n2 in zip(model.w1, model.n1, model.w2, model.n2):
    h = h + model.res_scale * ln(n2, lin(w2, silu(ln(n1, lin(w1, h)))))
  return lin(model.out, h)


@pytest.mark.parametrize("res_scale", [0.9, 1.0, 0.3])
def test_residual_mlp_matches_the_reference_forward_pass(res_scale):
  model = models.ResidualMLPGenerator(3, 2, hidden=8, blocks=3, res_scale=res_scale,
                                      rngs=nnx.Rngs(1))
  eps = np.random.default_rng(0).normal(size=(7, 3))
  got = np.asarray(model(jnp.asarray(eps, jnp.float32)), np.float64)
  np.testing.assert_allclose(got, forward64(model, eps), rtol=1e-5, atol=1e-5)
  # The residual branch is what res_scale multiplies: against an unscaled forward pass.
  model.res_scale = 1.0
  if res_scale != 1.0:
    assert np.abs(got - forward64(model, eps)).max() > 1e-3


def test_make_generator_wires_res_scale_and_out_init_std():
  c = load("toy.py", "reference").model
  model = models.make_generator(c, 2, jax.random.key(0))
  assert isinstance(model, models.ResidualMLPGenerator) and model.res_scale == 0.9
  np.testing.assert_array_equal(np.asarray(model.out.bias[...]), 0.0)
  assert np.asarray(model.out.kernel[...]).std() < 0.0015
  mlp = ml_collections.ConfigDict(load("toy.py").model.to_dict())
  mlp.res_scale = 0.9
  with pytest.raises(ValueError, match=r"\['res_scale'\] do not apply to model.kind='mlp'"):
    models.make_generator(mlp, 2, jax.random.key(0))


def test_mlp_torch_init():
  m = models.MLPGenerator(6, 6, hidden=256, depth=3, num_classes=10, embed_dim=32,
                          omega_dim=32, init="torch", rngs=nnx.Rngs(0))
  emb = np.asarray(m.embed.embedding[...])
  assert abs(emb.std() - 1.0) < 0.1
  w = np.asarray(m.hidden[1].kernel[...])
  bound = 1 / np.sqrt(256)
  assert np.abs(w).max() <= bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
  assert np.abs(np.asarray(m.omega_in.kernel[...])).max() <= 1.0
  assert np.abs(np.asarray(m.omega_in.bias[...])).max() > 0.1  # uniform bias, not zeros
  with pytest.raises(ValueError, match="model.init"):
    models.MLPGenerator(6, 6, init="jax", rngs=nnx.Rngs(0))
