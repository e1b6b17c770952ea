"""MNIST in a 6-d autoencoder latent space (paper Sec. 5.3, Tables 1 and 3).

Pipeline: load digits -> train (or load cached) autoencoder and classifier
(:mod:`experiments.mnist_models`) -> encode -> train class-conditional generators in
latent space, one per (kernel, tau, method) of the sweep, with all ten classes in every
step and the drift computed per class -> evaluate per-class W2^2 against held-out latents
and class accuracy of decoded samples -> ``table.md`` in the layout of Tables 1 and 3,
and a 10 x 8 grid of decoded samples per run.
"""
from __future__ import annotations

import logging
import os
import time

import jax
import numpy as np

import experiments
from experiments import mnist_models
from experiments import sweep
from experiments import tables
from sdrift_jax import training
from experiments.data import mnist as mnist_data
from sdrift_jax.training import evaluators
from sdrift_jax.training import mesh as mesh_lib
from sdrift_jax.training import writers

log = logging.getLogger("sdrift_jax")

AXES = (sweep.kernel_axis(), sweep.tau_axis(), sweep.method_axis())

COLUMNS = (tables.axis_column("kernel", "kernel"),
           tables.axis_column("tau", "tau", "{:g}", "---:"),
           tables.metric_column("baseline EMD", "emd", "{:.2f}", "baseline"),
           tables.metric_column("Sinkhorn EMD", "emd", "{:.2f}", "sinkhorn"),
           tables.metric_column("baseline Acc", "accuracy", "{:.1f}", "baseline"),
           tables.metric_column("Sinkhorn Acc", "accuracy", "{:.1f}", "sinkhorn"))


def make_problem(latents_train, labels_train, latents_test, labels_test,
                 space: mnist_models.LatentSpace, name: str = "mnist") -> training.Problem:
  """Class-conditional latent problem: positives drawn per class with replacement; class
  accuracy of the decoded samples evaluated beside W2^2."""
  classes = range(10)
  return training.class_conditional_problem(
      [np.asarray(latents_train[labels_train == c]) for c in classes],
      [np.asarray(latents_test[labels_test == c]) for c in classes],
      name=name, evaluators=[evaluators.class_accuracy(space.classify_latents)])


def prepare(config, workdir: str) -> dict:
  """Data, the helper networks (cached), the encoded latents and the problem."""
  t_start = time.perf_counter()
  cache_dir = config.mnist.cache_dir or os.path.join(workdir, "cache")
  data = mnist_data.load(config.data, cache_dir)
  if config.data.max_train:
    data = data._replace(train_images=data.train_images[: config.data.max_train],
                         train_labels=data.train_labels[: config.data.max_train])
  log.info("MNIST: %s, %d train / %d test images", data.source, len(data.train_labels),
           len(data.test_labels))
  t_models = time.perf_counter()
  ae = mnist_models.cached_model("autoencoder", config, data, cache_dir)
  clf = mnist_models.cached_model("classifier", config, data, cache_dir)
  t_models = time.perf_counter() - t_models
  space = mnist_models.LatentSpace(ae, clf)
  batched, to_float = mnist_models.batched, mnist_models.to_float
  x_test = to_float(data.test_images)
  clf_acc = 100.0 * float(np.mean(np.asarray(batched(space.classify_images, x_test))
                                  == data.test_labels))
  z_train = np.asarray(batched(space.encode, to_float(data.train_images)))
  z_test = np.asarray(batched(space.encode, x_test))
  recon_acc = 100.0 * float(np.mean(space.classify_latents(z_test) == data.test_labels))
  log.info("classifier test accuracy %.2f%% on images, %.2f%% on autoencoded images",
           clf_acc, recon_acc)
  setup_seconds = time.perf_counter() - t_start
  fit_seconds = sum(mnist_models.cached_fit_seconds(k, config, data, cache_dir)
                    for k in ("autoencoder", "classifier"))
  return dict(space=space, t_start=t_start,
              problem=make_problem(z_train, data.train_labels, z_test, data.test_labels,
                                   space),
              # The total survives reruns: the helper networks' recorded training time
              # and the generators' time from their metrics (all invocations), plus this
              # invocation's data loading and encoding.
              summary=dict(data=data.source, n_train=len(data.train_labels),
                           n_test=len(data.test_labels), classifier_accuracy=clf_acc,
                           autoencoded_accuracy=recon_acc, setup_seconds=setup_seconds,
                           fit_seconds=fit_seconds,
                           setup_without_fit_seconds=setup_seconds - t_models))


def run_setting(config, run_dir: str, context) -> dict:
  out = training.train_generator(config, run_dir, context["problem"])
  history = training.read_metrics(run_dir)
  ev = out["last_eval"] or [r for r in history if "w2" in r][-1]
  grid_path = os.path.join(run_dir, "samples.png")
  if jax.process_index() == 0:
    context["space"].save_grid(out["samples"][0], grid_path)
    writers.write_figure(run_dir, config, int(config.train.steps), "samples", grid_path)
  return dict(emd=ev["w2"], accuracy=ev["accuracy"], grid=grid_path,
              seconds=training.run_seconds(history, int(config.train.log_every)))


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
  return ("Loss: the reference codes' feature-drift loss (sdrift_jax.drift.loss); tau relative "
          "to the batch's mean distance" + ("" if loss.feature_scale else " (raw units)")
          + f"; {cfg}; " + (f"EMA {ema:g} (evaluated)" if ema else "no EMA") + "; "
          f"baseline {config.baseline.get('form', 'joint')} "
          f"{config.baseline.normalization}, Sinkhorn split T = {config.drift.T}.")


def write_table(config, workdir, results, context, seconds, planned) -> str:
  """``table.md`` in the layout of Tables 1 and 3, and ``results.json``."""
  del seconds
  generator_seconds = float(sum(r["seconds"] for r in results))
  summary = dict(context["summary"], generator_seconds=generator_seconds,
                 invocation_seconds=time.perf_counter() - context["t_start"])
  summary["total_seconds"] = (summary["setup_without_fit_seconds"] + summary["fit_seconds"]
                              + generator_seconds)
  lines = [
      f"MNIST, {summary['data']}: {summary['n_train']} train / {summary['n_test']} held-out "
      f"images. Classifier test accuracy {summary['classifier_accuracy']:.2f}% "
      f"({summary['autoencoded_accuracy']:.2f}% on autoencoded test images). "
      f"{config.train.steps} generator steps, {config.train.batch_size} per class, "
      f"{config.train.num_seeds} seed(s); {len(results)} of {planned} settings; total "
      f"{summary['total_seconds']:.0f} s (autoencoder and classifier "
      f"{summary['fit_seconds']:.0f} s, generators {generator_seconds:.0f} s, over all "
      "invocations).", "",
      _objective_line(config), "",
      "EMD: per-class W2^2 in latent space (exact OT, 1000 generated vs the held-out "
      "latents of the class), averaged over classes. Acc: class accuracy (%) of 1000 "
      "decoded samples per class.", ""]
  lines += tables.markdown(COLUMNS, tables.group_rows(results, ("kernel", "tau"), "method"))
  return training.write_report(workdir, lines, dict(summary=summary, runs=results))


@experiments.register("mnist")
def run(config, workdir: str) -> list[dict]:
  """Runs the MNIST pipeline and sweep; returns one result per setting."""
  mesh_lib.make_mesh(config.get("parallel"), 10, int(config.train.batch_size))
  results = sweep.run_sweep(config, workdir, axes=AXES, run_setting=run_setting,
                            write_table=write_table, prepare=prepare,
                            dim=int(config.autoencoder.latent_dim), conditional=True)
  if jax.process_index() == 0:
    log.info("MNIST table: %s", os.path.join(workdir, "table.md"))
    log.info("sample grids: %s", ", ".join(r["grid"] for r in results))
  return results
