"""Evaluation declared as data: a problem lists its evaluators, the trainer runs them at
every evaluation, logs their values and writes them to ``metrics.jsonl``, and the tables
read them by key.

An :class:`Evaluator` is a name, a function of an :class:`EvalContext` that returns
``{key: per-seed values}`` (and any per-class detail under other keys), and the
:class:`Metric` s it reports. Every problem gets :func:`w2` and :func:`marginal_errors`;
a problem adds its own (class accuracy, Frechet distance, decoded-image FID, k-NN
precision and recall or a Frechet distance of embedded samples), so a new metric is one
evaluator here or in its experiment, and one entry in a problem's list.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Sequence

import numpy as np

from sdrift_jax.evaluation import frechet as frechet_lib
from sdrift_jax.evaluation import metrics as metrics_lib

__all__ = ["class_accuracy", "decoded_fid", "default_evaluators", "embedded_frechet",
           "EvalContext", "evaluate", "Evaluator", "frechet", "log_text",
           "marginal_errors", "Metric", "precision_recall", "w2", "w2_per_seed"]


@dataclasses.dataclass(frozen=True)
class Metric:
  """A per-seed value an evaluator reports: its record ``key``, the ``label`` of logs and
  tables, and the format of one value."""
  key: str
  label: str
  fmt: str = "{:.3f}"


@dataclasses.dataclass
class EvalContext:
  """What an evaluator sees.

  Attributes:
    samples: generated samples ``[S, G, n, dim]`` (seeds, groups, samples).
    eval_sets: the held-out sets, one ``[M_g, dim]`` array per group.
    marginal_errors: ``(x [S, G, m, dim], y [G, m, dim]) -> [S, 2]``: the largest
      marginal error over groups of the positive and negative couplings.
    batch: the training batch per group (the size the couplings are measured at).
  """
  samples: np.ndarray
  eval_sets: Sequence[np.ndarray]
  marginal_errors: Callable[..., Any]
  batch: int


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """``fn(context) -> {key: [S] values, ...}``, reporting ``metrics``."""
  name: str
  fn: Callable[[EvalContext], dict]
  metrics: tuple[Metric, ...] = ()


def w2_per_seed(samples: np.ndarray, eval_sets) -> list[list[float]]:
  """W2^2 (exact OT) of ``samples [S, G, n, dim]`` against each group's held-out set:
  ``[S][G]``."""
  return [[metrics_lib.w2_squared(seed[g], eval_sets[g]) for g in range(len(eval_sets))]
          for seed in samples]


def w2(label: str = "W2^2") -> Evaluator:
  """``w2``: W2^2 by exact OT against the held-out set, averaged over groups; with more
  than one group also ``w2_per_class`` ``[S][G]``."""
  def fn(ctx: EvalContext) -> dict:
    values = w2_per_seed(ctx.samples, ctx.eval_sets)
    out = dict(w2=np.mean(values, axis=1).tolist())
    if len(ctx.eval_sets) > 1:
      out["w2_per_class"] = values
    return out
  return Evaluator("w2", fn, (Metric("w2", label, "{:.4f}"),))


def marginal_errors() -> Evaluator:
  """``marginal_error_pos`` / ``_neg``: the largest L1 marginal error over groups of the
  positive and negative couplings of the first ``batch`` samples against as many
  held-out ones."""
  def fn(ctx: EvalContext) -> dict:
    m = min(ctx.batch, min(len(e) for e in ctx.eval_sets), ctx.samples.shape[2])
    y = np.stack([np.asarray(e[:m]) for e in ctx.eval_sets])
    errs = np.asarray(ctx.marginal_errors(ctx.samples[:, :, :m], y))
    return dict(marginal_error_pos=errs[:, 0].tolist(), marginal_error_neg=errs[:, 1].tolist())
  return Evaluator("marginal_errors", fn)


def class_accuracy(classify: Callable[[np.ndarray], np.ndarray]) -> Evaluator:
  """``accuracy`` (%): the share of samples of group ``g`` that ``classify`` (``[k, dim]
  -> [k]`` labels) assigns to class ``g``; also ``accuracy_per_class`` ``[S][G]``."""
  def fn(ctx: EvalContext) -> dict:
    S, G, n, d = ctx.samples.shape
    pred = np.asarray(classify(ctx.samples.reshape(-1, d))).reshape(S, G, n)
    correct = pred == np.arange(G)[None, :, None]
    return dict(accuracy=(100.0 * correct.mean(axis=(1, 2))).tolist(),
                accuracy_per_class=(100.0 * correct.mean(axis=2)).tolist())
  return Evaluator("accuracy", fn, (Metric("accuracy", "Acc", "{:.1f}"),))


def frechet(label: str = "FD") -> Evaluator:
  """``frechet``: the Frechet distance between Gaussians fitted to the generated and the
  held-out samples, per group, averaged over groups."""
  def fn(ctx: EvalContext) -> dict:
    return dict(frechet=[float(np.mean([frechet_lib.frechet_distance(seed[g], held)
                                        for g, held in enumerate(ctx.eval_sets)]))
                         for seed in ctx.samples])
  return Evaluator("frechet", fn, (Metric("frechet", label, "{:.2f}"),))


def decoded_fid(fid: "frechet_lib.DecodedFID") -> Evaluator:
  """``fid`` (per class, averaged), ``fid_pooled`` and ``fid_per_class``: the FID of the
  decoded samples against the decoded held-out set (:class:`sdrift_jax.evaluation.frechet.DecodedFID`)."""
  def fn(ctx: EvalContext) -> dict:
    per_seed = [fid(list(seed), list(ctx.eval_sets)) for seed in ctx.samples]
    return dict(fid=[float(np.mean(pc)) for pc, _ in per_seed],
                fid_pooled=[pooled for _, pooled in per_seed],
                fid_per_class=[pc for pc, _ in per_seed])
  return Evaluator("fid", fn, (Metric("fid", "FID", "{:.2f}"),))


def _embed(embed: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
  """``embed(x [m, dim]) -> [m, f]`` as float64, checking the shape it returns."""
  x = np.asarray(x)
  f = np.asarray(embed(x), np.float64)
  if f.ndim != 2 or len(f) != len(x):
    raise ValueError(f"embed returned shape {f.shape} for {len(x)} inputs; "
                     f"expected [{len(x)}, f]")
  return f


def _fingerprint(x: np.ndarray) -> tuple:
  """Shape, dtype and a BLAKE2b digest of the bytes of ``x``: equal for equal arrays."""
  x = np.ascontiguousarray(x)
  return x.shape, x.dtype.str, hashlib.blake2b(x.tobytes(), digest_size=16).digest()


class _HeldOutEmbedding:
  """``embed`` of each held-out set, computed once and kept.

  Each set is keyed by :func:`_fingerprint` (not by ``id``, which a new array may
  reuse), so a call with different held-out sets embeds the ones that changed; only
  the sets of the latest call are kept.
  """

  def __init__(self, embed: Callable[[np.ndarray], np.ndarray]):
    self.embed = embed
    self._cache: dict = {}

  def __call__(self, eval_sets) -> list[np.ndarray]:
    keys = [_fingerprint(np.asarray(e)) for e in eval_sets]
    cache = {}
    for key, e in zip(keys, eval_sets):
      if key not in cache:
        cache[key] = self._cache[key] if key in self._cache else _embed(self.embed, e)
    self._cache = cache
    return [cache[key] for key in keys]


def precision_recall(embed: Callable[[np.ndarray], np.ndarray], k: int = 3,
                     label_prefix: str = "") -> Evaluator:
  """``precision`` and ``recall``: the k-NN precision and recall
  (:func:`sdrift_jax.evaluation.metrics.knn_precision_recall`) of the embedded samples of each
  group against the embedded held-out set of that group, averaged over groups; also
  ``precision_per_class`` and ``recall_per_class`` ``[S][G]``.

  Args:
    embed: ``[m, dim]`` NumPy array -> ``[m, f]`` features (for MNIST, the penultimate
      layer of its classifier, say), called once per seed and group, and once per
      held-out set: those features are kept, and recomputed only for a held-out set
      whose contents differ from the last call's.
    k: the neighbourhood size of the manifold estimate.
    label_prefix: put before the labels ``Prec`` and ``Rec`` of logs and tables.
  """
  held_out = _HeldOutEmbedding(embed)

  def fn(ctx: EvalContext) -> dict:
    real = held_out(ctx.eval_sets)
    per_seed = [[metrics_lib.knn_precision_recall(r, _embed(embed, seed[g]), k=k)
                 for g, r in enumerate(real)] for seed in ctx.samples]
    prec = [[p for p, _ in row] for row in per_seed]
    rec = [[r for _, r in row] for row in per_seed]
    return dict(precision=np.mean(prec, axis=1).tolist(),
                recall=np.mean(rec, axis=1).tolist(),
                precision_per_class=prec, recall_per_class=rec)
  return Evaluator("precision_recall", fn,
                   (Metric("precision", f"{label_prefix}Prec", "{:.3f}"),
                    Metric("recall", f"{label_prefix}Rec", "{:.3f}")))


def embedded_frechet(embed: Callable[[np.ndarray], np.ndarray], key: str = "fd",
                     label: str = "FD") -> Evaluator:
  """``<key>``: the Frechet distance (:func:`sdrift_jax.evaluation.frechet.frechet_distance`)
  between the embedded samples of each group and the embedded held-out set of that
  group, averaged over groups; ``<key>_pooled``: the one of all groups pooled;
  ``<key>_per_class`` ``[S][G]``.

  The number is only as meaningful as the embedding: with the features of the MNIST
  classifier it is a Frechet distance in that classifier's feature space, not the FID
  of Inception features, and is not comparable with published FIDs.

  Args:
    embed: ``[m, dim]`` NumPy array -> ``[m, f]`` features, called once per seed and
      group, and once per held-out set: those features are kept, and recomputed only for
      a held-out set whose contents differ from the last call's.
    key: the record key (and the evaluator's name).
    label: the label of logs and tables.
  """
  held_out = _HeldOutEmbedding(embed)

  def fn(ctx: EvalContext) -> dict:
    real = held_out(ctx.eval_sets)
    real_pooled = np.concatenate(real)
    per_class, pooled = [], []
    for seed in ctx.samples:
      fake = [_embed(embed, seed[g]) for g in range(len(real))]
      per_class.append([frechet_lib.frechet_distance(f, r) for f, r in zip(fake, real)])
      pooled.append(frechet_lib.frechet_distance(np.concatenate(fake), real_pooled))
    return {key: np.mean(per_class, axis=1).tolist(), f"{key}_pooled": pooled,
            f"{key}_per_class": per_class}
  return Evaluator(key, fn, (Metric(key, label, "{:.2f}"),))


def default_evaluators() -> tuple[Evaluator, ...]:
  """What every problem's evaluation measures."""
  return (w2(), marginal_errors())


def evaluate(evaluators: Sequence[Evaluator], ctx: EvalContext) -> dict:
  """The record of one evaluation: the union of the evaluators' outputs (a key written
  twice is an error)."""
  record: dict = {}
  for ev in evaluators:
    out = ev.fn(ctx)
    clash = set(out) & set(record)
    if clash:
      raise ValueError(f"evaluator {ev.name!r} writes {sorted(clash)}, already written")
    record.update(out)
  return record


def log_text(evaluators: Sequence[Evaluator], record: dict) -> str:
  """``'  W2^2 0.1234  Acc 97.1'``: each reported metric's mean over seeds."""
  return "".join(f"  {m.label} " + m.fmt.format(float(np.mean(record[m.key])))
                 for ev in evaluators for m in ev.metrics if m.key in record)
