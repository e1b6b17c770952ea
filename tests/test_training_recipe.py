"""The reference codes' training recipe: EMA of the parameters, AdamW with warm-up and
clipping, the residual MLP's output init and residual scale, and the toy reference config
(self-mask on the baselines only)."""
import importlib.util
import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from sdrift_jax import checkpoint as checkpoint_lib
from sdrift_jax import config_lib, metrics, models, toy, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_toy(arg=None):
  path = os.path.join(ROOT, "configs", "toy.py")
  spec = importlib.util.spec_from_file_location("cfg_toy_recipe", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tiny_config(ema_decay=0.0, steps=20):
  c = load_toy(f"smoke,steps={steps}")
  c.train.update(ema_decay=ema_decay, log_every=10, eval_every=10, checkpoint_every=10)
  return c


def leaves64(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


# -- EMA ---------------------------------------------------------------------------------

def test_ema_matches_float64_recomputation_from_the_parameter_trajectory():
  d = 0.8
  c = tiny_config(ema_decay=d)
  c.train.num_seeds = 2
  trainer = train.Trainer(c, toy.make_problem(c))
  state = trainer.init()
  trajectory = [leaves64(state.params)]
  for a, b in zip(leaves64(state.ema), trajectory[0]):  # starts at the parameters
    np.testing.assert_array_equal(a, b)
  chunk, keys = trainer.make_chunk(1), trainer.seed_keys()
  for _ in range(6):
    state, _ = chunk(state, keys)
    trajectory.append(leaves64(state.params))
  ema = trajectory[0]
  for p in trajectory[1:]:
    ema = [d * e + (1 - d) * x for e, x in zip(ema, p)]
  got = leaves64(state.ema)
  for e, g, p in zip(ema, got, trajectory[-1]):
    np.testing.assert_allclose(g, e, rtol=0, atol=1e-6 * max(1.0, np.abs(e).max()))
  assert max(np.abs(e - p).max() for e, p in zip(ema, trajectory[-1])) > 1e-4  # not params
  assert int(state.step) == 6


def test_resume_keeps_the_ema_bit_identical(tmp_path):
  c = tiny_config(0.9)
  problem = toy.make_problem(c)
  trainer = train.Trainer(c, problem)
  chunk, keys = trainer.make_chunk(10), trainer.seed_keys()
  whole, _ = chunk(trainer.init(), keys)
  whole, _ = chunk(whole, keys)
  half, _ = chunk(trainer.init(), keys)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(10, half)
  ckpt.wait()
  fresh = train.Trainer(c, problem)
  resumed = ckpt.restore(10, fresh.init())
  ckpt.close()
  assert int(resumed.step) == 10
  resumed, _ = fresh.make_chunk(10)(resumed, fresh.seed_keys())
  for name in ("params", "ema", "opt_state", "step"):
    a, b = jax.tree.leaves(getattr(whole, name)), jax.tree.leaves(getattr(resumed, name))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_evaluation_and_samples_use_the_ema(tmp_path):
  c = tiny_config(0.9, steps=10)
  out = train.train_generator(c, str(tmp_path), toy.make_problem(c))
  record = train.read_metrics(str(tmp_path))[-1]
  assert record["eval_params"] == "ema" and record["w2"] != record["w2_raw"]
  # The returned samples are the EMA's: their W2^2 is the logged one.
  problem = toy.make_problem(c)
  assert metrics.w2_squared(out["samples"][0], problem.eval_data) == pytest.approx(
      record["w2"][0], rel=1e-9)


class FormerTrainState(NamedTuple):
  """The state as checkpointed before the EMA existed."""
  params: Any
  opt_state: Any
  step: Any


def test_without_ema_the_checkpoint_layout_is_unchanged(tmp_path):
  c = tiny_config(0.0, steps=10)
  out = train.train_generator(c, str(tmp_path), toy.make_problem(c))
  assert out["state"].ema is None
  assert not any("w2_raw" in r or "eval_params" in r for r in train.read_metrics(str(tmp_path)))
  s = out["state"]
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  former = ckpt.restore(10, FormerTrainState(s.params, s.opt_state, s.step))
  for a, b in zip(jax.tree.leaves(former), jax.tree.leaves(s)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  ckpt.close()
  # A config.json written before the new fields existed still matches their defaults ...
  path = tmp_path / "config.json"
  old = json.loads(path.read_text())
  del old["train"]["ema_decay"], old["model"]["res_scale"], old["model"]["out_init_std"]
  path.write_text(json.dumps(old))
  train.write_config(c, str(tmp_path))
  path.write_text(json.dumps(old))
  # ... and not a config that switches the EMA on.
  with pytest.raises(ValueError, match="ema_decay"):
    train.write_config(tiny_config(0.9, steps=10), str(tmp_path))
  # Without config.json to compare, the checkpoint's missing EMA is named.
  os.remove(path)
  with pytest.raises(ValueError, match="ema_decay = 0.9"):
    train.train_generator(tiny_config(0.9, steps=20), str(tmp_path), toy.make_problem(c))


def test_bad_ema_decay_is_refused():
  for bad in (1.0, -0.1):
    with pytest.raises(ValueError, match="ema_decay must be in"):
      train.Trainer(tiny_config(bad), toy.make_problem(tiny_config()))


# -- optimizer ---------------------------------------------------------------------------

def mnist_recipe(**overrides):
  """The reference MNIST script's optimizer (train_drifting.py)."""
  fields = dict(b1=0.9, b2=0.95, clip_norm=2.0, schedule="warmup_constant",
                warmup_steps=750)
  fields.update(overrides)
  return config_lib.optimizer_config("adamw", 2e-4, 0.01, **fields)


def test_warmup_constant_gives_the_reference_learning_rate():
  schedule = train.make_schedule(mnist_recipe(), 2e-4, 5000)
  for t in (0, 1, 749, 750, 2000, 10_000):
    expected = 2e-4 * (t + 1) / 750 if t < 750 else 2e-4  # set_lr(step - 1, 750, lr)
    assert float(schedule(t)) == pytest.approx(expected, rel=1e-6), t
  # It does not depend on train.steps (extending a run does not move it).
  other = train.make_schedule(mnist_recipe(), 2e-4, 100)
  assert float(other(400)) == pytest.approx(float(schedule(400)), rel=1e-7)
  one = train.make_schedule(mnist_recipe(warmup_steps=1), 2e-4, 10)
  assert float(one(0)) == pytest.approx(2e-4, rel=1e-7)
  with pytest.raises(ValueError, match="warmup_steps >= 1"):
    train.make_schedule(mnist_recipe(warmup_steps=0), 2e-4, 10)
  with pytest.raises(ValueError, match="unknown config.optim.schedule 'linear'"):
    train.make_optimizer(mnist_recipe(schedule="linear"), 10)


def test_optimizer_is_the_reference_adamw_step():
  """make_optimizer against torch's AdamW step in float64 NumPy: clip_grad_norm_, lr by
  the warm-up, decoupled weight decay, bias-corrected moments."""
  warmup, lr, wd, b1, b2, clip = 3, 2e-4, 0.01, 0.9, 0.95, 2.0
  tx = train.make_optimizer(mnist_recipe(warmup_steps=warmup), 100)
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


# -- the reference toy model -------------------------------------------------------------

def test_output_init_std_gives_small_weights_and_zero_bias():
  model = models.ResidualMLPGenerator(16, 2, hidden=256, blocks=6, res_scale=0.9,
                                      out_init_std=0.001, rngs=nnx.Rngs(0))
  w, b = np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])
  assert w.shape == (256, 2) and 0.0009 < w.std() < 0.0011 and abs(w.mean()) < 2e-4
  np.testing.assert_array_equal(b, 0.0)
  default = models.ResidualMLPGenerator(16, 2, hidden=256, rngs=nnx.Rngs(0))
  assert np.asarray(default.out.kernel[...]).std() > 0.02  # torch-like U(+-1/16)
  norms = [model.inp_norm, *model.n1, *model.n2]
  assert len(norms) == 13 and all(n.epsilon == 1e-5 for n in norms)


def forward64(model, eps):
  """The reference ResidualMLP.forward in float64 NumPy."""
  val = lambda p: np.asarray(p[...], np.float64)
  lin = lambda layer, h: h @ val(layer.kernel) + val(layer.bias)
  silu = lambda h: h / (1 + np.exp(-h))

  def ln(norm, h):
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-5) * val(norm.scale) + val(norm.bias)

  h = silu(ln(model.inp_norm, lin(model.inp, eps)))
  for w1, n1, w2, n2 in zip(model.w1, model.n1, model.w2, model.n2):
    h = h + model.res_scale * ln(n2, lin(w2, silu(ln(n1, lin(w1, h)))))
  return lin(model.out, h)


@pytest.mark.parametrize("res_scale", [0.9, 1.0, 0.3])
def test_residual_mlp_matches_the_reference_forward_pass(res_scale):
  model = models.ResidualMLPGenerator(3, 2, hidden=8, blocks=3, res_scale=res_scale,
                                      rngs=nnx.Rngs(1))
  eps = np.random.default_rng(0).normal(size=(7, 3))
  got = np.asarray(model(jnp.asarray(eps, jnp.float32)), np.float64)
  np.testing.assert_allclose(got, forward64(model, eps), rtol=1e-5, atol=1e-5)
  # The residual branch is what res_scale multiplies: against an unscaled forward pass.
  model.res_scale = 1.0
  if res_scale != 1.0:
    assert np.abs(got - forward64(model, eps)).max() > 1e-3


def test_make_generator_wires_res_scale_and_out_init_std():
  c = load_toy("reference").model
  model = models.make_generator(c, 2, jax.random.key(0))
  assert isinstance(model, models.ResidualMLPGenerator) and model.res_scale == 0.9
  np.testing.assert_array_equal(np.asarray(model.out.bias[...]), 0.0)
  assert np.asarray(model.out.kernel[...]).std() < 0.0015
  mlp = ml_collections.ConfigDict(load_toy().model.to_dict())
  mlp.res_scale = 0.9
  with pytest.raises(ValueError, match="resmlp' only"):
    models.make_generator(mlp, 2, jax.random.key(0))


# -- the toy reference config ------------------------------------------------------------

def test_toy_reference_config_has_the_reference_settings():
  c = load_toy("reference")
  assert (c.model.kind, c.model.noise_dim, c.model.hidden, c.model.blocks,
          c.model.expansion, c.model.activation) == ("resmlp", 16, 256, 6, 2, "silu")
  assert c.model.res_scale == 0.9 and c.model.out_init_std == 0.001
  assert (c.optim.name, c.optim.learning_rate, c.optim.b1, c.optim.b2,
          c.optim.weight_decay) == ("adamw", 2e-4, 0.9, 0.999, 0.01)
  assert c.optim.schedule == "constant" and c.optim.clip_norm == 0.0
  assert (c.train.steps, c.train.batch_size, c.train.ema_decay) == (5000, 1024, 0.0)
  assert (c.drift.T, c.drift.cost, tuple(c.sweep.taus)) == (41, "sqeuclidean",
                                                             (0.01, 0.05, 0.1))
  assert c.eval.num_samples == 1000 and c.train.eval_every == 100


@pytest.mark.parametrize("variant,normalization,masked", [
    ("reference", "sinkhorn", False),
    ("reference,normalization=one_sided", "one_sided", True),
    ("reference,normalization=two_sided", "two_sided", True),
    ("reference,drift.mask_self=False,normalization=one_sided", "one_sided", False),
    (None, "sinkhorn", False),
    ("normalization=one_sided", "one_sided", False),
])
def test_toy_self_mask_follows_the_normalization_in_single_runs(variant, normalization,
                                                                 masked):
  c = load_toy(variant)
  assert c.drift.normalization == normalization
  assert toy.drift_mask(c) is masked and toy.run_config(c).drift.mask_self is masked


def test_toy_self_mask_after_a_command_line_override():
  c = load_toy("reference")  # --config.drift.normalization=... is applied after get_config
  c.drift.normalization = "two_sided"
  assert toy.run_config(c).drift.mask_self is True
  c.drift.normalization = "sinkhorn"
  assert toy.run_config(c).drift.mask_self is False


def test_toy_self_mask_in_the_reference_sweep():
  c = load_toy("reference,fig2")
  for norm in c.sweep.normalizations:
    sub = toy._setting_config(c, "8gaussians", "sqeuclidean", 0.1, norm)
    assert sub.drift.mask_self is (norm != "sinkhorn")
    assert toy.run_config(sub).drift.mask_self is sub.drift.mask_self
  plain = load_toy("fig2")
  assert not any(toy._setting_config(plain, "8gaussians", "sqeuclidean", 0.1, n)
                 .drift.mask_self for n in plain.sweep.normalizations)


def test_toy_reference_sinkhorn_run_trains_unmasked(tmp_path, monkeypatch):
  trained = []

  def capture(config, workdir, problem):
    trained.append(config)
    raise StopIteration  # the config is all this test needs

  monkeypatch.setattr(toy.train_lib, "train_generator", capture)
  for variant, masked in (("reference", False), ("reference,normalization=one_sided", True)):
    with pytest.raises(StopIteration):
      toy.run_toy(load_toy(variant), str(tmp_path))
    assert trained[-1].drift.mask_self is masked
    assert train.drift_kwargs(trained[-1].drift)["mask_self"] is masked
