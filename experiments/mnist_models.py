"""The MNIST experiment's helper networks: the convolutional autoencoder whose latent
space the generators live in and the classifier that scores their decoded samples, each
trained once per (data, settings) and cached, resumable per epoch."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sdrift_jax.training import checkpoint as checkpoint_lib
from sdrift_jax.models import layers
from sdrift_jax.models import pixel as pixel_models
from sdrift_jax.training import workdir as workdir_lib
from experiments.data import mnist as mnist_data

log = logging.getLogger("sdrift_jax")



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
    self.dec3 = layers.SubPixelUpsample(64, 32, rngs=rngs)
    self.dec4 = layers.SubPixelUpsample(32, 1, rngs=rngs)

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


def to_float(images: np.ndarray) -> jax.Array:
  """uint8 ``[N, 28, 28]`` -> float32 ``[N, 28, 28, 1]`` in [0, 1]."""
  return jnp.asarray(images, jnp.float32)[..., None] / 255.0


def fit(model: nnx.Module, loss_fn, inputs, targets, *, epochs: int, batch_size: int,
        learning_rate: float, key: jax.Array, name: str,
        checkpoint_dir: Optional[str] = None):
  """Trains ``model`` with Adam on ``loss_fn(model, x, y, key)`` (``key``: a fresh random
  key per batch, for losses that draw, such as the masked autoencoder's masks).

  One jitted step per batch, driven from Python: on XLA's CPU backend these convolutions
  ran 8 times slower inside ``lax.scan`` than as a jitted step (1.9 s against 0.23 s per
  batch of 256, ``python -m benchmarks.mnist_conv_cpu``); a Python loop costs nothing here.

  With ``checkpoint_dir`` the parameters and optimizer state are saved after every epoch
  and a later call resumes after the last saved epoch; epoch ``e`` shuffles with
  ``fold_in(key, e)``, so an interrupted and resumed fit equals an uninterrupted one.

  Returns:
    ``(graphdef, params)``.
  """
  graphdef, params = nnx.split(model)
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)
  ckpt, start = None, 0
  if checkpoint_dir:
    ckpt = checkpoint_lib.Checkpointer(checkpoint_dir, max_to_keep=2)
    try:
      step, restored = ckpt.restore_latest(dict(params=params, opt_state=opt_state))
    except checkpoint_lib.CheckpointError as e:
      # Progress of a cache, set aside as damaged: nothing is lost by starting over.
      log.warning("%s: %s; starting the fit over", name, e)
      step = None
    if step is not None:
      params, opt_state, start = restored["params"], restored["opt_state"], int(step)
      log.info("%s: resumed after epoch %d/%d from %s", name, start, epochs, checkpoint_dir)
  n = inputs.shape[0]
  per_epoch = n // batch_size
  if per_epoch < 1:
    raise ValueError(f"{name}: {n} training images, fewer than one batch of {batch_size}")

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, x, y, k):
    loss, grads = jax.value_and_grad(lambda p: loss_fn(nnx.merge(graphdef, p), x, y, k))(
        params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  t0 = time.perf_counter()
  for e in range(start, epochs):
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n))
    losses = []
    for b in range(per_epoch):
      idx = order[b * batch_size:(b + 1) * batch_size]
      params, opt_state, loss = step(params, opt_state, inputs[idx], targets[idx],
                                     jax.random.fold_in(jax.random.fold_in(key, e), b + 1))
      losses.append(loss)
    if (e + 1) % max(1, epochs // 5) == 0 or e + 1 == epochs:
      log.info("%s epoch %d/%d  loss %.4f  (%.0fs)", name, e + 1, epochs,
               float(np.mean(jax.device_get(losses))), time.perf_counter() - t0)
    if ckpt is not None:
      ckpt.save(e + 1, dict(params=params, opt_state=opt_state))
  if ckpt is not None:
    ckpt.close()
  return graphdef, params


def ae_loss(model, x, _, key=None):
  """Binary cross-entropy of the autoencoder's reconstruction logits against ``x``."""
  del key
  logits = model(x)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, x))


def classifier_loss(model, x, y, key=None):
  """Softmax cross-entropy of the classifier's logits against the labels ``y``."""
  del key
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model(x), y))


def mae_loss(settings):
  """The masked autoencoder's loss (:func:`sdrift_jax.models.pixel.mae_loss`) with the
  masking settings of ``config.encoder``."""
  ratio, weight = float(settings.max_mask_ratio), float(settings.visible_weight)
  if not 0.0 < ratio <= 1.0 or weight < 0.0:
    raise ValueError("config.encoder needs 0 < max_mask_ratio <= 1 and visible_weight "
                     f">= 0, got {ratio} and {weight}")

  def loss(model, x, _, key):
    return pixel_models.mae_loss(model, x, key, max_mask_ratio=ratio, visible_weight=weight)
  return loss


#: The cached helper networks: kind -> (its config block, builder, loss of the settings).
#: The kind's position is its random stream, so a kind added at the end changes no
#: other's weights. The settings (the whole config block) are the cache key.
KINDS = {
    "autoencoder": ("autoencoder",
                    lambda s, rngs: ConvAutoencoder(int(s.latent_dim), rngs=rngs),
                    lambda s: ae_loss),
    "classifier": ("classifier", lambda s, rngs: SmallCNN(rngs=rngs),
                   lambda s: classifier_loss),
    "encoder": ("encoder",
                lambda s, rngs: pixel_models.MaskedConvEncoder(tuple(s.widths), rngs=rngs),
                mae_loss),
}


def _settings(kind: str, config):
  if kind not in KINDS:
    raise ValueError(f"unknown helper network {kind!r}: expected one of {tuple(KINDS)}")
  return config[KINDS[kind][0]]


def _cache_directory(kind: str, config, data, cache_dir: str) -> str:
  settings = _settings(kind, config)
  key_text = json.dumps(dict(kind=kind, data=mnist_data.fingerprint(data),
                             settings=settings.to_dict(), seed=int(config.seed)), sort_keys=True)
  tag = hashlib.sha1(key_text.encode()).hexdigest()[:12]
  return os.path.join(cache_dir, f"{kind}-{tag}")


def cached_fit_seconds(kind: str, config, data, cache_dir: str) -> float:
  """Wall time the cached model took to train (over all its resumes); 0 if unrecorded."""
  path = _cache_directory(kind, config, data, cache_dir) + ".seconds.json"
  try:
    with open(path) as f:
      return float(json.load(f)["fit_seconds"])
  except (OSError, ValueError, KeyError):
    return 0.0


def cached_model(kind: str, config, data, cache_dir: str):
  """Trains a helper network of :data:`KINDS` (the autoencoder, the classifier, the
  masked-autoencoder feature encoder) once per (data, settings); later calls load it.

  Training saves its progress per epoch in ``<cache>/<kind>-<tag>-progress`` (held with
  the workdir lock, so two runs sharing a cache do not train into it together); an
  interrupted fit resumes there, and the directory is removed once the model is cached.
  The training time is kept beside it (``<kind>-<tag>.seconds.json``) for the tables.
  """
  settings = _settings(kind, config)
  directory = _cache_directory(kind, config, data, cache_dir)
  # A fixed stream per kind (Python's hash() of a string changes from process to process).
  rngs = nnx.Rngs(params=jax.random.fold_in(jax.random.key(int(config.seed)),
                                            list(KINDS).index(kind)))
  _, build, loss_of = KINDS[kind]
  model, loss_fn = build(settings, rngs), loss_of(settings)
  ckpt = checkpoint_lib.Checkpointer(directory, max_to_keep=1)
  graphdef, params = nnx.split(model)
  try:
    step, params = ckpt.restore_latest(params)
  except checkpoint_lib.CheckpointError as e:
    log.warning("cached %s: %s; training it again", kind, e)
    step = None
  if step is not None:
    log.info("loaded cached %s from %s", kind, directory)
  else:
    progress = directory + "-progress"
    with workdir_lib.hold(progress, enabled=jax.process_index() == 0):
      t0 = time.perf_counter()
      x = to_float(data.train_images)
      y = jnp.asarray(data.train_labels)
      graphdef, params = fit(model, loss_fn, x, y,
                             epochs=int(settings.epochs), batch_size=int(settings.batch_size),
                             learning_rate=float(settings.learning_rate),
                             key=jax.random.key(int(config.seed) + 1), name=kind,
                             checkpoint_dir=progress)
      ckpt.save(0, params)
      ckpt.wait()
      # Read back as a later run loads them: the programs that take these parameters
      # are then the same in both runs (a fitted tree differs from a restored one in its
      # arrays' attributes), so the second run finds them in JAX's persistent cache.
      params = ckpt.restore(0, params)
      if jax.process_index() == 0:
        # Time of the epochs before an interrupt is lost; this invocation's is counted.
        workdir_lib.atomic_write_json(directory + ".seconds.json",
                                      dict(fit_seconds=time.perf_counter() - t0))
        shutil.rmtree(progress, ignore_errors=True)
  ckpt.close()
  return graphdef, params


def digit_grid(samples: np.ndarray, per_class: int = 8) -> np.ndarray:
  """``[C, n, 784]`` images (flat or ``28 x 28 (x 1)``) -> ``[28 C, 28 per_class]``: row
  ``c`` holds the first ``per_class`` images of class ``c``."""
  x = np.asarray(samples)[:, :per_class].reshape(samples.shape[0], per_class, 28, 28)
  return x.transpose(0, 2, 1, 3).reshape(samples.shape[0] * 28, per_class * 28)


def batched(fn, x, batch: int = 1000):
  """Applies a jitted ``fn`` to ``x`` in slices of ``batch`` rows."""
  return jnp.concatenate([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


class LatentSpace:
  """The trained autoencoder and classifier, with jitted encode / decode / classify.

  The parameters are arguments of the compiled functions, not constants baked into them
  (XLA would otherwise copy and constant-fold every weight into each program).
  """

  def __init__(self, ae, clf):
    ae_graph, ae_params = ae
    clf_graph, clf_params = clf

    def decode(p, z):
      return nnx.merge(ae_graph, p).decode(z)

    def classify(p, x):
      return jnp.argmax(nnx.merge(clf_graph, p)(x), axis=-1)

    encode = jax.jit(lambda p, x: nnx.merge(ae_graph, p).encode(x))
    decode_jit = jax.jit(decode)
    classify_latents = jax.jit(lambda pa, pc, z: classify(pc, decode(pa, z)))
    classify_images = jax.jit(classify)
    self.encode = functools.partial(encode, ae_params)
    self.decode = functools.partial(decode_jit, ae_params)
    self.classify = functools.partial(classify_latents, ae_params, clf_params)
    self.classify_images = functools.partial(classify_images, clf_params)

  def classify_latents(self, z: np.ndarray) -> np.ndarray:
    """``[k, d]`` latents -> ``[k]`` labels of their decoded images."""
    return np.asarray(batched(self.classify, jnp.asarray(z)))

  def save_grid(self, samples: np.ndarray, path: str, per_class: int = 8):
    """``samples [C, n, d]`` -> a ``C x per_class`` grid of decoded digits (rows: classes)
    as a PNG."""
    from experiments import plotting  # pylint: disable=g-import-not-at-top
    z = samples[:, :per_class].reshape(-1, samples.shape[-1])
    images = np.asarray(self.decode(jnp.asarray(z)))
    plotting.save_image(digit_grid(images.reshape(samples.shape[0], per_class, -1)), path)
