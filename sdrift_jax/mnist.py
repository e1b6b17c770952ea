"""MNIST in a 6-d autoencoder latent space (paper Sec. 5.3, Tables 1 and 3).

Pipeline: load digits -> train (or load cached) autoencoder and classifier -> encode ->
train class-conditional generators in latent space, one per (kernel, tau, method) of the
sweep, with all ten classes in every step and the drift computed per class -> evaluate
per-class W2^2 against held-out latents and class accuracy of decoded samples -> write a
table in the layout of Tables 1 and 3 and a 10 x 8 grid of decoded samples per run.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
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

from sdrift_jax import checkpoint as checkpoint_lib
from sdrift_jax import models
from sdrift_jax import train as train_lib
from sdrift_jax import workdir as workdir_lib
from sdrift_jax.data import mnist as mnist_data

log = logging.getLogger("sdrift_jax")

METHODS = ("baseline", "sinkhorn")
KERNELS = {"gaussian": "sqeuclidean", "laplacian": "euclidean"}


def to_float(images: np.ndarray) -> jax.Array:
  """uint8 ``[N, 28, 28]`` -> float32 ``[N, 28, 28, 1]`` in [0, 1]."""
  return jnp.asarray(images, jnp.float32)[..., None] / 255.0


def fit(model: nnx.Module, loss_fn, inputs, targets, *, epochs: int, batch_size: int,
        learning_rate: float, key: jax.Array, name: str,
        checkpoint_dir: Optional[str] = None):
  """Trains ``model`` with Adam on ``loss_fn(model, x, y)``.

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
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(lambda p: loss_fn(nnx.merge(graphdef, p), x, y))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  t0 = time.perf_counter()
  for e in range(start, epochs):
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n))
    losses = []
    for b in range(per_epoch):
      idx = order[b * batch_size:(b + 1) * batch_size]
      params, opt_state, loss = step(params, opt_state, inputs[idx], targets[idx])
      losses.append(loss)
    if (e + 1) % max(1, epochs // 5) == 0 or e + 1 == epochs:
      log.info("%s epoch %d/%d  loss %.4f  (%.0fs)", name, e + 1, epochs,
               float(np.mean(jax.device_get(losses))), time.perf_counter() - t0)
    if ckpt is not None:
      ckpt.save(e + 1, dict(params=params, opt_state=opt_state))
  if ckpt is not None:
    ckpt.close()
  return graphdef, params


def _ae_loss(model, x, _):
  logits = model(x)
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, x))


def _clf_loss(model, x, y):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model(x), y))


def _cache_directory(kind: str, config, data, cache_dir: str) -> str:
  settings = config.autoencoder if kind == "autoencoder" else config.classifier
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
  """Trains the autoencoder or classifier once per (data, settings); later calls load it.

  Training saves its progress per epoch in ``<cache>/<kind>-<tag>-progress`` (held with
  the workdir lock, so two runs sharing a cache do not train into it together); an
  interrupted fit resumes there, and the directory is removed once the model is cached.
  The training time is kept beside it (``<kind>-<tag>.seconds.json``) for the tables.
  """
  settings = config.autoencoder if kind == "autoencoder" else config.classifier
  directory = _cache_directory(kind, config, data, cache_dir)
  # A fixed stream per kind (Python's hash() of a string changes from process to process).
  rngs = nnx.Rngs(params=jax.random.fold_in(jax.random.key(int(config.seed)),
                                            ("autoencoder", "classifier").index(kind)))
  model = (models.ConvAutoencoder(int(settings.latent_dim), rngs=rngs) if kind == "autoencoder"
           else models.SmallCNN(rngs=rngs))
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
      graphdef, params = fit(model, _ae_loss if kind == "autoencoder" else _clf_loss, x, y,
                             epochs=int(settings.epochs), batch_size=int(settings.batch_size),
                             learning_rate=float(settings.learning_rate),
                             key=jax.random.key(int(config.seed) + 1), name=kind,
                             checkpoint_dir=progress)
      ckpt.save(0, params)
      ckpt.wait()
      if jax.process_index() == 0:
        # Time of the epochs before an interrupt is lost; this invocation's is counted.
        workdir_lib.atomic_write_json(directory + ".seconds.json",
                                      dict(fit_seconds=time.perf_counter() - t0))
        shutil.rmtree(progress, ignore_errors=True)
  ckpt.close()
  return graphdef, params


def _batched(fn, x, batch: int = 1000):
  """Applies a jitted ``fn`` to ``x`` in slices of ``batch`` rows."""
  return jnp.concatenate([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


class LatentSpace:
  """The trained autoencoder and classifier, with jitted encode / decode / classify."""

  def __init__(self, ae, clf):
    ae_graph, ae_params = ae
    clf_graph, clf_params = clf
    self.encode = jax.jit(lambda x: nnx.merge(ae_graph, ae_params).encode(x))
    self.decode = jax.jit(lambda z: nnx.merge(ae_graph, ae_params).decode(z))
    self.classify = jax.jit(
        lambda z: jnp.argmax(nnx.merge(clf_graph, clf_params)(
            nnx.merge(ae_graph, ae_params).decode(z)), axis=-1))
    self.classify_images = jax.jit(
        lambda x: jnp.argmax(nnx.merge(clf_graph, clf_params)(x), axis=-1))

  def accuracy(self, samples: np.ndarray) -> dict:
    """``samples [S, C, n, d]`` -> per-seed accuracy of the decoded samples (in %)."""
    S, C, n, d = samples.shape
    pred = np.asarray(_batched(self.classify, jnp.asarray(samples.reshape(-1, d))))
    correct = pred.reshape(S, C, n) == np.arange(C)[None, :, None]
    return dict(accuracy=(100.0 * correct.mean(axis=(1, 2))).tolist(),
                accuracy_per_class=(100.0 * correct.mean(axis=2)).tolist())


def make_problem(latents_train, labels_train, latents_test, labels_test, space: LatentSpace,
                 name: str = "mnist") -> train_lib.Problem:
  """Class-conditional latent problem: positives drawn per class with replacement."""
  classes = range(10)
  return train_lib.class_conditional_problem(
      [np.asarray(latents_train[labels_train == c]) for c in classes],
      [np.asarray(latents_test[labels_test == c]) for c in classes],
      name=name, extra_eval=space.accuracy)


def setting_config(config, kernel: str, tau: float, method: str):
  """The run config of one sweep setting."""
  if kernel not in KERNELS:
    raise ValueError(f"unknown kernel {kernel!r} in config.sweep.kernels: expected "
                     f"{tuple(KERNELS)}")
  sub = train_lib.method_config(config, method, METHODS)
  sub.drift.cost = KERNELS[kernel]
  sub.drift.tau = float(tau)
  return sub


def save_grid(space: LatentSpace, samples: np.ndarray, path: str, per_class: int = 8):
  """10 x ``per_class`` grid of decoded samples (rows: classes) as a PNG."""
  from sdrift_jax import plotting
  z = samples[:, :per_class].reshape(-1, samples.shape[-1])
  images = np.asarray(space.decode(jnp.asarray(z)))[..., 0]
  images = images.reshape(samples.shape[0], per_class, 28, 28)
  grid = images.transpose(0, 2, 1, 3).reshape(samples.shape[0] * 28, per_class * 28)
  plotting.save_image(grid, path)


def run_mnist(config, workdir: str) -> list[dict]:
  """Runs the MNIST pipeline and sweep; returns one summary per setting."""
  s = config.sweep
  grid = list(itertools.product(s.kernels, s.taus, s.methods))
  for kernel, tau, method in grid:  # fail fast on a bad setting, before any training
    train_lib.check_drift_config(setting_config(config, kernel, tau, method), 6, True)
  train_lib.check_train_config(config.train)
  train_lib.make_mesh(config.get("parallel"), 10, int(config.train.batch_size))
  os.makedirs(workdir, exist_ok=True)
  cache_dir = config.mnist.cache_dir or os.path.join(workdir, "cache")
  t_start = time.perf_counter()
  data = mnist_data.load(config.data, cache_dir)
  if config.data.max_train:
    data = data._replace(train_images=data.train_images[: config.data.max_train],
                         train_labels=data.train_labels[: config.data.max_train])
  log.info("MNIST: %s, %d train / %d test images", data.source, len(data.train_labels),
           len(data.test_labels))
  t_models = time.perf_counter()
  ae = cached_model("autoencoder", config, data, cache_dir)
  clf = cached_model("classifier", config, data, cache_dir)
  t_models = time.perf_counter() - t_models
  fit_seconds = sum(cached_fit_seconds(k, config, data, cache_dir)
                    for k in ("autoencoder", "classifier"))
  space = LatentSpace(ae, clf)
  x_test = to_float(data.test_images)
  clf_acc = 100.0 * float(np.mean(np.asarray(_batched(space.classify_images, x_test))
                                  == data.test_labels))
  z_train = np.asarray(_batched(space.encode, to_float(data.train_images)))
  z_test = np.asarray(_batched(space.encode, x_test))
  recon_acc = 100.0 * float(np.mean(np.asarray(_batched(space.classify, jnp.asarray(z_test)))
                                    == data.test_labels))
  log.info("classifier test accuracy %.2f%% on images, %.2f%% on autoencoded images",
           clf_acc, recon_acc)
  problem = make_problem(z_train, data.train_labels, z_test, data.test_labels, space)
  setup_seconds = time.perf_counter() - t_start
  results = []
  for i, (kernel, tau, method) in enumerate(grid):
    sub = setting_config(config, kernel, tau, method)
    run_dir = os.path.join(workdir, kernel, f"tau{tau:g}", method)
    log.info("MNIST run %d/%d: %s kernel, tau=%g, %s", i + 1, len(grid), kernel, tau, method)
    out = train_lib.train_generator(sub, run_dir, problem)
    ev = out["last_eval"] or [r for r in train_lib.read_metrics(run_dir) if "w2" in r][-1]
    grid_path = os.path.join(run_dir, "samples.png")
    if jax.process_index() == 0:
      save_grid(space, out["samples"][0], grid_path)
    seconds = train_lib.run_seconds(train_lib.read_metrics(run_dir), int(sub.train.log_every))
    results.append(dict(kernel=kernel, tau=float(tau), method=method, emd=ev["w2"],
                        accuracy=ev["accuracy"], seconds=seconds, grid=grid_path))
  # The total survives reruns: the helper networks' recorded training time and the
  # generators' time from their metrics (all invocations), plus this invocation's data
  # loading and encoding.
  generator_seconds = float(sum(r["seconds"] for r in results))
  summary = dict(data=data.source, n_train=len(data.train_labels), n_test=len(data.test_labels),
                 classifier_accuracy=clf_acc, autoencoded_accuracy=recon_acc,
                 setup_seconds=setup_seconds, fit_seconds=fit_seconds,
                 generator_seconds=generator_seconds,
                 total_seconds=setup_seconds - t_models + fit_seconds + generator_seconds,
                 invocation_seconds=time.perf_counter() - t_start)
  if jax.process_index() == 0:
    table = write_table(workdir, results, summary, config)
    log.info("MNIST table: %s", table)
    log.info("sample grids: %s", ", ".join(r["grid"] for r in results))
  return results


def _objective_line(config) -> str:
  """What the table's tau means: the loss the generators were trained with."""
  loss = config.get("loss")
  if loss is None or loss.objective == "drift_field":
    return ("Loss: the paper's eq. 7 with drift_field; tau absolute, in units of the "
            "cost (squared distance for the Gaussian kernel) in the 6-d latent space.")
  g = config.guidance
  cfg = (f"CFG with {g.num_uncond} unconditional negatives per class, omega ~ "
         f"omega^-{g.omega_exponent:g} on [{g.omega_min:g}, {g.omega_max:g}], samples "
         f"at omega = {g.eval_omega:g}" if g.num_uncond else "no CFG")
  ema = config.train.get("ema_decay", 0.0)
  return ("Loss: the reference codes' feature-drift loss (sdrift_jax.loss); tau relative "
          "to the batch's mean distance" + ("" if loss.feature_scale else " (raw units)")
          + f"; {cfg}; " + (f"EMA {ema:g} (evaluated)" if ema else "no EMA") + "; "
          f"baseline {config.baseline.get('form', 'joint')} "
          f"{config.baseline.normalization}, Sinkhorn split T = {config.drift.T}.")


def write_table(workdir, results, summary, config) -> str:
  """``table.md`` in the layout of Tables 1 and 3, and ``results.json``."""
  def ms(v, fmt):
    v = np.asarray(v, np.float64)
    return (fmt.format(v.mean()) if len(v) == 1
            else f"{fmt.format(v.mean())} ± {fmt.format(v.std())}")
  lines = [
      f"MNIST, {summary['data']}: {summary['n_train']} train / {summary['n_test']} held-out "
      f"images. Classifier test accuracy {summary['classifier_accuracy']:.2f}% "
      f"({summary['autoencoded_accuracy']:.2f}% on autoencoded test images). "
      f"{config.train.steps} generator steps, {config.train.batch_size} per class, "
      f"{config.train.num_seeds} seed(s); total {summary['total_seconds']:.0f} s "
      f"(autoencoder and classifier {summary['fit_seconds']:.0f} s, generators "
      f"{summary['generator_seconds']:.0f} s, over all invocations).", "",
      _objective_line(config), "",
      "EMD: per-class W2^2 in latent space (exact OT, 1000 generated vs the held-out "
      "latents of the class), averaged over classes. Acc: class accuracy (%) of 1000 "
      "decoded samples per class.", "",
      "| kernel | tau | baseline EMD | Sinkhorn EMD | baseline Acc | Sinkhorn Acc |",
      "|---|---:|---:|---:|---:|---:|"]
  keyed = {(r["kernel"], r["tau"], r["method"]): r for r in results}
  for kernel, tau in sorted({(r["kernel"], r["tau"]) for r in results}):
    cells = []
    for field, fmt in (("emd", "{:.2f}"), ("accuracy", "{:.1f}")):
      for method in METHODS:
        r = keyed.get((kernel, tau, method))
        cells.append(ms(r[field], fmt) if r else "-")
    lines.append(f"| {kernel} | {tau:g} | " + " | ".join(cells) + " |")
  return train_lib.write_report(workdir, lines, dict(summary=summary, runs=results))
