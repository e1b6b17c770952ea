"""Memory banks of positives (sdrift_jax.training.bank): the ring, the draw, the trainer's
use of them, checkpoint and resume."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.helpers import load
from sdrift_jax import training
from sdrift_jax.training import bank as bank_lib
from sdrift_jax.training import checkpoint as checkpoint_lib


def _train(**kw):
  return ml_collections.ConfigDict(dict(dict(batch_size=8), **kw))


@pytest.mark.parametrize("kw,match", [
    (dict(bank_size=16, num_positives=32), r"bank_size = 16 is smaller than the 32 positives"),
    (dict(bank_size=4), r"bank_size = 4 is smaller than the 8 positives"),
    (dict(bank_size=24, bank_push=16), r"bank_push = 16 must divide .*bank_size = 24"),
    (dict(bank_push=4), r"bank_push = 4 needs a bank"),
])
def test_bank_config_refuses_what_cannot_work(kw, match):
  with pytest.raises(ValueError, match=match):
    bank_lib.bank_config(_train(**kw))


def test_bank_config_defaults():
  assert bank_lib.bank_config(_train()) == (0, 0, 8)
  assert bank_lib.bank_config(_train(num_positives=32)) == (0, 0, 32)
  assert bank_lib.bank_config(_train(bank_size=32)) == (32, 8, 8)


def test_push_overwrites_the_oldest_rows_and_draw_takes_distinct_rows():
  G, B = 2, 6
  items = {"a": jnp.arange(G * B, dtype=jnp.float32).reshape(G, B, 1, 1)}
  bank = bank_lib.Bank(items, jnp.int32(0))
  for t in range(4):  # pushes of 2: rows 0-1, 2-3, 4-5, then 0-1 again
    new = {"a": jnp.full((G, 2, 1, 1), 100.0 + t)}
    bank = bank_lib.push(bank, new, 2)
  a = np.asarray(bank.items["a"])[..., 0, 0]
  np.testing.assert_array_equal(a[0], [103, 103, 101, 101, 102, 102])
  assert int(bank.ptr) == 2
  # The whole bank, in its order; a part, rows of the bank without repeats per group.
  assert bank_lib.draw(bank, jax.random.key(0), B) is bank.items
  bank = bank_lib.Bank({"a": jnp.arange(G * B, dtype=jnp.float32).reshape(G, B, 1, 1)},
                       jnp.int32(0))
  part = np.asarray(bank_lib.draw(bank, jax.random.key(1), 4)["a"])[..., 0, 0]
  for g in range(G):
    assert len(set(part[g])) == 4 and set(part[g]) <= set(range(g * B, (g + 1) * B))


def _encoder(params, x):
  h = x @ params["w"]
  return {"a": h.reshape(-1, 3, 2), "b": (h[:, :4] * params["s"])[:, None, :]}


def _feature_problem():
  rng = np.random.default_rng(0)
  per_class = [rng.normal(size=(40, 6)).astype(np.float32) + 2 * c for c in range(2)]
  held_out = [rng.normal(size=(16, 6)).astype(np.float32) + 2 * c for c in range(2)]
  params = {"w": jnp.asarray(rng.normal(size=(6, 6)), jnp.float32),
            "s": jnp.asarray(1.5, jnp.float32)}
  return training.class_conditional_problem(per_class, held_out, name="feat",
                                            features=_encoder, feature_params=params)


def _feature_config(**train):
  c = load("mnist.py", "smoke,reference")
  c.guidance.num_uncond = 0
  c.model.omega_dim = 0
  c.train.update(steps=6, batch_size=8, log_every=3, eval_every=6, checkpoint_every=3,
                 **train)
  c.eval.num_samples = 16
  return c


_PROBLEM = []


def _problem():
  if not _PROBLEM:
    _PROBLEM.append(_feature_problem())
  return _PROBLEM[0]


@pytest.mark.long
def test_a_bank_replaced_whole_every_step_trains_as_no_bank():
  # bank_size = bank_push = num_positives: each step's positives are its fresh draw,
  # encoded before the loss instead of inside it; the training is the same.
  def params_after(**train):
    trainer = training.Trainer(_feature_config(**train), _problem())
    state, _ = trainer.make_chunk(3)(trainer.init(), trainer.seed_keys(),
                                     trainer.objective.tau_array())
    return state
  plain, banked = params_after(), params_after(bank_size=8)
  assert plain.bank is None and banked.bank.items["a"].shape == (1, 2, 8, 3, 2)
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(banked.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.long
def test_a_run_with_a_bank_resumes_bit_identically(tmp_path):
  kw = dict(bank_size=32, bank_push=4, num_positives=16)
  whole = training.train_generator(_feature_config(**kw), str(tmp_path / "whole"), _problem())
  training.train_generator(_with_steps(_feature_config(**kw), 3), str(tmp_path / "split"),
                           _problem())
  split = training.train_generator(_feature_config(**kw), str(tmp_path / "split"), _problem())
  for a, b in zip(jax.tree.leaves(whole["state"]), jax.tree.leaves(split["state"])):
    np.testing.assert_array_equal(a, b)
  # The bank is in the checkpoint, and a config asking for more positives than it holds
  # is refused before anything runs.
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "split" / "checkpoints"))
  assert any("bank" in str(p) for p, _ in jax.tree_util.tree_flatten_with_path(
      ckpt.restore(6, split["state"]))[0])
  ckpt.close()
  with pytest.raises(ValueError, match="bank_size = 32 is smaller than the 64 positives"):
    training.train_generator(_feature_config(bank_size=32, num_positives=64),
                             str(tmp_path / "other"), _problem())


def _with_steps(c, steps):
  c.train.steps = steps
  return c
