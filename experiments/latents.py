"""Class-conditional generation in a latent space (paper Sec. 5.4, Table 2).

The same grouped training loop as MNIST: every step draws ``batch_size`` generated and
positive latents per class, and the drift couples them within each class. Data: a user's
``.npz`` (:func:`experiments.data.latents.load_latents`: the FFHQ-ALAE layout) or the
embedded synthetic stand-in of known distribution. Evaluation per class: W2^2 by exact
OT between generated and held-out latents, and the Frechet distance between Gaussians
fitted to them (the FID formula applied to latents), and, when ``config.eval.decoder``
and ``config.eval.features`` name the user's latent decoder and image feature extractor
(``'module:function'``), the FID of the decoded generated latents against the decoded
held-out latents (:class:`sdrift_jax.evaluation.frechet.DecodedFID`).
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

import experiments
from experiments import sweep
from experiments import tables
from sdrift_jax.evaluation import frechet
from sdrift_jax.evaluation import metrics
from sdrift_jax import training
from experiments.data import latents as latents_data
from sdrift_jax.training import evaluators
from sdrift_jax.training import mesh as mesh_lib

log = logging.getLogger("sdrift_jax")

AXES = (sweep.tau_axis(), sweep.method_axis())


def load_data(config):
  """``(train per class, held-out per class, class names)`` named by ``config.data``.

  From an ``.npz`` the held-out latents are read now and the training latents are row
  views, read when the trainer places them on its devices: in a multi-host job each
  process reads only the rows its devices hold (sdrift_jax.training.PositiveTable). The
  synthetic set is a function of its seed; every process draws it.
  """
  d = config.data
  n_eval = int(config.eval.num_samples)
  if d.source == "synthetic":
    if d.get("path", ""):
      raise ValueError(f"config.data.path = {d.path!r} is read with config.data.source='npz' "
                       "only (this config's source is 'synthetic'): add source=npz")
    syn = latents_data.SyntheticLatents(num_classes=d.num_classes, dim=d.dim, rank=d.rank,
                                        seed=d.seed)
    train = [syn.sample(c, d.train_per_class, seed=d.seed + 1) for c in range(d.num_classes)]
    held = [syn.sample(c, n_eval, seed=d.seed + 2) for c in range(d.num_classes)]
    return train, held, [f"class{c}" for c in range(d.num_classes)]
  if d.source == "npz":
    if not d.path:
      raise ValueError("config.data.path is empty: give the .npz of latents (path=FILE in "
                       "the variant, or --config.data.path=FILE)")
    keys = tuple(d.class_keys) or None
    per_class, names = latents_data.load_latents(
        d.path, class_keys=keys, min_per_class=int(config.train.batch_size) + 2, lazy=True)
    rng = np.random.default_rng(int(d.split_seed))
    train, held = [], []
    for view in per_class:  # held-out: up to eval.num_samples, at most half of the class
      idx = rng.permutation(len(view))
      k = min(n_eval, len(view) // 2)
      held.append(np.asarray(view.subset(idx[:k])))  # every process evaluates: read now
      train.append(view.subset(idx[k:]))  # read later, by each process only its share
    return train, held, names
  raise ValueError(f"unknown config.data.source {d.source!r}: expected 'synthetic' or 'npz'")


def make_fid(eval_config) -> Optional[frechet.DecodedFID]:
  """The decoded-image FID of ``config.eval`` (``decoder`` and ``features`` given as
  ``'module:function'``), or ``None`` when neither is set."""
  decoder, features = eval_config.get("decoder", ""), eval_config.get("features", "")
  if not decoder and not features:
    return None
  if not (decoder and features):
    missing = "config.eval.features" if decoder else "config.eval.decoder"
    raise ValueError(f"FID of decoded images needs both config.eval.decoder and "
                     f"config.eval.features; {missing} is empty")
  return frechet.DecodedFID(frechet.import_hook(decoder, "config.eval.decoder"),
                            frechet.import_hook(features, "config.eval.features"),
                            batch=int(eval_config.get("fid_batch", 250)))


def make_problem(train, held, name="latents", fid=None) -> training.Problem:
  """One group per class; the latent Frechet distance (and, given ``fid``, the FID of
  decoded images) evaluated beside W2^2."""
  evals = [evaluators.frechet()] + ([evaluators.decoded_fid(fid)] if fid is not None else [])
  return training.class_conditional_problem(train, held, name=name, evaluators=evals)


def real_vs_real(train, held, n: int, fid=None) -> dict:
  """The metrics of ``n`` training latents per class against the held-out ones: what a
  generator that samples the data distribution itself scores, sampling noise included
  (exact-OT W2^2 between finite samples in high dimension is far from 0, and lower for
  an under-dispersed sample than for a fair one; the Frechet distances are the better
  gauge)."""
  real = [np.asarray(t[: min(n, len(t))], np.float32) for t in train]
  out = dict(w2=float(np.mean([metrics.w2_squared(r, h) for r, h in zip(real, held)])),
             frechet=float(np.mean([frechet.frechet_distance(r, h) for r, h in zip(real, held)])))
  if fid is not None:
    out["fid"] = float(np.mean(fid(real, held)[0]))
  return out


def prepare(config, workdir: str) -> dict:
  """The data, the problem and the hook of the decoded-image FID."""
  del workdir
  fid = make_fid(config.eval)  # a bad hook fails here, before any training
  train, held, names = load_data(config)
  log.info("latents: %d classes (%s), D = %d, %s train / %s held-out per class",
           len(train), ", ".join(names), train[0].shape[1], [len(t) for t in train],
           [len(h) for h in held])
  # A device layout that cannot work fails here, before anything is written.
  mesh_lib.make_mesh(config.get("parallel"), len(train), int(config.train.batch_size))
  return dict(train=train, held=held, names=names, fid=fid,
              problem=make_problem(train, held, name=config.data.source, fid=fid))


def run_setting(config, run_dir: str, context) -> dict:
  training.train_generator(config, run_dir, context["problem"])
  history = training.read_metrics(run_dir)
  ev = [r for r in history if "w2" in r][-1]
  return dict(w2=ev["w2"], frechet=ev["frechet"], w2_per_class=ev.get("w2_per_class"),
              fid=ev.get("fid"), fid_pooled=ev.get("fid_pooled"),
              seconds=training.run_seconds(history, int(config.train.log_every)))


def write_table(config, workdir, results, context, seconds, planned) -> str:
  """``table.md`` in the layout of Table 2 and ``results.json``; the real-vs-real
  reference once the grid is done."""
  with_fid = context["fid"] is not None
  names = context["names"]
  reference = None
  if len(results) == planned:
    reference = context.get("reference")
    if reference is None:
      reference = context["reference"] = real_vs_real(
          context["train"], context["held"], int(config.eval.num_samples), context["fid"])
  columns = [tables.axis_column("tau", "tau", "{:g}", "---:")]
  for label, key in (("EMD", "w2"), ("FD", "frechet")) + ((("FID", "fid"),) if with_fid else ()):
    columns += [tables.metric_column(f"baseline {label}", key, "{:.2f}", "baseline"),
                tables.metric_column(f"Sinkhorn {label}", key, "{:.2f}", "sinkhorn")]
  lines = [
      f"Latents: {config.data.source}, {len(names)} classes, D = {config.data.get('dim', '?')}; "
      f"{config.train.steps} steps, {config.train.batch_size} per class, "
      f"{config.train.num_seeds} seed(s); {len(results)} of {planned} settings; "
      f"total {seconds:.0f} s.", "",
      "EMD: W2^2 by exact OT between generated and held-out latents, per class, averaged over "
      "classes. FD: Frechet distance of Gaussians fitted to those latents, averaged over "
      "classes." + (f" FID: Frechet distance of the features ({config.eval.features}) of "
                    f"the decoded ({config.eval.decoder}) generated and held-out latents, "
                    "per class, averaged over classes." if with_fid else ""), ""]
  lines += tables.markdown(columns, tables.group_rows(results, ("tau",), "method"))
  if reference is not None:
    lines += ["", "Real vs real (training latents against the same held-out latents, "
              f"{config.eval.num_samples} per class): EMD {reference['w2']:.2f}, "
              f"FD {reference['frechet']:.2f}"
              + (f", FID {reference['fid']:.2f}" if "fid" in reference else "") + "."]
  return training.write_report(workdir, lines, dict(results=results, real_vs_real=reference))


@experiments.register("latents")
def run(config, workdir: str) -> list[dict]:
  """Trains the sweep ``taus x methods`` and writes ``table.md`` (Table 2 layout)."""
  make_fid(config.eval)  # a bad hook fails before the settings are checked
  return sweep.run_sweep(config, workdir, axes=AXES, run_setting=run_setting,
                         write_table=write_table, prepare=prepare,
                         dim=int(config.data.get("dim", 2)), conditional=True)
