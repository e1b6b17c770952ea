"""The trainer: the pure functions of a run (init, the compiled multi-step chunk, the
sampler, evaluation) built from a config and a :class:`Problem`.

The model is a Flax NNX module, trained functionally: ``nnx.split`` yields a static graph
definition and a pytree of parameters. A run trains ``num_seeds`` independent generators
together (a leading seed axis, ``jax.vmap``; one seed is not vmapped), in chunks of
``log_every`` steps per compiled call (``lax.scan``; with ``train.scan = False`` one
compiled step called per step, for convolutional models on the CPU). The key of step ``t`` of seed ``s`` is
``fold_in(fold_in(key(seed), s), t)``, so a resumed run takes exactly the steps an
uninterrupted one takes. The temperature is an argument of the compiled chunk, so the
settings of a sweep that differ only in ``tau`` share one program
(:func:`shared_trainer`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sdrift_jax.models import generators as models
from sdrift_jax.training import bank as bank_lib
from sdrift_jax.training import evaluators
from sdrift_jax.training import mesh as mesh_lib
from sdrift_jax.training import objectives
from sdrift_jax.training import optim
from sdrift_jax.training.problem import Problem, sample_unconditional
from sdrift_jax.training.state import TrainState, over_seeds

__all__ = ["Trainer", "TrainState", "over_seeds"]


class Trainer:
  """Builds the pure functions of a run from its config."""

  def __init__(self, config: ml_collections.ConfigDict, problem: Problem):
    self.config = config
    self.problem = problem
    self.num_seeds = int(config.train.num_seeds)
    self.batch = int(config.train.batch_size)
    self.noise_dim = int(config.model.noise_dim)
    self.objective = objectives.make_objective(
        config, copies=self.num_seeds * problem.groups).with_features(problem.features)
    self.scan = config.train.get("scan", True)
    if not isinstance(self.scan, bool):
      raise ValueError(f"config.train.scan must be a bool, got {self.scan!r}")
    if self.objective.guided and problem.table is None:
      raise ValueError("classifier-free guidance draws unconditional negatives from the "
                       "problem's data table; this problem has none")
    if bool(config.model.get("omega_dim", 0)) != self.objective.guided:
      raise ValueError("config.model.omega_dim > 0 (a generator that takes omega) and "
                       "config.guidance.num_uncond > 0 (classifier-free guidance) go "
                       f"together; got omega_dim={config.model.get('omega_dim', 0)}, "
                       f"num_uncond={self.objective.num_uncond}")
    self.bank = bank_lib.bank_config(config.train)
    self.tx = optim.make_optimizer(config.optim, int(config.train.steps))
    self.ema_decay = float(config.train.get("ema_decay", 0.0))
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"config.train.ema_decay must be in [0, 1) (0 = no EMA), got "
                       f"{self.ema_decay}")
    self.base_key = jax.random.key(int(config.seed))
    model = models.make_generator(config.model, problem.dim, jax.random.key(0),
                                  num_classes=problem.num_classes)
    self.graphdef, _ = nnx.split(model)
    self.mesh, self.batch_spec = mesh_lib.make_mesh(config.get("parallel"), problem.groups,
                                                    self.batch)
    self._compiled = {}  # the jitted functions, built once and reused by every run
    # The feature encoder's weights, replicated on the mesh like the state.
    self.feature_params = problem.feature_params
    if self.mesh is not None and self.feature_params is not None:
      self.feature_params = jax.device_put(self.feature_params,
                                           mesh_lib.replicated(self.mesh))

  def device_table(self):
    """The problem's data table as ``(rows, counts)`` device arrays placed on this
    trainer's mesh (:func:`sdrift_jax.training.mesh.place_table`), or ``None``."""
    if self.problem.table is None:
      return None
    return mesh_lib.place_table(self.problem.table, self.mesh, self.batch_spec)

  # -- pure pieces -----------------------------------------------------------------
  def seed_keys(self) -> jax.Array:
    """The key of every seed: seed ``s`` of a run is ``fold_in(key(config.seed),
    train.first_seed + s)``, so seed 2 of a three-seed run can also run alone
    (``num_seeds=1, first_seed=2``) with the same helper networks and the same result."""
    first = int(self.config.train.get("first_seed", 0))
    return jax.vmap(lambda s: jax.random.fold_in(self.base_key, s))(
        first + jnp.arange(self.num_seeds))

  def init(self) -> TrainState:
    def one(key):
      model = models.make_generator(self.config.model, self.problem.dim,
                                    jax.random.fold_in(key, 0),
                                    num_classes=self.problem.num_classes)
      params = nnx.split(model)[1]
      # The EMA starts at the initial parameters (no debiasing), as the reference's does.
      return params, self.tx.init(params), (params if self.ema_decay else None)
    if "init" not in self._compiled:
      self._compiled["init"] = jax.jit(jax.vmap(one))
    params, opt_state, ema = self._compiled["init"](self.seed_keys())
    state = TrainState(params, opt_state, jnp.zeros((), jnp.int32), ema,
                       self.cold_drift_state(), self.fill_bank())
    if self.mesh is not None:  # replicated on every device, the bank like the batch
      bank = state.bank
      state = jax.device_put(dataclasses.replace(state, bank=None), mesh_lib.replicated(self.mesh))
      if bank is not None:
        items = jax.tree.map(lambda v: jax.device_put(v, mesh_lib.seeded_batch(
            self.mesh, self.batch_spec, v.ndim)), bank.items)
        state = dataclasses.replace(state, bank=bank_lib.Bank(items, jax.device_put(
            bank.ptr, mesh_lib.replicated(self.mesh))))
    return state

  def fill_bank(self):
    """``None`` without ``train.bank_size``; else every seed's bank (leading ``[S]``),
    filled with ``bank_size`` positives per class drawn with the seed's own key."""
    if not self.bank.size:
      return None

    def fill(seed_key, table, aux):
      extra = () if table is None else (table,)
      y = self.problem.sample_positives(jax.random.fold_in(seed_key, 2**30), self.bank.size,
                                        *extra)
      return bank_lib.Bank(self._positive_items(y.reshape(self.problem.groups, -1,
                                                          self.problem.dim), aux),
                           jnp.zeros((), jnp.int32))
    if "bank" not in self._compiled:
      self._compiled["bank"] = jax.jit(jax.vmap(fill, in_axes=(0, None, None)))
    return self._compiled["bank"](self.seed_keys(), self.device_table(), self.feature_params)

  def _positive_items(self, y, feature_params):
    """What the drift couples of positives ``y [G, n, dim]``: their feature sets with
    the ``'feature_drift'`` objective's encoder, else ``y``; sharded like the batch."""
    if self.objective.features is not None:
      return {k: self._shard(v) for k, v in
              self.objective.feature_sets(y, feature_params, grad=False).items()}
    return self._shard(y)

  def cold_drift_state(self):
    """``None`` without ``drift.warm_start``; else the couplings' state of every seed
    (leading ``[S]``), shaped as one step returns it, marked cold (``valid = False``)."""
    if not self.objective.warm_start:
      return None
    G, dim = self.problem.groups, self.problem.dim
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    y_unc = f32(G, self.objective.num_uncond, dim) if self.objective.guided else None
    omega = f32() if self.objective.guided else None
    shapes = jax.eval_shape(
        lambda x, y, u, w, tau, aux: self.objective.step_loss(x, y, u, w, tau, aux)[2],
        f32(G, self.batch, dim), f32(G, self.bank.num_positives, dim), y_unc, omega,
        jax.ShapeDtypeStruct(np.shape(self.objective.tau_array()), jnp.float32),
        self.feature_params)
    return jax.tree.map(lambda s: jnp.zeros((self.num_seeds,) + s.shape, s.dtype), shapes)

  def eval_params(self, state: TrainState):
    """The parameters that evaluation and samples use: the EMA if there is one."""
    return state.params if state.ema is None else state.ema

  def _shard(self, x):
    return mesh_lib.constrain(x, self.mesh, self.batch_spec)

  def generate(self, params, eps, labels=None, omega=None):
    model = nnx.merge(self.graphdef, params)
    if omega is None:
      return model(eps, labels)
    return model(eps, labels, jnp.broadcast_to(omega, eps.shape[:1]))

  def generate_groups(self, params, eps, omega=None):
    """``eps [G, n, noise] -> [G, n, dim]``, group ``g`` generated with label ``g``;
    guided generators take ``omega`` (default: the objective's ``eval_omega``)."""
    G, n, _ = eps.shape
    labels = (jnp.repeat(jnp.arange(G), n) if self.problem.num_classes else None)
    if self.objective.guided and omega is None:
      omega = self.objective.eval_omega
    x = self.generate(params, eps.reshape(G * n, -1), labels, omega)
    return x.reshape(G, n, -1)

  def _step(self, params, opt_state, drift_state, bank, key, table, tau,
            feature_params=None):
    k_eps, k_pos = jax.random.split(key)
    k_unc, k_omega = jax.random.split(jax.random.fold_in(key, 1))
    G = self.problem.groups
    eps = self._shard(jax.random.normal(k_eps, (G, self.batch, self.noise_dim)))
    extra = () if table is None else (table,)
    fresh = self.bank.push if bank is not None else self.bank.num_positives
    y_new = self._shard(self.problem.sample_positives(k_pos, fresh, *extra)
                        .reshape(G, -1, self.problem.dim))
    if bank is None:
      y_pos = y_new
    else:  # the new positives into the bank, the coupled ones drawn from it
      bank = bank_lib.push(bank, self._positive_items(y_new, feature_params), fresh)
      bank = bank._replace(items=jax.tree.map(self._shard, bank.items))
      y_pos = jax.tree.map(self._shard, bank_lib.draw(bank, jax.random.fold_in(key, 2),
                                                      self.bank.num_positives))
    omega, y_unc = self.sample_guidance(k_omega, k_unc, table)

    def loss_fn(p):
      x = self.generate_groups(p, eps, omega)
      loss, rms, new_state, half = self.objective.step_loss(x, y_pos, y_unc, omega, tau,
                                                            feature_params, drift_state)
      return loss, (rms, new_state, half)

    (loss, (drift_rms, drift_state, half)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(params)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = dict(loss=loss, drift_rms=drift_rms)
    if self.objective.controls:
      metrics["half_steps"] = half
    return params, opt_state, jax.lax.stop_gradient(drift_state), bank, metrics

  def sample_guidance(self, k_omega, k_unc, table=None):
    """``(omega, y_uncond [G, U, dim])`` of one guided step, ``(None, None)`` otherwise:
    one omega for every class (as the reference), each class its own unconditional
    negatives drawn from all classes' data."""
    objective = self.objective
    if not objective.guided:
      return None, None
    omega = objective.sample_omega(k_omega)
    y_unc = jax.vmap(lambda k: sample_unconditional(k, objective.num_uncond, table))(
        jax.random.split(k_unc, self.problem.groups))
    return omega, y_unc

  def make_chunk(self, length: int):
    """``(state, seed_keys, tau) -> (state, metrics [S, length])``: ``length`` steps in
    one compiled call, ``tau`` from :meth:`Objective.tau_array` (traced: a sweep over
    temperatures reuses the compiled program).

    With ``train.ema_decay = d > 0`` every optimizer step is followed by
    ``ema <- d * ema + (1 - d) * params``. The training data table (if any) and the
    problem's feature-encoder parameters are arguments of the compiled function, not
    constants baked into it, so the table keeps its sharding and neither is copied per
    call.

    ``train.scan = False`` compiles one step and calls it ``length`` times from Python
    (the same keys, so the same steps up to float rounding: another program): XLA's CPU
    backend ran the pixel generator's step
    6.5 times slower inside ``lax.scan`` than as a jitted call (5.73 s against 0.89 s;
    ``python -m benchmarks.pixel_step_cpu``, ``docs/performance.md``).
    """
    n = length if self.scan else 1
    if n not in self._compiled:
      self._compiled[n] = jax.jit(self._chunk_fn(n), donate_argnums=0)
    jitted = self._compiled[n]
    aux = self.feature_params
    if self.scan:
      return lambda state, seed_keys, tau: jitted(state, seed_keys, self.device_table(),
                                                  tau, aux)

    def loop(state, seed_keys, tau):
      table, metrics = self.device_table(), []
      for _ in range(length):
        state, m = jitted(state, seed_keys, table, tau, aux)
        metrics.append(m)
      return state, jax.tree.map(lambda *ms: jnp.concatenate(ms, axis=1), *metrics)
    return loop

  def _chunk_fn(self, length: int):
    def one_seed(params, opt_state, ema, drift_state, bank, seed_key, step0, table, tau,
                 aux):
      def body(carry, i):
        p, o, e, d, b = carry
        p, o, d, b, m = self._step(p, o, d, b, jax.random.fold_in(seed_key, step0 + i),
                                   table, tau, aux)
        if e is not None:
          e = optax.incremental_update(p, e, 1.0 - self.ema_decay)
        return (p, o, e, d, b), m
      carry = (params, opt_state, ema, drift_state, bank)
      if length == 1:  # no loop: convolutions inside a scan run slower on the CPU (docs)
        carry, m = body(carry, 0)
        return carry, jax.tree.map(lambda v: v[None], m)
      return jax.lax.scan(body, carry, jnp.arange(length))

    def chunk(state: TrainState, seed_keys, table, tau, aux):
      (params, opt_state, ema, drift_state, bank), ms = over_seeds(
          one_seed, (0, 0, 0, 0, 0, 0, None, None, None, None), self.num_seeds)(
              state.params, state.opt_state, state.ema, state.drift_state, state.bank,
              seed_keys, state.step, table, tau, aux)
      return TrainState(params, opt_state, state.step + length, ema, drift_state, bank), ms
    return chunk

  def make_sampler(self):
    """Jitted ``(params [S], eps [G, n, noise]) -> samples [S, G, n, dim]``."""
    if "sampler" not in self._compiled:
      self._compiled["sampler"] = jax.jit(over_seeds(self.generate_groups, (0, None),
                                                     self.num_seeds))
    return self._compiled["sampler"]

  def make_diagnostics(self):
    """``(x [S, G, n, dim], y [G, n, dim], tau) -> [S, 2]``: the largest marginal
    error over groups of the positive and negative couplings (jitted)."""
    if "diagnostics" not in self._compiled:
      per_group = jax.vmap(self.objective.marginal_errors, in_axes=(0, 0, None, None))
      self._compiled["diagnostics"] = jax.jit(jax.vmap(
          lambda x, y, tau, aux: jnp.max(per_group(x, y, tau, aux), axis=0),
          in_axes=(0, None, None, None)))
    jitted = self._compiled["diagnostics"]
    return lambda x, y, tau: jitted(x, y, tau, self.feature_params)

  def evaluate(self, params, eval_eps, tau, raw_params=None) -> tuple[dict, np.ndarray]:
    """Runs the evaluators (the defaults and the problem's) on samples of ``params``.

    Args:
      params: the parameters evaluated (the EMA when training keeps one), ``[S, ...]``.
      eval_eps: noise ``[G, n, noise_dim]``.
      tau: the run's temperature (:meth:`Objective.tau_array`), for the couplings.
      raw_params: optional second parameter set (the raw ones when ``params`` is the EMA),
        whose W2^2 is recorded as ``w2_raw``.

    Returns:
      ``(record, samples [S, G, n, dim])``, samples of ``params``.
    """
    sampler, diagnostics = self.make_sampler(), self.make_diagnostics()
    samples = np.asarray(sampler(params, eval_eps))  # [S, G, n, dim]
    sets = self.problem.eval_sets()
    ctx = evaluators.EvalContext(
        samples=samples, eval_sets=sets, batch=self.batch,
        marginal_errors=lambda x, y: diagnostics(jnp.asarray(x), jnp.asarray(y), tau))
    record = evaluators.evaluate(self.evaluators, ctx)
    if raw_params is not None:
      raw = np.asarray(sampler(raw_params, eval_eps))
      record["w2_raw"] = np.mean(evaluators.w2_per_seed(raw, sets), axis=1).tolist()
    return record, samples

  @property
  def evaluators(self) -> tuple:
    return evaluators.default_evaluators() + tuple(self.problem.evaluators)
