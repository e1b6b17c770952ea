"""One-step MNIST pixel generation through a frozen feature encoder.

Pipeline: load digits -> train (or load cached) a masked-autoencoder feature encoder
(:class:`sdrift_jax.models.pixel.MaskedConvEncoder`) and the MNIST classifier
(:mod:`experiments.mnist_models`) -> train class-conditional convolutional generators
(``noise, class, omega -> 28 x 28``), one per (tau, method) of the sweep, by the sum over
the encoder's feature sets (Deng et al., App. A.5; :mod:`sdrift_jax.drift.feature_sets`) of the
feature-drift loss, gradients flowing through the frozen encoder -> evaluate against the
held-out digits: a Frechet distance in the classifier's feature space (not Inception FID),
class accuracy, per-class k-NN precision and recall -> ``table.md``, a 10 x 8 sample grid
per run and ``grids.png`` with every run side by side.
"""
from __future__ import annotations

import functools
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import experiments
from experiments import mnist_models
from experiments import sweep
from experiments import tables
from sdrift_jax.drift import feature_sets as feature_sets_lib
from sdrift_jax import training
from sdrift_jax.training import bank as bank_lib
from experiments.data import mnist as mnist_data
from sdrift_jax.training import evaluators
from sdrift_jax.training import mesh as mesh_lib
from sdrift_jax.training import writers

log = logging.getLogger("sdrift_jax")

AXES = (sweep.tau_axis(), sweep.method_axis())
STAGES = ("s1", "s2", "s3")


COLUMNS = (tables.Column("tau", lambda row: sweep.tau_text(row["tau"]), "---:"),) + tuple(
    tables.metric_column(f"{name} {label}", key, fmt, method)
    for method, name in (("baseline", "baseline"), ("sinkhorn", "Sinkhorn"))
    for label, key, fmt in (("FD", "fd", "{:.1f}"), ("FD/class", "fd_per_class_mean", "{:.1f}"),
                            ("Acc", "accuracy", "{:.1f}"),
                            ("Prec", "precision", "{:.3f}"), ("Rec", "recall", "{:.3f}"),
                            ("steps/s", "steps_per_s", "{:.2f}")))


def check_features_config(fc) -> None:
  """Raises a ValueError naming the bad field of ``config.features``."""
  bad = [s for s in fc.loc_stages if s not in STAGES]
  if bad or len(set(fc.loc_stages)) != len(fc.loc_stages):
    raise ValueError(f"config.features.loc_stages must be distinct names of {STAGES}, "
                     f"got {tuple(fc.loc_stages)}")
  if any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in fc.patch_sizes):
    raise ValueError(f"config.features.patch_sizes must be positive integers, got "
                     f"{tuple(fc.patch_sizes)}")
  for name in ("global_stats", "input_rms"):
    if not isinstance(fc[name], bool):
      raise ValueError(f"config.features.{name} must be a bool, got {fc[name]!r}")


def make_feature_fn(encoder_graph, fc):
  """``(encoder_params, x [n, 784]) -> {name: [n, L, C]}``: the encoder's feature maps
  of the images ``x`` (flat, in [0, 1]) as Deng et al.'s feature sets; per-location
  vectors of the stages in ``fc.loc_stages``, global and patch statistics of every
  stage, and the input's RMS."""
  check_features_config(fc)

  def features(params, x):
    images = x.reshape(-1, 28, 28, 1)
    maps = nnx.merge(encoder_graph, params).feature_maps(images)
    out = {}
    for name, fmap in maps.items():
      out.update(feature_sets_lib.feature_sets(
          {name: fmap}, per_location=name in fc.loc_stages,
          global_stats=fc.global_stats, patch_sizes=tuple(fc.patch_sizes),
          input_rms=False))
    if fc.input_rms:
      out.update(feature_sets_lib.feature_sets(
          {"s1": maps["s1"]}, images, per_location=False, global_stats=False,
          patch_sizes=(), input_rms=True))
    return out
  return features


class PixelSpace:
  """The frozen encoder and the classifier, with jitted feature, classify and embed
  functions of flat images ``[n, 784]`` (their weights are arguments of the compiled
  functions, not constants)."""

  def __init__(self, encoder, classifier, features_config):
    self.encoder_graph, self.encoder_params = encoder
    clf_graph, clf_params = classifier
    self.features = make_feature_fn(self.encoder_graph, features_config)
    images = lambda x: x.reshape(-1, 28, 28, 1)
    classify = jax.jit(lambda p, x: jnp.argmax(nnx.merge(clf_graph, p)(images(x)), -1))
    embed = jax.jit(lambda p, x: nnx.merge(clf_graph, p).features(images(x)))
    self._classify = functools.partial(classify, clf_params)
    self._embed = functools.partial(embed, clf_params)

  def classify(self, x: np.ndarray) -> np.ndarray:
    return np.asarray(mnist_models.batched(self._classify, jnp.asarray(x, jnp.float32)))

  def embed(self, x: np.ndarray) -> np.ndarray:
    """The classifier's 128-d penultimate features of flat images."""
    return np.asarray(mnist_models.batched(self._embed, jnp.asarray(x, jnp.float32)))


def save_grids(path: str, results: list[dict]) -> None:
  """One figure with every run's grid side by side, titled by method and tau, rows
  labelled by class."""
  from experiments import plotting  # pylint: disable=g-import-not-at-top
  plt = plotting._plt()  # pylint: disable=protected-access
  fig, axes = plt.subplots(1, len(results), figsize=(2.6 * len(results), 3.4), squeeze=False)
  for ax, r in zip(axes[0], results):
    grid = np.load(r["grid_array"])
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{r['method']}\ntau {sweep.tau_text(r['tau'])}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks(np.arange(10) * 28 + 14)
    ax.set_yticklabels([str(c) for c in range(10)], fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def prepare(config, workdir: str) -> dict:
  """Data, the cached encoder and classifier, and the problem."""
  t_start = time.perf_counter()
  check_features_config(config.features)
  cache_dir = config.mnist.cache_dir or os.path.join(workdir, "cache")
  data = mnist_data.load(config.data, cache_dir)
  if config.data.max_train:
    data = data._replace(train_images=data.train_images[: config.data.max_train],
                         train_labels=data.train_labels[: config.data.max_train])
  log.info("MNIST pixels: %s, %d train / %d test images", data.source,
           len(data.train_labels), len(data.test_labels))
  t_models = time.perf_counter()
  encoder = mnist_models.cached_model("encoder", config, data, cache_dir)
  classifier = mnist_models.cached_model("classifier", config, data, cache_dir)
  t_models = time.perf_counter() - t_models
  space = PixelSpace(encoder, classifier, config.features)
  flat = lambda images: np.asarray(images, np.float32).reshape(len(images), -1) / 255.0
  x_train, x_test = flat(data.train_images), flat(data.test_images)
  clf_acc = 100.0 * float(np.mean(space.classify(x_test) == data.test_labels))
  log.info("classifier test accuracy %.2f%%", clf_acc)
  evals = [evaluators.class_accuracy(space.classify),
           evaluators.embedded_frechet(space.embed, key="fd", label="FD(clf)"),
           evaluators.precision_recall(space.embed)]
  problem = training.class_conditional_problem(
      [x_train[data.train_labels == c] for c in range(10)],
      [x_test[data.test_labels == c] for c in range(10)], name="mnist-pixels",
      evaluators=evals, features=space.features, feature_params=space.encoder_params)
  n_sets = len(jax.eval_shape(space.features, space.encoder_params,
                              jax.ShapeDtypeStruct((1, 784), jnp.float32)))
  fit_seconds = sum(mnist_models.cached_fit_seconds(k, config, data, cache_dir)
                    for k in ("encoder", "classifier"))
  return dict(space=space, problem=problem, t_start=t_start,
              summary=dict(data=data.source, n_train=len(data.train_labels),
                           n_test=len(data.test_labels), classifier_accuracy=clf_acc,
                           feature_sets=n_sets, fit_seconds=fit_seconds,
                           setup_without_fit_seconds=time.perf_counter() - t_start
                           - t_models))


def run_setting(config, run_dir: str, context) -> dict:
  out = training.train_generator(config, run_dir, context["problem"])
  history = training.read_metrics(run_dir)
  ev = out["last_eval"] or [r for r in history if "fd" in r][-1]
  result = dict(fd=ev["fd_pooled"], fd_per_class_mean=ev["fd"], accuracy=ev["accuracy"],
                precision=ev["precision"], recall=ev["recall"],
                seconds=training.run_seconds(history, int(config.train.log_every)),
                steps_per_s=float(np.median([r["steps_per_s"] for r in history])))
  if jax.process_index() == 0:
    # The last evaluation's samples of seed 0, [10, n, 784] (benchmarks read them).
    np.save(os.path.join(run_dir, "samples.npy"), np.asarray(out["samples"][0], np.float32))
    grid = mnist_models.digit_grid(out["samples"][0])
    result["grid"] = os.path.join(run_dir, "samples.png")
    result["grid_array"] = os.path.join(run_dir, "samples_grid.npy")
    np.save(result["grid_array"], grid)
    from experiments import plotting  # pylint: disable=g-import-not-at-top
    plotting.save_image(grid, result["grid"])
    writers.write_figure(run_dir, config, int(config.train.steps), "samples", result["grid"])
  return result


def _positives_text(train) -> str:
  """``'32 positives'``, or with a memory bank ``'128 positives (of a bank of 256, 32 new
  per step)'``."""
  bank = bank_lib.bank_config(train)
  text = f"{bank.num_positives} positives"
  if bank.size:
    text += f" (of a bank of {bank.size}, {bank.push} new per step)"
  return text


def write_table(config, workdir, results, context, seconds, planned) -> str:
  """``table.md``, ``results.json`` and ``grids.png``."""
  del seconds
  s = dict(context["summary"])
  generator_seconds = float(sum(r["seconds"] for r in results))
  s.update(generator_seconds=generator_seconds,
           total_seconds=s["setup_without_fit_seconds"] + s["fit_seconds"]
           + generator_seconds)
  g, e = config.guidance, config.encoder
  ema = config.train.ema_decay
  lines = [
      f"MNIST pixels, {s['data']}: {s['n_train']} train / {s['n_test']} held-out images. "
      f"{config.train.steps} generator steps, {config.train.batch_size} generated and "
      f"{_positives_text(config.train)} per class per step, {config.train.num_seeds} "
      f"seed(s); {len(results)} of {planned} settings; total {s['total_seconds']:.0f} s "
      f"(encoder and classifier {s['fit_seconds']:.0f} s, generators "
      f"{generator_seconds:.0f} s, over all invocations).", "",
      f"Loss: the feature-drift loss (sdrift_jax.drift.loss) summed over {s['feature_sets']} "
      f"feature sets of a masked-autoencoder encoder (widths {tuple(e.widths)}, "
      f"{e.epochs} epochs; per-location vectors of {tuple(config.features.loc_stages)}, "
      f"global and {tuple(config.features.patch_sizes)} patch mean/std of every stage, "
      f"input RMS), tau relative to the mean distance, {config.drift.cost} cost; CFG "
      f"with {g.num_uncond} unconditional negatives per class, omega on "
      f"[{g.omega_min:g}, {g.omega_max:g}], samples at omega = {g.eval_omega:g}; "
      + (f"EMA {ema:g} (evaluated)" if ema else "no EMA") + "; baseline "
      f"{config.baseline.form} {config.baseline.normalization}, Sinkhorn split "
      f"T = {config.drift.T}.", "",
      "FD: Frechet distance between Gaussians fitted to the 128-d penultimate features "
      "of the project's MNIST classifier (test accuracy "
      f"{s['classifier_accuracy']:.2f}%), {config.eval.num_samples} generated vs the "
      "held-out images per class, all classes pooled (FD/class: per class, averaged; "
      "the logs' FD(clf)): NOT Inception FID. Acc: class accuracy (%) of the generated digits by that "
      "classifier. Prec / Rec: k-NN (k = 3) precision and recall in the same feature "
      "space, per class, averaged over classes. steps/s: median training rate between "
      "evaluations.", ""]
  lines += tables.markdown(COLUMNS, tables.group_rows(results, ("tau",), "method"))
  with_grids = [r for r in results if "grid_array" in r]
  if with_grids:
    save_grids(os.path.join(workdir, "grids.png"), with_grids)
    lines += ["", "Samples (rows: classes 0-9): grids.png"]
  return training.write_report(workdir, lines, dict(summary=s, runs=results))


@experiments.register("mnist_pixels")
def run(config, workdir: str) -> list[dict]:
  """Runs the pixel pipeline and sweep; returns one result per setting."""
  mesh_lib.make_mesh(config.get("parallel"), 10, int(config.train.batch_size))
  results = sweep.run_sweep(config, workdir, axes=AXES, run_setting=run_setting,
                            write_table=write_table, prepare=prepare, dim=28 * 28,
                            conditional=True)
  if jax.process_index() == 0:
    log.info("MNIST pixels table: %s", os.path.join(workdir, "table.md"))
  return results
