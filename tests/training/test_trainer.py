"""sdrift_jax.training.trainer: the pure functions of a run (init, the compiled chunk with
tau as an argument, EMA, guidance, the shared trainer of a sweep)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import guided_config, load, table_problem, toy_config, toy_problem, with_method
from sdrift_jax.training import checkpoint as checkpoint_lib
from sdrift_jax import drift_field, training
from sdrift_jax.training import problem as problem_lib
from sdrift_jax.training import trainer as trainer_lib


def leaves64(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


@pytest.mark.long
def test_ema_matches_float64_recomputation_from_the_parameter_trajectory():
  d = 0.8
  c = toy_config(ema_decay=d)
  c.train.num_seeds = 2
  trainer = training.Trainer(c, toy_problem(c))
  state = trainer.init()
  trajectory = [leaves64(state.params)]
  for a, b in zip(leaves64(state.ema), trajectory[0]):  # starts at the parameters
    np.testing.assert_array_equal(a, b)
  chunk, keys = trainer.make_chunk(1), trainer.seed_keys()
  tau = trainer.objective.tau_array()
  for _ in range(6):
    state, _ = chunk(state, keys, tau)
    trajectory.append(leaves64(state.params))
  ema = trajectory[0]
  for p in trajectory[1:]:
    ema = [d * e + (1 - d) * x for e, x in zip(ema, p)]
  got = leaves64(state.ema)
  for e, g, p in zip(ema, got, trajectory[-1]):
    np.testing.assert_allclose(g, e, rtol=0, atol=1e-6 * max(1.0, np.abs(e).max()))
  assert max(np.abs(e - p).max() for e, p in zip(ema, trajectory[-1])) > 1e-4  # not params
  assert int(state.step) == 6


@pytest.mark.long
def test_resume_keeps_the_ema_bit_identical(tmp_path):
  c = toy_config(0.9)
  problem = toy_problem(c)
  trainer = training.Trainer(c, problem)
  chunk, keys, tau = trainer.make_chunk(10), trainer.seed_keys(), trainer.objective.tau_array()
  whole, _ = chunk(trainer.init(), keys, tau)
  whole, _ = chunk(whole, keys, tau)
  half, _ = chunk(trainer.init(), keys, tau)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(10, half)
  ckpt.wait()
  fresh = training.Trainer(c, problem)
  resumed = ckpt.restore(10, fresh.init())
  ckpt.close()
  assert int(resumed.step) == 10
  resumed, _ = fresh.make_chunk(10)(resumed, fresh.seed_keys(), tau)
  for name in ("params", "ema", "opt_state", "step"):
    a, b = jax.tree.leaves(getattr(whole, name)), jax.tree.leaves(getattr(resumed, name))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bad_ema_decay_is_refused():
  for bad in (1.0, -0.1):
    with pytest.raises(ValueError, match="ema_decay must be in"):
      training.Trainer(toy_config(bad), toy_problem(toy_config()))


@pytest.mark.long
def test_class_conditional_trainer_uses_labels():
  c = toy_config()
  c.model.update(kind="mlp", depth=2)
  problem = training.Problem(dim=2, sample_positives=lambda k, n: jnp.zeros((3, n, 2)),
                             eval_data=(np.zeros((4, 2)),) * 3, num_classes=3)
  trainer = training.Trainer(c, problem)
  params = jax.tree.map(lambda a: a[0], trainer.init().params)
  eps = jnp.ones((3, 5, c.model.noise_dim))
  x = trainer.generate_groups(params, eps)  # same noise, labels 0, 1, 2
  assert x.shape == (3, 5, 2)
  assert not np.allclose(x[0], x[1]) and not np.allclose(x[1], x[2])


@pytest.mark.long
def test_guided_step_shares_omega_and_draws_negatives_per_class():
  problem = table_problem()
  trainer = training.Trainer(guided_config(), problem)
  table = (jnp.asarray(problem.table.read((slice(None),) * 3, problem.table.shape())),
           jnp.asarray(problem.table.counts))
  omega, y_unc = trainer.sample_guidance(jax.random.key(1), jax.random.key(2), table)
  assert omega.shape == () and 1.0 <= float(omega) <= 4.0
  assert y_unc.shape == (3, 4, 3)
  assert not np.allclose(y_unc[0], y_unc[1])
  unguided = training.Trainer(load("mnist.py", "smoke,eq7"), problem)
  assert unguided.sample_guidance(jax.random.key(1), jax.random.key(2), table) == (None, None)


def test_guidance_needs_an_omega_input_and_a_table():
  c = guided_config()
  c.model.omega_dim = 0
  with pytest.raises(ValueError, match="omega_dim"):
    training.Trainer(c, table_problem())
  no_table = training.Problem(dim=3, sample_positives=lambda k, n: jnp.zeros((3, n, 3)),
                              eval_data=(np.zeros((4, 3)),) * 3, num_classes=3)
  with pytest.raises(ValueError, match="data table"):
    training.Trainer(guided_config(), no_table)


@pytest.mark.long
def test_default_objective_trains_exactly_as_the_paper_loss_step():
  """The drift_field objective's step equals, bit for bit, the step written out here:
  one vmapped drift over the classes and eq. 7's loss over all samples."""
  problem = table_problem(dim=6)
  c = with_method(load("mnist.py", "smoke,eq7"), "sinkhorn")
  c.drift.tau = 5.0
  trainer = training.Trainer(c, problem)
  table = trainer.device_table()
  state = trainer.init()
  params = jax.tree.map(lambda a: a[0], state.params)
  opt_state = jax.tree.map(lambda a: a[0], state.opt_state)
  spec = trainer.objective.spec
  kw = dict(normalization=spec.normalization, T=spec.T, cost=spec.cost,
            mask_self=spec.mask_self, algorithm=spec.algorithm)
  tau = trainer.objective.tau_array()
  assert float(tau) == 5.0

  @jax.jit
  def written_out(params, opt_state, key, tau):
    k_eps, k_pos = jax.random.split(key)
    eps = jax.random.normal(k_eps, (3, trainer.batch, trainer.noise_dim))
    y_pos = problem_lib.sample_from_table(k_pos, trainer.batch, table)

    def loss_fn(p):
      x = trainer.generate_groups(p, eps)
      V = jax.vmap(lambda x, y: drift_field(x, y, x, tau, **kw))(jax.lax.stop_gradient(x), y_pos)
      x2, V2 = x.reshape(-1, 6), V.reshape(-1, 6)
      return 0.5 * jnp.mean(jnp.sum(jnp.square(x2 - jax.lax.stop_gradient(x2 + V2)), -1))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = trainer.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(lambda p, o, k, t: (lambda r: (r[0], r[1], r[4]))(
      trainer._step(p, o, None, None, k, table, t)))
  a, b = (params, opt_state), (params, opt_state)
  for t in range(3):
    key = jax.random.fold_in(jax.random.key(7), t)
    pa, oa, ma = step(*a, key, tau)  # tau traced, as in the compiled chunk
    pb, ob, lb = written_out(*b, key, tau)  # tau traced here too
    a, b = (pa, oa), (pb, ob)
    assert float(ma["loss"]) == float(lb)
  for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(b[0])):
    np.testing.assert_array_equal(x, y)


def test_shared_trainer_is_reused_across_temperatures_only():
  c = toy_config()
  problem = toy_problem(c)
  first = training.shared_trainer(c, problem)
  other_tau = toy_config()
  other_tau.drift.tau = 0.05
  other_tau.logging.tensorboard = False
  assert training.shared_trainer(other_tau, problem) is first
  other_lr = toy_config()
  other_lr.optim.learning_rate = 0.5
  assert training.shared_trainer(other_lr, problem) is not first
  from experiments import toy  # pylint: disable=g-import-not-at-top
  assert training.shared_trainer(c, toy.make_problem(c)) is not first  # another problem
  # Several temperatures: a step of another shape, so another trainer; the same count
  # of temperatures shares it.
  multi = toy_config()
  with multi.drift.ignore_type():
    multi.drift.tau = (0.05, 0.2)
  second = training.shared_trainer(multi, problem)
  assert second is not first
  assert second.objective.tau_array((0.1, 0.3)).shape == (2,)
  with multi.drift.ignore_type():
    multi.drift.tau = (0.1, 0.3)
  assert training.shared_trainer(multi, problem) is second


@pytest.mark.long
def test_chunk_takes_tau_per_call_without_recompiling():
  c = toy_config()
  trainer = training.Trainer(c, toy_problem(c))
  chunk, keys = trainer.make_chunk(2), trainer.seed_keys()
  a, _ = chunk(trainer.init(), keys, trainer.objective.tau_array(0.1))
  compiles = []

  def listener(event, duration, **_):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(duration)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    b, _ = chunk(trainer.init(), keys, trainer.objective.tau_array(0.5))
    jax.block_until_ready(b)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert compiles == []  # another tau: the same compiled chunk (and init)
  assert max(float(np.max(np.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params))) > 0


def test_train_state_without_ema_flattens_as_three_fields():
  s = trainer_lib.TrainState(jnp.ones(2), jnp.zeros(1), jnp.int32(3))
  assert len(jax.tree.leaves(s)) == 3
  s2 = trainer_lib.TrainState(jnp.ones(2), jnp.zeros(1), jnp.int32(3), jnp.ones(2))
  assert len(jax.tree.leaves(s2)) == 4
  assert jax.tree.map(lambda x: x, s2).ema is not None


@pytest.mark.parametrize("seeds", [1, 2])
@pytest.mark.long
def test_unscanned_chunks_take_the_same_steps_as_scanned_ones(seeds):
  # train.scan = False: one compiled step called from Python, the same keys and so the
  # same trajectory as lax.scan (to float32 rounding: the programs differ).
  problem = table_problem()
  out = {}
  for scan in (True, False):
    c = guided_config()
    c.train.num_seeds = seeds
    c.train.scan = scan
    trainer = training.Trainer(c, problem)
    state = trainer.init()
    tau = trainer.objective.tau_array()
    state, ms = trainer.make_chunk(3)(state, trainer.seed_keys(), tau)
    assert ms["loss"].shape == (seeds, 3) and int(state.step) == 3
    out[scan] = (jax.tree.leaves(state.params), np.asarray(ms["loss"]))
  for a, b in zip(out[True][0], out[False][0]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[True][1], out[False][1], rtol=1e-5)


def test_bad_scan_flag_is_refused():
  c = guided_config()
  c.train.scan = 1
  with pytest.raises(ValueError, match="config.train.scan must be a bool"):
    training.Trainer(c, table_problem())


def test_over_seeds_with_one_seed_equals_vmap():
  fn = lambda p, x, k: (jnp.tanh(x @ p["w"]) * k, p["w"].sum(), p["ema"])
  p = {"w": jax.random.normal(jax.random.key(0), (1, 4, 3)), "ema": None}
  x = jax.random.normal(jax.random.key(1), (5, 4))
  got = trainer_lib.over_seeds(fn, (0, None, None), 1)(p, x, 2.0)
  want = jax.vmap(fn, in_axes=(0, None, None))(p, x, 2.0)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_seed_of_a_multi_seed_run_runs_alone_with_first_seed():
  c = toy_config()
  c.train.num_seeds = 3
  problem = toy_problem(c)
  three = training.Trainer(c, problem)
  state3, _ = three.make_chunk(2)(three.init(), three.seed_keys(), three.objective.tau_array())
  c1 = toy_config()
  c1.train.update(num_seeds=1, first_seed=2)
  alone = training.Trainer(c1, problem)
  np.testing.assert_array_equal(jax.random.key_data(alone.seed_keys())[0],
                                jax.random.key_data(three.seed_keys())[2])
  state1, _ = alone.make_chunk(2)(alone.init(), alone.seed_keys(), alone.objective.tau_array())
  for a, b in zip(jax.tree.leaves(state3.params), jax.tree.leaves(state1.params)):
    np.testing.assert_allclose(a[2], b[0], rtol=1e-5, atol=1e-6)
