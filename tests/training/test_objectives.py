"""sdrift_jax.training.objectives: the loss of a step from the config, its checks, and
the guidance distribution."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tests.helpers import guided_config, load, toy_setting, with_method
from sdrift_jax import DriftSpec, drift_field, feature_drift_loss
from sdrift_jax.training import objectives


@pytest.mark.long
def test_drift_field_objective_is_the_paper_loss():
  c = toy_setting(load("toy.py", "smoke"))
  objective = objectives.make_objective(c)
  assert objective.spec == DriftSpec.from_config(c.drift)
  tau = objective.tau_array()
  assert tau.shape == () and float(tau) == pytest.approx(c.drift.tau)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(20, 2)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(20, 2)) + 1, jnp.float32)
  loss, rms = objective.group_loss(x, y, None, 1.0, tau)
  V = np.asarray(drift_field(x, y, x, c.drift.tau, T=c.drift.T), np.float64)
  assert float(loss) == pytest.approx(0.5 * np.mean(np.sum(V * V, -1)), rel=1e-5)
  assert float(rms) == pytest.approx(np.sqrt(np.mean(np.sum(V * V, -1))), rel=1e-5)
  g = jax.grad(lambda x: objective.group_loss(x, y, None, 1.0, tau)[0])(x)
  np.testing.assert_allclose(g, -V / x.shape[0], rtol=1e-4, atol=1e-7)
  # batch_loss over one group is the group loss.
  b_loss, b_rms = objective.batch_loss(x[None], y[None], None, None, tau)
  assert float(b_loss) == pytest.approx(float(loss), rel=1e-6)
  assert float(b_rms) == pytest.approx(float(rms), rel=1e-6)


def test_tau_is_an_argument_not_a_field_of_the_loss():
  c = toy_setting(load("toy.py", "smoke"))
  objective = objectives.make_objective(c)
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(16, 2)) + 1, jnp.float32)
  traced = jax.jit(lambda t: objective.group_loss(x, y, None, 1.0, t)[0])
  for tau in (0.05, 0.2):
    V = np.asarray(drift_field(x, y, x, tau, T=c.drift.T), np.float64)
    assert float(traced(objective.tau_array(tau))) == pytest.approx(
        0.5 * np.mean(np.sum(V * V, -1)), rel=1e-5)
  with pytest.raises(ValueError, match="does not have the shape"):
    objective.tau_array((0.1, 0.2))
  with c.unlocked():
    del c.drift["tau"]
    c.drift.tau = (0.05, 0.2)
  multi = objectives.make_objective(c)
  assert multi.tau_array().shape == (2,) and objectives.config_tau(c.drift) == (0.05, 0.2)
  with pytest.raises(ValueError, match="does not have the shape"):
    multi.tau_array(0.1)


@pytest.mark.parametrize("method", ["baseline", "sinkhorn"])
def test_feature_objective_is_feature_drift_loss(method):
  c = with_method(guided_config(), method)
  objective = objectives.make_objective(c)
  assert objective.spec is None and objective.guided
  assert objective.feature_kwargs["form"] == ("joint" if method == "baseline" else "split")
  assert objective.feature_kwargs["mask_self"] is (method == "baseline")
  rng = np.random.default_rng(1)
  x, y, u = (jnp.asarray(rng.normal(size=(n, 6)), jnp.float32) for n in (16, 16, 4))
  loss, _ = objective.group_loss(x, y, u, 2.5, objective.tau_array())
  want = feature_drift_loss(x, y, u, tau=c.drift.tau, omega=2.5, **objective.feature_kwargs)
  assert float(loss) == pytest.approx(float(want), rel=1e-6)



def _toy_encoder(params, x):
  """A frozen 'encoder' with two feature sets of different shapes: [n, 3, 2] and [n, 1, 4]."""
  h = jnp.tanh(x @ params["w"])                                    # [n, 6]
  return {"a": h.reshape(-1, 3, 2), "b": (h[:, :4] * params["s"])[:, None, :]}


@pytest.mark.parametrize("method", ["baseline", "sinkhorn"])
@pytest.mark.long
def test_feature_encoder_objective_sums_set_losses_and_freezes_the_encoder(method):
  c = with_method(guided_config(), method)
  objective = objectives.make_objective(c).with_features(_toy_encoder)
  rng = np.random.default_rng(2)
  params = {"w": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32),
            "s": jnp.asarray(1.5, jnp.float32)}
  G = 2
  x, y, u = (jnp.asarray(rng.normal(size=(G, n, 6)), jnp.float32) for n in (8, 8, 4))
  tau = objective.tau_array()
  loss, rms = objective.batch_loss(x, y, u, 2.5, tau, params)
  # Independently: per group and per set, the reference loss on the encoded features.
  want = 0.0
  for g in range(G):
    fx, fy, fu = (_toy_encoder(params, v[g]) for v in (x, y, u))
    for k in ("a", "b"):
      want += float(feature_drift_loss(fx[k], fy[k], fu[k], tau=c.drift.tau, omega=2.5,
                                       **objective.feature_kwargs)) / G
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert np.isfinite(float(rms)) and float(rms) > 0
  # Gradients reach the generated samples through the encoder; none reach the encoder's
  # parameters, the positives or the unconditional negatives.
  gx, gp, gy, gu = jax.grad(
      lambda x, p, y, u: objective.batch_loss(x, y, u, 2.5, tau, p)[0],
      argnums=(0, 1, 2, 3))(x, params, y, u)
  assert float(jnp.abs(gx).max()) > 0
  for g in jax.tree.leaves((gp, gy, gu)):
    assert float(jnp.abs(g).max()) == 0.0
  # The encoder's gradient w.r.t. x is used: a different encoder, a different gradient.
  gx2 = jax.grad(lambda x: objective.batch_loss(
      x, y, u, 2.5, tau, {**params, "w": params["w"] * 2})[0])(x)
  assert not np.allclose(gx, gx2)


def test_feature_encoder_without_sets_is_refused():
  objective = objectives.make_objective(guided_config()).with_features(lambda p, x: {})
  x = jnp.zeros((1, 4, 6))
  with pytest.raises(ValueError, match="returned no feature sets"):
    objective.batch_loss(x, x, None, None, objective.tau_array(), {})


def test_feature_encoder_needs_the_feature_drift_objective():
  c = toy_setting(load("toy.py", "smoke"))
  with pytest.raises(ValueError, match="needs config.loss.objective = 'feature_drift'"):
    objectives.make_objective(c).with_features(_toy_encoder)


def test_feature_encoder_marginal_errors_are_the_largest_over_sets():
  c = with_method(guided_config(), "sinkhorn")
  plain = objectives.make_objective(c)
  objective = plain.with_features(_toy_encoder)
  rng = np.random.default_rng(4)
  params = {"w": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32),
            "s": jnp.asarray(1.0, jnp.float32)}
  x, y = (jnp.asarray(rng.normal(size=(8, 6)), jnp.float32) for _ in range(2))
  tau = objective.tau_array()
  got = np.asarray(objective.marginal_errors(x, y, tau, params))
  fx, fy = _toy_encoder(params, x), _toy_encoder(params, y)
  per_set = [np.asarray(plain.marginal_errors(fx[k], fy[k], tau)) for k in ("a", "b")]
  np.testing.assert_allclose(got, np.max(per_set, axis=0), rtol=1e-6)

def test_power_law_omega_distribution():
  keys = jax.random.split(jax.random.key(0), 4000)
  lo, hi, a = 1.0, 4.0, 3.0
  w = np.asarray(jax.vmap(lambda k: objectives.sample_omega(k, lo, hi, a))(keys))
  assert w.min() >= lo and w.max() <= hi
  cdf = lambda t: (t ** (1 - a) - lo ** (1 - a)) / (hi ** (1 - a) - lo ** (1 - a))
  assert stats.kstest(w, cdf).pvalue > 1e-3
  # And not merely uniform.
  assert stats.kstest(w, stats.uniform(lo, hi - lo).cdf).pvalue < 1e-6


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
    (lambda c: c.drift.update(tau=0.0), "bad config.drift: tau must be positive"),
    (lambda c: c.drift.update(normalization="softmax"), "bad config.drift: unknown normalization"),
])
def test_config_values_take_effect_or_are_refused(edit, match):
  c = toy_setting(load("toy.py", "smoke"))
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


def test_guidance_needs_classes():
  c = guided_config()
  with pytest.raises(ValueError, match="class-conditional"):
    objectives.check_objective_config(c, 6, conditional=False)


def test_former_defaults_are_the_blocks_defaults():
  assert objectives.FORMER_DEFAULTS["loss.objective"] == "drift_field"
  assert objectives.FORMER_DEFAULTS["guidance.num_uncond"] == 0
  assert set(objectives.FORMER_DEFAULTS) == (
      {f"loss.{k}" for k in objectives.loss_config()}
      | {f"guidance.{k}" for k in objectives.guidance_config()}
      | {f"drift.{k}" for k in objectives.CONVERGENCE_DEFAULTS})
