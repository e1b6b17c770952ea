"""sdrift_jax.training.evaluators: what an evaluation measures, as data."""
import os

import numpy as np
import pytest

from helpers import table_problem, toy_config
from sdrift_jax import frechet as frechet_lib
from sdrift_jax import metrics, training
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
  monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))
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
