"""Training objectives (sdrift_jax.objectives) and guided training in the trainer."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import stats

from sdrift_jax import drift_field, feature_drift_loss, objectives, runner, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name, arg=None):
  spec = importlib.util.spec_from_file_location("cfg_" + name[:-3],
                                                os.path.join(ROOT, "configs", name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def guided_config(**loss):
  """A tiny class-conditional config with the feature-drift objective and CFG."""
  c = load("mnist.py", "smoke,reference")
  c.loss.update(loss)
  c.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4)
  c.guidance.num_uncond = 4
  return c


def table_problem(counts=(30, 50, 40), dim=3, seed=0):
  rng = np.random.default_rng(seed)
  per_class = [rng.normal(size=(n, dim)).astype(np.float32) + 3 * c
               for c, n in enumerate(counts)]
  held_out = [rng.normal(size=(20, dim)).astype(np.float32) + 3 * c
              for c in range(len(counts))]
  return train.class_conditional_problem(per_class, held_out, name="toy3")


def test_drift_field_objective_is_the_paper_loss():
  c = load("toy.py", "smoke")
  objective = objectives.make_objective(c)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(20, 2)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(20, 2)) + 1, jnp.float32)
  loss, rms = objective.group_loss(x, y)
  V = np.asarray(drift_field(x, y, x, c.drift.tau, T=c.drift.T), np.float64)
  assert float(loss) == pytest.approx(0.5 * np.mean(np.sum(V * V, -1)), rel=1e-5)
  assert float(rms) == pytest.approx(np.sqrt(np.mean(np.sum(V * V, -1))), rel=1e-5)
  g = jax.grad(lambda x: objective.group_loss(x, y)[0])(x)
  np.testing.assert_allclose(g, -V / x.shape[0], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["baseline", "sinkhorn"])
def test_feature_objective_is_feature_drift_loss(method):
  c = train.method_config(guided_config(), method)
  objective = objectives.make_objective(c)
  assert objective.feature_kwargs["form"] == ("joint" if method == "baseline" else "split")
  assert objective.feature_kwargs["mask_self"] is (method == "baseline")
  rng = np.random.default_rng(1)
  x, y, u = (jnp.asarray(rng.normal(size=(n, 6)), jnp.float32) for n in (16, 16, 4))
  loss, _ = objective.group_loss(x, y, u, 2.5)
  want = feature_drift_loss(x, y, u, omega=2.5, **objective.feature_kwargs)
  assert float(loss) == pytest.approx(float(want), rel=1e-6)


def test_power_law_omega_distribution():
  keys = jax.random.split(jax.random.key(0), 4000)
  lo, hi, a = 1.0, 4.0, 3.0
  w = np.asarray(jax.vmap(lambda k: objectives.sample_omega(k, lo, hi, a))(keys))
  assert w.min() >= lo and w.max() <= hi
  cdf = lambda t: (t ** (1 - a) - lo ** (1 - a)) / (hi ** (1 - a) - lo ** (1 - a))
  assert stats.kstest(w, cdf).pvalue > 1e-3
  # And not merely uniform.
  assert stats.kstest(w, stats.uniform(lo, hi - lo).cdf).pvalue < 1e-6


def test_unconditional_negatives_are_drawn_in_proportion_to_class_size():
  # Row r of class c holds the value 1000 c + r + 1 (padding rows are 0).
  per_class = [np.arange(1, 11, dtype=np.float32)[:, None],
               1000 + np.arange(1, 31, dtype=np.float32)[:, None]]
  problem = train.class_conditional_problem(per_class, [p[:2] for p in per_class])
  table = (jnp.asarray(problem.table.read((slice(None),) * 3, problem.table.shape())),
           jnp.asarray(problem.table.counts))
  y = np.asarray(train.sample_unconditional(jax.random.key(0), 40000, table))[:, 0]
  assert np.all(y > 0)  # never a padding row
  second = y > 500
  assert np.mean(second) == pytest.approx(0.75, abs=0.01)  # 30 of 40 rows
  # Uniform within each class.
  _, counts = np.unique(y[second], return_counts=True)
  assert len(counts) == 30 and stats.chisquare(counts).pvalue > 1e-3
  _, counts = np.unique(y[~second], return_counts=True)
  assert len(counts) == 10 and stats.chisquare(counts).pvalue > 1e-3


def test_guided_training_runs_resumes_and_samples_at_eval_omega(tmp_path):
  problem = table_problem()
  c = guided_config()
  c.model.noise_dim = 3
  out = train.train_generator(c, str(tmp_path / "a"), problem)
  assert np.all(np.isfinite(out["last_eval"]["w2"]))
  trainer = out["trainer"]
  params = jax.tree.map(lambda a: a[0], trainer.eval_params(out["state"]))
  eps = jnp.ones((3, 5, 3))
  at_eval = trainer.generate_groups(params, eps)
  np.testing.assert_array_equal(at_eval, trainer.generate_groups(params, eps, 1.0))
  assert not np.allclose(at_eval, trainer.generate_groups(params, eps, 3.0))
  # Two chunks then a resume equal four steps in one go.
  c2 = guided_config()
  c2.model.noise_dim = 3
  c2.train.steps = 2
  train.train_generator(c2, str(tmp_path / "b"), problem)
  c2.train.steps = 4
  resumed = train.train_generator(c2, str(tmp_path / "b"), problem)
  for a, b in zip(jax.tree.leaves((out["state"].params, out["state"].ema)),
                  jax.tree.leaves((resumed["state"].params, resumed["state"].ema))):
    np.testing.assert_array_equal(a, b)


def test_guided_step_shares_omega_and_draws_negatives_per_class():
  problem = table_problem()
  trainer = train.Trainer(guided_config(), problem)
  table = (jnp.asarray(problem.table.read((slice(None),) * 3, problem.table.shape())),
           jnp.asarray(problem.table.counts))
  omega, y_unc = trainer.sample_guidance(jax.random.key(1), jax.random.key(2), table)
  assert omega.shape == () and 1.0 <= float(omega) <= 4.0
  assert y_unc.shape == (3, 4, 3)
  assert not np.allclose(y_unc[0], y_unc[1])
  unguided = train.Trainer(load("mnist.py", "smoke"), problem)
  assert unguided.sample_guidance(jax.random.key(1), jax.random.key(2), table) == (None, None)


def test_default_objective_trains_exactly_as_the_paper_loss_step():
  """The drift_field objective's step equals, bit for bit, the step written out here:
  one vmapped drift over the classes and eq. 7's loss over all samples."""
  problem = table_problem(dim=6)
  c = train.method_config(load("mnist.py", "smoke"), "sinkhorn")
  c.drift.tau = 5.0
  trainer = train.Trainer(c, problem)
  table = trainer.device_table()
  state = trainer.init()
  params = jax.tree.map(lambda a: a[0], state.params)
  opt_state = jax.tree.map(lambda a: a[0], state.opt_state)
  kw = trainer.objective.drift_kwargs

  @jax.jit
  def written_out(params, opt_state, key):
    k_eps, k_pos = jax.random.split(key)
    eps = jax.random.normal(k_eps, (3, trainer.batch, trainer.noise_dim))
    y_pos = train.sample_from_table(k_pos, trainer.batch, table)

    def loss_fn(p):
      x = trainer.generate_groups(p, eps)
      V = jax.vmap(lambda x, y: drift_field(x, y, x, **kw))(jax.lax.stop_gradient(x), y_pos)
      x2, V2 = x.reshape(-1, 6), V.reshape(-1, 6)
      return 0.5 * jnp.mean(jnp.sum(jnp.square(x2 - jax.lax.stop_gradient(x2 + V2)), -1))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = trainer.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(lambda p, o, k: trainer._step(p, o, k, table))
  a, b = (params, opt_state), (params, opt_state)
  for t in range(3):
    key = jax.random.fold_in(jax.random.key(7), t)
    pa, oa, ma = step(*a, key)
    pb, ob, lb = written_out(*b, key)
    a, b = (pa, oa), (pb, ob)
    assert float(ma["loss"]) == float(lb)
  for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(b[0])):
    np.testing.assert_array_equal(x, y)


def test_mlp_torch_init():
  from flax import nnx
  from sdrift_jax import models
  m = models.MLPGenerator(6, 6, hidden=256, depth=3, num_classes=10, embed_dim=32,
                          omega_dim=32, init="torch", rngs=nnx.Rngs(0))
  emb = np.asarray(m.embed.embedding[...])
  assert abs(emb.std() - 1.0) < 0.1
  w = np.asarray(m.hidden[1].kernel[...])
  bound = 1 / np.sqrt(256)
  assert np.abs(w).max() <= bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
  assert np.abs(np.asarray(m.omega_in.kernel[...])).max() <= 1.0
  assert np.abs(np.asarray(m.omega_in.bias[...])).max() > 0.1  # uniform bias, not zeros
  with pytest.raises(ValueError, match="model.init"):
    models.MLPGenerator(6, 6, init="jax", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.loss.update(form="joint"), r"loss.form.*'feature_drift' only"),
    (lambda c: c.guidance.update(num_uncond=4), r"guidance.num_uncond.*'feature_drift'"),
    (lambda c: c.loss.update(objective="feature_drift", form="joint",
                             uncond_marginal="post_guidance"),
     "uncond_marginal applies to the unconditional"),
    (lambda c: c.loss.update(objective="mmd"), "unknown config.loss.objective"),
    (lambda c: (c.loss.update(objective="feature_drift"), c.drift.update(relative_tau=True)),
     "relative_tau"),
    (lambda c: c.loss.update(objective="feature_drift", flavour=1), "unknown field"),
    (lambda c: (c.loss.update(objective="feature_drift"), c.guidance.update(eval_omega=2.0)),
     "need config.guidance.num_uncond"),
    (lambda c: (c.loss.update(objective="feature_drift"), c.drift.update(algorithm="blocked")),
     "blocked"),
])
def test_config_values_take_effect_or_are_refused(edit, match):
  c = load("toy.py", "smoke")
  c.loss = objectives.loss_config()
  c.guidance = objectives.guidance_config()
  c.drift.relative_tau = False
  with c.unlocked():
    edit(c)
  with pytest.raises(ValueError, match=match):
    objectives.check_objective_config(c)


def test_guided_option_combinations_are_refused():
  c = guided_config(form="joint", uncond_marginal="post_guidance")
  with pytest.raises(ValueError, match="post_guidance"):
    objectives.check_objective_config(c, 6, conditional=True)
  c = guided_config(uncond_marginal="none")
  with pytest.raises(ValueError, match="omega > 1"):
    objectives.check_objective_config(c, 6, conditional=True)
  c.guidance.omega_min = 1.5
  objectives.check_objective_config(c, 6, conditional=True)


def test_guidance_needs_classes_and_an_omega_input():
  c = guided_config()
  with pytest.raises(ValueError, match="class-conditional"):
    objectives.check_objective_config(c, 6, conditional=False)
  c.model.omega_dim = 0
  with pytest.raises(ValueError, match="omega_dim"):
    train.Trainer(c, table_problem())


def test_mnist_reference_smoke_runs(tmp_path):
  c = load("mnist.py", "smoke,reference")
  assert c.loss.objective == "feature_drift" and c.guidance.num_uncond == 16
  assert c.optim.schedule == "warmup_constant" and c.train.ema_decay == 0.999
  results = runner.run(c, str(tmp_path))
  assert [r["method"] for r in results] == ["baseline", "sinkhorn"]
  for r in results:
    assert np.all(np.isfinite(r["emd"]))
