"""sdrift_jax.training.evaluators: what an evaluation measures, as data."""
import os

import numpy as np
import pytest

from tests.helpers import TESTS, table_problem, toy_config
from sdrift_jax.evaluation import frechet as frechet_lib
from sdrift_jax import training
from sdrift_jax.evaluation import metrics
from sdrift_jax.training import evaluators


def _context(S=2, G=3, n=12, d=2, seed=0, batch=8):
  rng = np.random.default_rng(seed)
  samples = rng.normal(size=(S, G, n, d)).astype(np.float32)
  sets = [rng.normal(size=(10 + g, d)).astype(np.float32) + g for g in range(G)]
  calls = []

  def marginal_errors(x, y):
    calls.append((np.shape(x), np.shape(y)))
    return np.tile([[0.1, 0.2]], (S, 1))
  return evaluators.EvalContext(samples=samples, eval_sets=sets,
                                marginal_errors=marginal_errors, batch=batch), calls


def test_w2_is_exact_ot_per_group_averaged():
  ctx, _ = _context()
  out = evaluators.w2().fn(ctx)
  want = [[metrics.w2_squared(ctx.samples[s, g], ctx.eval_sets[g]) for g in range(3)]
          for s in range(2)]
  assert out["w2_per_class"] == want
  np.testing.assert_allclose(out["w2"], np.mean(want, axis=1))
  one, _ = _context(G=1)
  assert set(evaluators.w2().fn(one)) == {"w2"}  # no per-class detail for one group


def test_marginal_errors_measure_the_batch_against_as_many_held_out():
  ctx, calls = _context(n=12, batch=8)
  out = evaluators.marginal_errors().fn(ctx)
  assert out == dict(marginal_error_pos=[0.1, 0.1], marginal_error_neg=[0.2, 0.2])
  assert calls == [((2, 3, 8, 2), (3, 8, 2))]  # min(batch, eval sets, samples)
  ctx, calls = _context(n=5, batch=8)
  evaluators.marginal_errors().fn(ctx)
  assert calls == [((2, 3, 5, 2), (3, 5, 2))]


def test_class_accuracy_counts_samples_classified_as_their_group():
  ctx, _ = _context(S=2, G=2, n=4)
  # Classify by the sign of the first coordinate: group 0 right where x < 0.
  ctx.samples[0, 0, :, 0] = -1.0   # seed 0, group 0: all right
  ctx.samples[0, 1, :, 0] = [1, 1, -1, -1]  # half right
  ctx.samples[1] = 1.0  # seed 1: group 0 all wrong, group 1 all right
  ev = evaluators.class_accuracy(lambda x: (x[:, 0] > 0).astype(int))
  out = ev.fn(ctx)
  assert out["accuracy"] == [75.0, 50.0]
  assert out["accuracy_per_class"] == [[100.0, 50.0], [0.0, 100.0]]
  assert ev.metrics[0].key == "accuracy"


def test_frechet_is_the_mean_over_groups():
  ctx, _ = _context()
  out = evaluators.frechet().fn(ctx)
  want = [np.mean([frechet_lib.frechet_distance(ctx.samples[s, g], ctx.eval_sets[g])
                   for g in range(3)]) for s in range(2)]
  np.testing.assert_allclose(out["frechet"], want, rtol=1e-12)


def test_decoded_fid_evaluator(monkeypatch):
  monkeypatch.syspath_prepend(TESTS)
  decode = frechet_lib.import_hook("fid_hooks:decode", "config.eval.decoder")
  feats = frechet_lib.import_hook("fid_hooks:features", "config.eval.features")
  fid = frechet_lib.DecodedFID(decode, feats, batch=5)
  ctx, _ = _context(S=2, G=2, n=12, d=5)
  out = evaluators.decoded_fid(fid).fn(ctx)
  for s in range(2):
    per_class, pooled = fid(list(ctx.samples[s]), list(ctx.eval_sets))
    assert out["fid_per_class"][s] == pytest.approx(per_class)
    assert out["fid"][s] == pytest.approx(np.mean(per_class))
    assert out["fid_pooled"][s] == pytest.approx(pooled)


def test_evaluate_merges_records_and_refuses_a_key_written_twice():
  ctx, _ = _context()
  record = evaluators.evaluate(evaluators.default_evaluators(), ctx)
  assert {"w2", "w2_per_class", "marginal_error_pos", "marginal_error_neg"} == set(record)
  with pytest.raises(ValueError, match=r"evaluator 'w2' writes \['w2'"):
    evaluators.evaluate([evaluators.w2(), evaluators.w2()], ctx)


def test_log_text_shows_each_reported_metric_mean():
  evs = [evaluators.w2(), evaluators.class_accuracy(None), evaluators.frechet()]
  text = evaluators.log_text(evs, dict(w2=[0.1, 0.3], accuracy=[90.0, 95.0]))
  assert text == "  W2^2 0.2000  Acc 92.5"  # frechet: not in the record, not shown


@pytest.mark.long
def test_trainer_runs_the_problems_evaluators_beside_the_defaults():
  problem = table_problem()
  calls = []

  def fn(ctx):
    calls.append(ctx.samples.shape)
    return dict(custom=[1.0] * ctx.samples.shape[0])
  problem = training.Problem(**{**problem.__dict__,
                                "evaluators": (training.Evaluator("custom", fn),)})
  c = toy_config()
  c.model.noise_dim = 2
  trainer = training.Trainer(c, problem)
  import jax  # pylint: disable=g-import-not-at-top
  eps = jax.random.normal(jax.random.key(0), (3, 6, 2))
  record, samples = trainer.evaluate(trainer.init().params, eps, trainer.objective.tau_array())
  assert samples.shape == (1, 3, 6, 3) and calls == [(1, 3, 6, 3)]
  assert record["custom"] == [1.0] and len(record["w2_per_class"][0]) == 3
  assert [e.name for e in trainer.evaluators] == ["w2", "marginal_errors", "custom"]


class _CountingEmbed:
  """A fixed linear map ``[m, d] -> [m, f]`` that records the arrays it is called on."""

  def __init__(self, d, f=3, seed=11):
    self.matrix = np.random.default_rng(seed).normal(size=(d, f))
    self.calls = []

  def __call__(self, x):
    self.calls.append(np.array(x))
    return np.asarray(x, np.float64) @ self.matrix

  def count(self, x):
    """How many calls were on an array equal to ``x``."""
    return sum(c.shape == np.shape(x) and np.array_equal(c, x) for c in self.calls)


def test_precision_recall_per_group_of_embedded_samples():
  ctx, _ = _context(S=2, G=2, n=12, d=4)
  embed = _CountingEmbed(4)
  ev = evaluators.precision_recall(embed, k=2, label_prefix="clf ")
  out = ev.fn(ctx)
  assert set(out) == {"precision", "recall", "precision_per_class", "recall_per_class"}
  want = [[metrics.knn_precision_recall(embed(ctx.eval_sets[g]), embed(ctx.samples[s, g]),
                                        k=2) for g in range(2)] for s in range(2)]
  assert out["precision_per_class"] == [[p for p, _ in row] for row in want]
  assert out["recall_per_class"] == [[r for _, r in row] for row in want]
  np.testing.assert_allclose(out["precision"], np.mean(out["precision_per_class"], 1))
  np.testing.assert_allclose(out["recall"], np.mean(out["recall_per_class"], 1))
  assert len(out["precision"]) == 2 and len(out["recall"]) == 2
  assert [(m.key, m.label, m.fmt) for m in ev.metrics] == [
      ("precision", "clf Prec", "{:.3f}"), ("recall", "clf Rec", "{:.3f}")]


def test_precision_recall_of_the_held_out_set_itself_is_one():
  """Samples equal to the held-out sets (cut to a common size): every point is its own
  ball's centre, so both values are exactly 1."""
  ctx, _ = _context(S=2, G=2, n=10, d=3)
  ctx.samples[:] = np.stack([e[:10] for e in ctx.eval_sets])[None]
  ctx.eval_sets = [e[:10] for e in ctx.eval_sets]
  out = evaluators.precision_recall(lambda x: x).fn(ctx)
  assert out["precision_per_class"] == [[1.0, 1.0]] * 2
  assert out["recall_per_class"] == [[1.0, 1.0]] * 2


def test_embedded_frechet_per_group_pooled_and_mean():
  ctx, _ = _context(S=2, G=2, n=12, d=4)
  embed = _CountingEmbed(4)
  ev = evaluators.embedded_frechet(embed, key="cfd", label="cFD")
  out = ev.fn(ctx)
  assert set(out) == {"cfd", "cfd_pooled", "cfd_per_class"}
  real = [embed(e) for e in ctx.eval_sets]
  for s in range(2):
    fake = [embed(ctx.samples[s, g]) for g in range(2)]
    per_class = [frechet_lib.frechet_distance(f, r) for f, r in zip(fake, real)]
    assert out["cfd_per_class"][s] == per_class
    assert out["cfd"][s] == pytest.approx(np.mean(per_class), rel=1e-12)
    assert out["cfd_pooled"][s] == frechet_lib.frechet_distance(np.concatenate(fake),
                                                                np.concatenate(real))
  assert [(m.key, m.label, m.fmt) for m in ev.metrics] == [("cfd", "cFD", "{:.2f}")]
  assert ev.name == "cfd"
  assert set(evaluators.embedded_frechet(embed).fn(ctx)) == {"fd", "fd_pooled",
                                                             "fd_per_class"}


def test_embedded_frechet_of_the_held_out_set_itself_and_of_a_far_shift():
  """Samples equal to the held-out sets: FD is 0 up to round-off. Shifted by 10 in every
  input coordinate: the covariances are unchanged and the feature means move by 10 times
  the column sums of the map, so FD is exactly that squared norm. In float64; measured
  errors 7e-15 absolute and 8e-16 relative, bounds 1e-9 for both."""
  ctx, _ = _context(S=2, G=2, n=10, d=3)
  ctx.eval_sets = [np.asarray(e[:10], np.float64) for e in ctx.eval_sets]
  ctx.samples = np.stack([np.stack(ctx.eval_sets), np.stack(ctx.eval_sets) + 10.0])
  embed = _CountingEmbed(3)
  out = evaluators.embedded_frechet(embed).fn(ctx)
  shift = 100.0 * float(np.sum(embed.matrix.sum(0) ** 2))
  assert max(out["fd_per_class"][0] + [out["fd_pooled"][0]]) <= 1e-9
  for value in out["fd_per_class"][1] + [out["fd_pooled"][1]]:
    assert value == pytest.approx(shift, rel=1e-9)


@pytest.mark.parametrize("make", [evaluators.precision_recall, evaluators.embedded_frechet])
def test_held_out_embedding_is_computed_once_and_recomputed_when_it_changes(make):
  ctx, _ = _context(S=2, G=2, n=12, d=4)
  embed = _CountingEmbed(4)
  ev = make(embed)
  first = ev.fn(ctx)
  second = ev.fn(ctx)
  assert first == second
  for e in ctx.eval_sets:
    assert embed.count(e) == 1  # across both evaluations
  assert len(embed.calls) == 2 + 2 * 2 * 2  # held-out sets once, samples per (s, g) each
  # New held-out arrays with the same contents: still cached.
  ctx.eval_sets = [np.array(e) for e in ctx.eval_sets]
  ev.fn(ctx)
  assert len(embed.calls) == 2 + 3 * 4
  # Changed contents (same shapes): group 1 is embedded anew, group 0 kept.
  ctx.eval_sets = [ctx.eval_sets[0], ctx.eval_sets[1] + 5.0]
  third = ev.fn(ctx)
  assert embed.count(ctx.eval_sets[1]) == 1 and embed.count(ctx.eval_sets[0]) == 1
  assert len(embed.calls) == 3 + 4 * 4
  fresh = make(_CountingEmbed(4)).fn(ctx)
  assert third == fresh


def test_embedding_evaluators_check_what_embed_returns():
  ctx, _ = _context(S=1, G=2, n=12, d=4)
  for make in (evaluators.precision_recall, evaluators.embedded_frechet):
    with pytest.raises(ValueError, match=r"embed returned shape \(10, 2, 1\) for 10 inputs"):
      make(lambda x: np.zeros((len(x), 2, 1))).fn(ctx)
    with pytest.raises(ValueError, match=r"embed returned shape \(3, 2\) for 10 inputs"):
      make(lambda x: np.zeros((3, 2))).fn(ctx)
