"""Flax NNX models: the generators, and the MNIST autoencoder and classifier (trained and
cached by ``experiments/mnist_models.py``).

Models are built in NNX and trained functionally: ``nnx.split`` gives a static graph
definition and a pytree of parameters, so a train step is a pure function of arrays that
``jax.jit``, ``jax.vmap`` (seeds trained together) and sharding handle directly.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {"relu": jax.nn.relu, "silu": jax.nn.silu, "gelu": jax.nn.gelu}


def _activation(name: str):
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}: expected one of {tuple(ACTIVATIONS)}")
  return ACTIVATIONS[name]


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
    self.act = _activation(activation)
    if init == "torch":
      linear = lambda i, o: _torch_like_linear(i, o, rngs)
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
    h = conditioned_input(self, eps, labels, omega)
    for layer in self.hidden:
      h = self.act(layer(h))
    return self.out(h)


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


def _torch_like_linear(fan_in: int, fan_out: int, rngs: nnx.Rngs) -> nnx.Linear:
  """Linear layer initialized like PyTorch's default: weights and biases uniform in
  ``+-1 / sqrt(fan_in)`` (a third of the variance of Flax's default lecun-normal)."""
  bound = 1.0 / float(fan_in) ** 0.5
  init = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
  return nnx.Linear(fan_in, fan_out, kernel_init=init, bias_init=init, rngs=rngs)


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
    self.act = _activation(activation)
    if init == "torch":
      linear = lambda i, o: _torch_like_linear(i, o, rngs)
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
                        init=model_config.get("init", "flax"), rngs=rngs)
  if kind == "resmlp":
    if num_classes or model_config.get("omega_dim", 0):
      raise ValueError("model.kind='resmlp' is unconditional; use 'mlp' for class labels "
                       "and omega")
    return ResidualMLPGenerator(model_config.noise_dim, out_dim, hidden=model_config.hidden,
                                blocks=model_config.blocks,
                                expansion=model_config.get("expansion", 2),
                                layer_norm=model_config.get("layer_norm", True),
                                activation=model_config.activation,
                                init=model_config.get("init", "torch"), res_scale=res_scale,
                                out_init_std=out_init_std, rngs=rngs)
  if kind == "conv":
    from sdrift_jax import pixel_models  # pylint: disable=g-import-not-at-top
    if out_dim != 28 * 28:
      raise ValueError(f"model.kind='conv' generates 28 x 28 images (dimension 784), "
                       f"but the data has dimension {out_dim}")
    return pixel_models.ConvGenerator(
        model_config.noise_dim, width=int(model_config.width),
        activation=model_config.activation, num_classes=num_classes,
        embed_dim=model_config.get("embed_dim", 32),
        omega_dim=int(model_config.get("omega_dim", 0)), rngs=rngs)
  raise AssertionError(kind)


def depth_to_space(h: jax.Array, scale: int = 2) -> jax.Array:
  """``[B, H, W, s*s*C] -> [B, s*H, s*W, C]`` (pixel shuffle)."""
  b, height, width, c = h.shape
  h = h.reshape(b, height, width, scale, scale, c // (scale * scale))
  return h.transpose(0, 1, 3, 2, 4, 5).reshape(b, height * scale, width * scale, -1)


class SubPixelUpsample(nnx.Module):
  """Stride-2 upsampling: a 3x3 conv to ``4 * out`` channels, then depth-to-space.

  Used instead of ``nnx.ConvTranspose``, which maps the same shapes but ran 1.8 times
  slower on the CPU (64 -> 32 channels at 7 x 7, batch 256, forward and backward: 142 ms
  against 77 ms; ``python -m benchmarks.mnist_conv_cpu``).
  """

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_features, 4 * out_features, kernel_size=(3, 3), padding="SAME",
                         rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    return depth_to_space(self.conv(h))


class ConvAutoencoder(nnx.Module):
  """MNIST autoencoder of Sec. 5.3: conv 1-32-64 (stride 2), FC 3136-128-latent, mirrored
  decoder (sub-pixel upsampling 64-32-1) with a sigmoid output. Images are
  ``[B, 28, 28, 1]`` in [0, 1]."""

  def __init__(self, latent_dim: int = 6, *, rngs: nnx.Rngs):
    conv = dict(kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
    self.enc1 = nnx.Conv(1, 32, **conv)
    self.enc2 = nnx.Conv(32, 64, **conv)
    self.enc3 = nnx.Linear(7 * 7 * 64, 128, rngs=rngs)
    self.enc4 = nnx.Linear(128, latent_dim, rngs=rngs)
    self.dec1 = nnx.Linear(latent_dim, 128, rngs=rngs)
    self.dec2 = nnx.Linear(128, 7 * 7 * 64, rngs=rngs)
    self.dec3 = SubPixelUpsample(64, 32, rngs=rngs)
    self.dec4 = SubPixelUpsample(32, 1, rngs=rngs)

  def encode(self, images: jax.Array) -> jax.Array:
    h = jax.nn.relu(self.enc1(images))
    h = jax.nn.relu(self.enc2(h))
    h = jax.nn.relu(self.enc3(h.reshape(h.shape[0], -1)))
    return self.enc4(h)

  def decode_logits(self, z: jax.Array) -> jax.Array:
    h = jax.nn.relu(self.dec1(z))
    h = jax.nn.relu(self.dec2(h)).reshape(z.shape[0], 7, 7, 64)
    h = jax.nn.relu(self.dec3(h))
    return self.dec4(h)

  def decode(self, z: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(self.decode_logits(z))

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.decode_logits(self.encode(images))


class SmallCNN(nnx.Module):
  """Digit classifier for the class-accuracy metric: two conv + pool, FC 128, 10 logits."""

  def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    self.fc1 = nnx.Linear(7 * 7 * 64, 128, rngs=rngs)
    self.fc2 = nnx.Linear(128, num_classes, rngs=rngs)

  def features(self, images: jax.Array) -> jax.Array:
    """The 128-d penultimate activations (the space of its Frechet distance)."""
    pool = lambda h: nnx.max_pool(h, window_shape=(2, 2), strides=(2, 2))
    h = pool(jax.nn.relu(self.conv1(images)))
    h = pool(jax.nn.relu(self.conv2(h)))
    return jax.nn.relu(self.fc1(h.reshape(h.shape[0], -1)))

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.fc2(self.features(images))
