"""Flax NNX generators, looked up by ``config.model.kind`` (:func:`make_generator`).

Models are built in NNX and trained functionally: ``nnx.split`` gives a static graph
definition and a pytree of parameters, so a train step is a pure function of arrays that
``jax.jit``, ``jax.vmap`` (seeds trained together) and sharding handle directly.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from sdrift_jax.models import layers as layers_lib

__all__ = ["check_model_config", "DEFAULT_INIT", "GENERATORS", "make_generator",
           "MLPGenerator", "MODEL_FIELDS", "ResidualMLPGenerator", "TORCH_LAYER_NORM_EPS"]

class MLPGenerator(nnx.Module):
  """``depth`` x (Linear(hidden) + activation), then Linear(out_dim).

  With ``num_classes`` set, a learned class embedding of size ``embed_dim`` is
  concatenated to the noise (the class-conditional generators of Sec. 5.3 and 5.4). With
  ``omega_dim > 0`` the guidance strength ``omega`` enters too, through
  ``Linear(1, omega_dim)``, SiLU, ``Linear(omega_dim, omega_dim)`` (the reference MNIST
  generator's conditioning). ``init='flax'`` (default) keeps Flax's initializers;
  ``'torch'`` initializes like PyTorch (linear layers uniform in ``+-1 / sqrt(fan_in)``,
  embeddings N(0, 1)), as the reference MNIST generator starts.
  """

  def __init__(self, noise_dim: int, out_dim: int, *, hidden: int = 256, depth: int = 3,
               activation: str = "relu", num_classes: Optional[int] = None,
               embed_dim: int = 32, omega_dim: int = 0, init: str = "flax",
               rngs: nnx.Rngs):
    self.act = layers_lib.activation(activation)
    if init == "torch":
      linear = lambda i, o: layers_lib.torch_like_linear(i, o, rngs)
      embed_init = jax.nn.initializers.normal(1.0)
    elif init == "flax":
      linear = lambda i, o: nnx.Linear(i, o, rngs=rngs)
      embed_init = None
    else:
      raise ValueError(f"unknown model.init {init!r}: expected 'torch' or 'flax'")
    kw = {} if embed_init is None else dict(embedding_init=embed_init)
    self.embed = nnx.Embed(num_classes, embed_dim, rngs=rngs, **kw) if num_classes else None
    self.omega_in = linear(1, omega_dim) if omega_dim else None
    self.omega_out = linear(omega_dim, omega_dim) if omega_dim else None
    width = noise_dim + (embed_dim if num_classes else 0) + omega_dim
    layers = []
    for _ in range(depth):
      layers.append(linear(width, hidden))
      width = hidden
    self.hidden = nnx.List(layers)
    self.out = linear(width, out_dim)

  def __call__(self, eps: jax.Array, labels: Optional[jax.Array] = None,
               omega: Optional[jax.Array] = None) -> jax.Array:
    """Maps noise ``[B, noise_dim]`` (and labels ``[B]``, ``omega [B]``) to samples
    ``[B, out_dim]``."""
    h = layers_lib.conditioned_input(self, eps, labels, omega)
    for layer in self.hidden:
      h = self.act(layer(h))
    return self.out(h)


#: PyTorch's ``nn.LayerNorm`` default (Flax NNX's is 1e-6).
TORCH_LAYER_NORM_EPS = 1e-5


class ResidualMLPGenerator(nnx.Module):
  """The reference code's toy generator (``toy/Gen_Modeling.py``), written for NNX.

  ``Linear(noise -> hidden)``, LayerNorm, SiLU; then ``blocks`` residual blocks
  ``h + res_scale * LN(W2 act(LN(W1 h)))`` with ``W1: hidden -> expansion * hidden``; then
  ``Linear(hidden -> out_dim)``. LayerNorms use PyTorch's epsilon, 1e-5.

  Args:
    noise_dim: input noise dimension.
    out_dim: output (data) dimension.
    hidden: residual stream width.
    blocks: number of residual blocks.
    expansion: width of a block's inner layer, in multiples of ``hidden``.
    layer_norm: ``False`` drops the LayerNorms.
    activation: a key of :data:`ACTIVATIONS`.
    init: ``'torch'`` (default) initializes like PyTorch, so that the initial output
      spread, which decides whether a baseline drift collapses, matches the reference
      runs; ``'flax'`` uses Flax's defaults.
    res_scale: multiplier of each block's residual branch (the reference runs use 0.9).
    out_init_std: if positive, the output layer's weights are drawn from ``N(0,
      out_init_std^2)`` and its bias is zero (the reference's ``--out-init-std``; 0.001
      starts every sample within a few hundredths of one point); 0 or ``None`` keeps the
      ``init`` default.
    rngs: the parameter key stream.
  """

  def __init__(self, noise_dim: int, out_dim: int, *, hidden: int = 256, blocks: int = 6,
               expansion: int = 2, layer_norm: bool = True, activation: str = "silu",
               init: str = "torch", res_scale: float = 1.0,
               out_init_std: Optional[float] = None, rngs: nnx.Rngs):
    self.act = layers_lib.activation(activation)
    if init == "torch":
      linear = lambda i, o: layers_lib.torch_like_linear(i, o, rngs)
    elif init == "flax":
      linear = lambda i, o: nnx.Linear(i, o, rngs=rngs)
    else:
      raise ValueError(f"unknown model.init {init!r}: expected 'torch' or 'flax'")
    if out_init_std is not None and out_init_std < 0:
      raise ValueError(f"model.out_init_std must be >= 0, got {out_init_std}")
    norm = ((lambda n: nnx.LayerNorm(n, epsilon=TORCH_LAYER_NORM_EPS, rngs=rngs))
            if layer_norm else (lambda n: None))
    wide = expansion * hidden
    self.res_scale = float(res_scale)
    self.inp = linear(noise_dim, hidden)
    self.inp_norm = norm(hidden)
    self.w1 = nnx.List([linear(hidden, wide) for _ in range(blocks)])
    self.n1 = nnx.List([norm(wide) for _ in range(blocks)]) if layer_norm else None
    self.w2 = nnx.List([linear(wide, hidden) for _ in range(blocks)])
    self.n2 = nnx.List([norm(hidden) for _ in range(blocks)]) if layer_norm else None
    if out_init_std:
      self.out = nnx.Linear(hidden, out_dim,
                            kernel_init=jax.nn.initializers.normal(float(out_init_std)),
                            bias_init=jax.nn.initializers.zeros, rngs=rngs)
    else:
      self.out = linear(hidden, out_dim)

  def __call__(self, eps: jax.Array, labels: Optional[jax.Array] = None) -> jax.Array:
    """Maps noise ``[B, noise_dim]`` to samples ``[B, out_dim]`` (``labels`` unused)."""
    ln = lambda norms, i, h: norms[i](h) if norms is not None else h
    h = self.inp(eps)
    h = self.act(self.inp_norm(h) if self.inp_norm is not None else h)
    for i in range(len(self.w1)):
      r = self.act(ln(self.n1, i, self.w1[i](h)))
      h = h + self.res_scale * ln(self.n2, i, self.w2[i](r))
    return self.out(h)


GENERATORS = ("mlp", "resmlp", "conv")
#: ``model.init`` when a config leaves it out, per kind: Flax's initializers for the MLP,
#: PyTorch's for the reference code's residual MLP (the conv generator has no choice).
DEFAULT_INIT = {"mlp": "flax", "resmlp": "torch"}
#: The fields of ``config.model`` each kind reads.
MODEL_FIELDS = {
    "mlp": {"kind", "noise_dim", "hidden", "depth", "activation", "embed_dim", "omega_dim",
            "init"},
    "resmlp": {"kind", "noise_dim", "hidden", "blocks", "expansion", "layer_norm",
               "activation", "init", "res_scale", "out_init_std"},
    "conv": {"kind", "noise_dim", "width", "activation", "embed_dim", "omega_dim"},
}
#: Fields a kind does not read but may hold at these values (configs that keep one model
#: block for several kinds): anything else is refused, not silently ignored.
_NEUTRAL = {"blocks": 0, "res_scale": 1.0, "out_init_std": 0.0, "omega_dim": 0}


def check_model_config(model_config) -> None:
  """Raises a ValueError naming the fields of ``config.model`` that its ``kind`` would
  ignore."""
  kind = model_config.get("kind")
  if kind not in MODEL_FIELDS:
    raise ValueError(f"unknown model.kind {kind!r}: expected one of {GENERATORS}")
  ignored = sorted(k for k in model_config.keys() if k not in MODEL_FIELDS[kind]
                   and not (k in _NEUTRAL and model_config[k] == _NEUTRAL[k]))
  if ignored:
    raise ValueError(f"config.model fields {ignored} do not apply to model.kind={kind!r} "
                     f"(its fields: {sorted(MODEL_FIELDS[kind])})")


def make_generator(model_config, out_dim: int, key: jax.Array,
                   num_classes: Optional[int] = None) -> nnx.Module:
  """Builds a generator from a config with fields ``kind``, ``noise_dim``, ``hidden``,
  ``depth`` (mlp) or ``blocks``, ``expansion``, ``layer_norm``, ``init``, ``res_scale``
  (default 1), ``out_init_std`` (default 0: the ``init`` default) (resmlp),
  ``activation`` and ``embed_dim``."""
  check_model_config(model_config)
  rngs = nnx.Rngs(params=key)
  kind = model_config.kind
  res_scale = float(model_config.get("res_scale", 1.0))
  out_init_std = float(model_config.get("out_init_std", 0.0) or 0.0)
  if kind == "mlp":
    return MLPGenerator(model_config.noise_dim, out_dim, hidden=model_config.hidden,
                        depth=model_config.depth, activation=model_config.activation,
                        num_classes=num_classes, embed_dim=model_config.get("embed_dim", 32),
                        omega_dim=int(model_config.get("omega_dim", 0)),
                        init=model_config.get("init", DEFAULT_INIT["mlp"]), rngs=rngs)
  if kind == "resmlp":
    if num_classes or model_config.get("omega_dim", 0):
      raise ValueError("model.kind='resmlp' is unconditional; use 'mlp' for class labels "
                       "and omega")
    return ResidualMLPGenerator(model_config.noise_dim, out_dim, hidden=model_config.hidden,
                                blocks=model_config.blocks,
                                expansion=model_config.get("expansion", 2),
                                layer_norm=model_config.get("layer_norm", True),
                                activation=model_config.activation,
                                init=model_config.get("init", DEFAULT_INIT["resmlp"]), res_scale=res_scale,
                                out_init_std=out_init_std, rngs=rngs)
  if kind == "conv":
    from sdrift_jax.models import pixel as pixel_models  # pylint: disable=g-import-not-at-top
    if out_dim != 28 * 28:
      raise ValueError(f"model.kind='conv' generates 28 x 28 images (dimension 784), "
                       f"but the data has dimension {out_dim}")
    return pixel_models.ConvGenerator(
        model_config.noise_dim, width=int(model_config.width),
        activation=model_config.activation, num_classes=num_classes,
        embed_dim=model_config.get("embed_dim", 32),
        omega_dim=int(model_config.get("omega_dim", 0)), rngs=rngs)
  raise AssertionError(kind)
