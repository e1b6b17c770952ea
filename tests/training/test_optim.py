"""sdrift_jax.training.optim: the reference codes' optimizer and the schedules."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import config_lib
from sdrift_jax.training import optim


def mnist_recipe(**overrides):
  """The reference MNIST script's optimizer (train_drifting.py)."""
  fields = dict(b1=0.9, b2=0.95, clip_norm=2.0, schedule="warmup_constant",
                warmup_steps=750)
  fields.update(overrides)
  return config_lib.optimizer_config("adamw", 2e-4, 0.01, **fields)


def test_warmup_constant_gives_the_reference_learning_rate():
  schedule = optim.make_schedule(mnist_recipe(), 2e-4, 5000)
  for t in (0, 1, 749, 750, 2000, 10_000):
    expected = 2e-4 * (t + 1) / 750 if t < 750 else 2e-4  # set_lr(step - 1, 750, lr)
    assert float(schedule(t)) == pytest.approx(expected, rel=1e-6), t
  # It does not depend on train.steps (extending a run does not move it).
  other = optim.make_schedule(mnist_recipe(), 2e-4, 100)
  assert float(other(400)) == pytest.approx(float(schedule(400)), rel=1e-7)
  one = optim.make_schedule(mnist_recipe(warmup_steps=1), 2e-4, 10)
  assert float(one(0)) == pytest.approx(2e-4, rel=1e-7)
  with pytest.raises(ValueError, match="warmup_steps >= 1"):
    optim.make_schedule(mnist_recipe(warmup_steps=0), 2e-4, 10)
  with pytest.raises(ValueError, match="unknown config.optim.schedule 'linear'"):
    optim.make_optimizer(mnist_recipe(schedule="linear"), 10)


def test_optimizer_is_the_reference_adamw_step():
  """make_optimizer against torch's AdamW step in float64 NumPy: clip_grad_norm_, lr by
  the warm-up, decoupled weight decay, bias-corrected moments."""
  warmup, lr, wd, b1, b2, clip = 3, 2e-4, 0.01, 0.9, 0.95, 2.0
  tx = optim.make_optimizer(mnist_recipe(warmup_steps=warmup), 100)
  rng = np.random.default_rng(0)
  p = rng.normal(size=5)
  grads = [rng.normal(size=5) * s for s in (0.1, 3.0, 0.5, 4.0, 1.0, 0.2)]  # some clipped
  params = jnp.asarray(p, jnp.float32)
  opt_state = tx.init(params)
  m = v = np.zeros(5)
  for t, g in enumerate(grads):
    updates, opt_state = tx.update(jnp.asarray(g, jnp.float32), opt_state, params)
    params = optax.apply_updates(params, updates)
    g = g * min(1.0, clip / np.linalg.norm(g))
    lr_t = lr * min(t + 1, warmup) / warmup
    p = p * (1 - lr_t * wd)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    p = p - lr_t * m_hat / (np.sqrt(v_hat) + 1e-8)
    np.testing.assert_allclose(np.asarray(params), p, rtol=1e-6, atol=1e-7)


def test_cosine_decays_to_zero_at_decay_steps_or_train_steps():
  c = config_lib.optimizer_config("adam", 1e-3, schedule="cosine", warmup_steps=10)
  s = optim.make_schedule(c, 1e-3, 100)
  assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(1e-3, rel=1e-6)
  assert float(s(100)) == pytest.approx(0.0, abs=1e-12)
  assert optim.decay_steps(c, 100) == 100
  c.decay_steps = 60  # the horizon kept when train.steps grows
  kept = optim.make_schedule(c, 1e-3, 500)
  first = optim.make_schedule(config_lib.optimizer_config(
      "adam", 1e-3, schedule="cosine", warmup_steps=10), 1e-3, 60)
  for t in (0, 5, 30, 59, 60):
    assert float(kept(t)) == pytest.approx(float(first(t)), rel=1e-6, abs=1e-12), t
  assert optim.decay_steps(c, 500) == 60
  c.decay_steps = -1
  with pytest.raises(ValueError, match="decay_steps must be >= 0"):
    optim.decay_steps(c, 10)


@pytest.mark.parametrize("fields,match", [
    (dict(schedule="constant", warmup_steps=5), "'constant' would ignore it"),
    (dict(weight_decay=0.01), "weight_decay applies to 'adamw'"),
    (dict(name="sgd"), "unknown config.optim.name 'sgd'"),
])
def test_settings_the_optimizer_would_ignore_are_refused(fields, match):
  c = config_lib.optimizer_config("adam", 1e-3)
  c.update(fields)
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(c, 10)


def test_embeddings_get_their_own_learning_rate():
  c = config_lib.optimizer_config("adam", 1e-3, embed_learning_rate=1e-1)
  tx = optim.make_optimizer(c, 10)
  params = {"embed": {"embedding": jnp.ones(3)}, "dense": {"kernel": jnp.ones(3)}}
  state = tx.init(params)
  updates, _ = tx.update(jax_tree_ones(params), state, params)
  # Adam's first step moves every parameter by its learning rate.
  np.testing.assert_allclose(updates["embed"]["embedding"], -1e-1, rtol=1e-4)
  np.testing.assert_allclose(updates["dense"]["kernel"], -1e-3, rtol=1e-4)


def jax_tree_ones(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(jnp.ones_like, tree)
