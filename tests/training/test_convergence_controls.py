"""The trainers' Sinkhorn convergence controls: ``drift.tol``, ``drift.anneal_*`` and
``drift.warm_start`` (the couplings' state carried across steps in the train state)."""
import jax
import numpy as np
import pytest

from sdrift_jax import training
from sdrift_jax.drift.warm import DriftState
from sdrift_jax.training import objectives
from tests.helpers import guided_config, table_problem, toy_config, toy_problem


def _controlled(steps=20, **drift):
  c = toy_config(steps=steps)
  c.drift.update(dict(dict(warm_start=True, tol=1e-2, T=401), **drift))
  return c


def _train(config, workdir, problem=None):
  return training.train_generator(config, str(workdir), problem or toy_problem(config))


@pytest.mark.long
def test_warm_start_state_is_checkpointed_and_resume_is_bit_identical(tmp_path):
  whole = _train(_controlled(steps=20), tmp_path / "whole")
  _train(_controlled(steps=10), tmp_path / "split")
  split = _train(_controlled(steps=20), tmp_path / "split")
  state = whole["state"]
  assert isinstance(state.drift_state, DriftState) and bool(np.all(state.drift_state.valid))
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(split["state"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  drop = lambda rs: [{k: v for k, v in r.items() if k not in ("steps_per_s", "seconds")}
                     for r in rs]
  records = training.read_metrics(str(tmp_path / "whole"))
  assert drop(records) == drop(training.read_metrics(str(tmp_path / "split")))
  # Every logged step stopped at the tolerance, and the evaluation measured it.
  assert all(1 <= r["half_steps"][0] < 401 for r in records)
  assert all(r["marginal_error_pos"][0] <= 1e-2 for r in records if "w2" in r)


@pytest.mark.long
def test_a_warm_started_run_starts_cold(tmp_path):
  """The first step is cold (the same half-steps as a run without warm starts); later
  steps, on fresh samples, are not compared (docs/performance.md)."""
  c = _controlled(steps=10)
  c.train.log_every = 1
  c.train.update(eval_every=10, checkpoint_every=10)
  warm = _train(c, tmp_path / "warm")
  c.drift.warm_start = False
  cold = _train(c, tmp_path / "cold")
  first = lambda d: training.read_metrics(str(d))[0]["half_steps"]
  assert first(tmp_path / "warm") == first(tmp_path / "cold")
  assert cold["state"].drift_state is None and warm["state"].drift_state is not None


@pytest.mark.long
def test_guided_feature_objective_carries_a_state_per_group(tmp_path):
  c = guided_config()
  c.model.noise_dim = 3
  c.drift.update(warm_start=True, tol=1e-2, T=101)
  out = training.train_generator(c, str(tmp_path), table_problem())
  st = out["state"].drift_state
  assert st.valid.shape == (c.train.num_seeds, 3) and bool(np.all(st.valid))
  assert st.x.shape[:2] == (c.train.num_seeds, 3)
  assert all(1 <= r["half_steps"][0] <= 101 for r in training.read_metrics(str(tmp_path)))


@pytest.mark.parametrize("field,value,match", [
    ("tol", -1.0, "tol must be"), ("tol", 3.0, "tol must be"),
    ("anneal_start", 0.5, "anneal_start"), ("anneal_decay", 1.0, "anneal_decay"),
    ("tol", float("nan"), "tol must be"),
    ("anneal_start", 1e6, "must leave"),
])
def test_bad_controls_are_refused_before_training(field, value, match):
  c = toy_config()
  c.drift[field] = value
  with pytest.raises(ValueError, match=match):
    objectives.check_objective_config(c)


def test_controls_need_the_sinkhorn_normalization():
  c = toy_config()
  c.drift.update(normalization="one_sided", warm_start=True)
  with pytest.raises(ValueError, match="warm_start control Sinkhorn"):
    objectives.check_objective_config(c)
