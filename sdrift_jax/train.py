"""Generator training by the drifting loss (paper eq. 7 / 18).

The model is a Flax NNX module, trained functionally: ``nnx.split`` yields a static graph
definition and a pytree of parameters. A run trains ``num_seeds`` independent generators
together (a leading seed axis, ``jax.vmap``), in chunks of ``log_every`` steps per jitted
call (``lax.scan``), with one host sync per chunk. The key of step ``t`` of seed ``s`` is
``fold_in(fold_in(key(seed), s), t)``, so a run resumed from a checkpoint takes exactly
the steps an uninterrupted run takes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Optional

import jax
from jax.sharding import NamedSharding, PartitionSpec
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sdrift_jax import checkpoint as checkpoint_lib
from sdrift_jax import metrics as metrics_lib
from sdrift_jax import models
from sdrift_jax import objectives
from sdrift_jax import workdir as workdir_lib

log = logging.getLogger("sdrift_jax")


class NonFiniteLossError(FloatingPointError):
  """Raised when training produces a NaN or infinite loss."""


@jax.tree_util.register_pytree_with_keys_class
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Parameters, optimizer state and (optionally) the EMA of the parameters.

  Attributes:
    params: the generator parameters, leading seed axis ``[S, ...]``.
    opt_state: the optimizer state, leading seed axis.
    step: int32 scalar, the number of optimizer steps taken (shared by all seeds).
    ema: ``None`` when ``train.ema_decay`` is 0, else the exponential moving average of
      ``params`` (same tree).

  A pytree whose children are the fields that are not ``None``: without an EMA it
  flattens, and so checkpoints, exactly as the three-field state did before the EMA
  existed, so those checkpoints still restore.
  """
  params: Any
  opt_state: Any
  step: jax.Array
  ema: Any = None

  def _fields(self) -> tuple[str, ...]:
    return ("params", "opt_state", "step") + (() if self.ema is None else ("ema",))

  def tree_flatten_with_keys(self):
    return [(jax.tree_util.GetAttrKey(n), getattr(self, n)) for n in self._fields()], None

  def tree_flatten(self):
    return [getattr(self, n) for n in self._fields()], None

  @classmethod
  def tree_unflatten(cls, _, children):
    return cls(*children)


def drift_kwargs(drift_config) -> dict:
  """The keyword arguments of :func:`sdrift_jax.drift_field` named by a config."""
  tau = drift_config.tau
  tau = tuple(tau) if isinstance(tau, (list, tuple)) else float(tau)
  return dict(tau=tau, T=int(drift_config.T), normalization=drift_config.normalization,
              cost=drift_config.cost, mask_self=bool(drift_config.mask_self),
              algorithm=drift_config.get("algorithm", "auto"))


def check_drift_config(config, dim: int = 2, conditional: bool = False) -> None:
  """Raises a ValueError naming the config block if ``config.drift``, ``config.loss`` or
  ``config.guidance`` would be rejected (see :mod:`sdrift_jax.objectives`)."""
  objectives.check_objective_config(config, dim, conditional)


SCHEDULES = ("constant", "cosine", "warmup_constant")


def make_schedule(optim_config, lr: float, total_steps: int):
  """The learning rate of ``config.optim.schedule``: a float or an optax schedule.

  ``'constant'``: ``lr``. ``'cosine'``: linear warm-up from 0 over ``warmup_steps`` (at
  least 1), then cosine decay to 0 at ``total_steps`` (``train.steps``, so extending a run
  stretches the decay). ``'warmup_constant'``: the reference MNIST script's ramp, ``lr *
  (t + 1) / warmup_steps`` at optimizer step ``t`` (0-based) while ``t < warmup_steps``,
  then ``lr``; independent of ``total_steps``.
  """
  schedule, warmup = optim_config.schedule, int(optim_config.warmup_steps)
  if schedule == "constant":
    return lr
  if schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), total_steps)
  if schedule == "warmup_constant":
    if warmup < 1:
      raise ValueError("config.optim.schedule='warmup_constant' needs "
                       f"config.optim.warmup_steps >= 1, got {warmup}")
    # Written out rather than optax.linear_schedule(lr / W, lr, W - 1), whose float32
    # interpolation misses lr / W at t = 0 by ~1e-5 relative (cancellation).
    return lambda count: lr * jnp.minimum(count + 1, warmup) / warmup
  raise ValueError(f"unknown config.optim.schedule {schedule!r}: expected one of {SCHEDULES}")


def _base_optimizer(optim_config, lr, total_steps: int) -> optax.GradientTransformation:
  lr = make_schedule(optim_config, lr, total_steps)
  if optim_config.name == "adam":
    return optax.adam(lr, b1=optim_config.b1, b2=optim_config.b2)
  if optim_config.name == "adamw":
    return optax.adamw(lr, b1=optim_config.b1, b2=optim_config.b2,
                       weight_decay=optim_config.weight_decay)
  raise ValueError(f"unknown config.optim.name {optim_config.name!r}: "
                   "expected 'adam' or 'adamw'")


def _embedding_labels(params):
  """``'embed'`` for the class-embedding parameters, ``'default'`` for the rest."""
  def label(path, _):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return "embed" if "embed" in names else "default"
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  """Adam or AdamW (``b1``, ``b2``, ``weight_decay``), a schedule (:func:`make_schedule`)
  and global-norm clipping of the gradients (``clip_norm``, 0 = off) before the update.

  ``optim.embed_learning_rate`` (optional) gives the class embeddings their own learning
  rate (the paper's FFHQ setup: 3e-4 for the network, 1e-3 for the embeddings).
  """
  tx = _base_optimizer(optim_config, optim_config.learning_rate, total_steps)
  embed_lr = optim_config.get("embed_learning_rate", None)
  if embed_lr:
    tx = optax.multi_transform(
        {"default": tx, "embed": _base_optimizer(optim_config, embed_lr, total_steps)},
        _embedding_labels)
  if optim_config.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.clip_norm), tx)
  return tx


@dataclasses.dataclass(frozen=True)
class Problem:
  """What a generator is trained to match.

  Unconditional problems have one group; class-conditional ones have ``num_classes``
  groups, and every train step draws ``batch_size`` generated and positive samples per
  class and computes the drift within each class (vmapped over classes).

  Attributes:
    dim: data dimension.
    sample_positives: ``(key, n) -> [n, dim]`` (unconditional) or ``[C, n, dim]``
      (conditional): data samples for one train step.
    eval_data: held-out samples for W2^2: an array ``[M, dim]``, or a tuple of ``C``
      arrays ``[M_c, dim]``.
    name: label for logs and figures.
    num_classes: ``None`` for unconditional generators.
    extra_eval: optional ``samples [S, G, n, dim] -> {name: [S] values}`` run at each
      evaluation (class accuracy for MNIST, say).
    table: optional :class:`PositiveTable`, the training data as a device array that
      the trainer shards over its mesh; ``sample_positives`` then takes it as a third
      argument, ``(key, n, table_arrays)``.
  """
  dim: int
  sample_positives: Callable[..., jax.Array]
  eval_data: Any
  name: str = "data"
  num_classes: Optional[int] = None
  extra_eval: Optional[Callable[[np.ndarray], dict]] = None
  table: Optional["PositiveTable"] = None

  @property
  def groups(self) -> int:
    return self.num_classes or 1

  def eval_sets(self) -> list:
    return list(self.eval_data) if self.num_classes else [self.eval_data]


def make_mesh(parallel_config, groups: int, batch: int):
  """``(mesh, spec)`` for ``config.parallel``, or ``(None, None)`` on one device.

  ``parallel.devices``: how many devices (0: all); ``parallel.coupling``: ``'per_group'``
  shards the group (class) axis, so each device couples the classes it holds (the same
  maths as one device; needs ``groups`` divisible by the device count); ``'global'``
  shards the batch axis within each group, and XLA gathers what the couplings need.
  Parameters are replicated. The mesh axis is ``Auto`` (``jax.make_mesh`` defaults to
  ``Explicit``, under which the pairwise cost of two batch-sharded arrays does not
  compile).
  """
  if parallel_config is None:
    return None, None
  coupling = parallel_config.get("coupling", "per_group")
  if coupling not in ("per_group", "global"):
    raise ValueError(f"unknown config.parallel.coupling {coupling!r}: expected "
                     "'per_group' or 'global'")
  n = int(parallel_config.get("devices", 0)) or jax.device_count()
  if n > jax.device_count():
    raise ValueError(f"config.parallel.devices = {n} but only {jax.device_count()} "
                     "device(s) are visible")
  if n == 1:
    return None, None
  if coupling == "per_group":
    if groups % n:
      raise ValueError(f"config.parallel.coupling='per_group' shards the {groups} groups "
                       f"(classes) over {n} devices: not divisible; use 'global'")
    spec = ("data", None)
  else:
    if batch % n:
      raise ValueError(f"config.parallel.coupling='global' shards the batch of {batch} "
                       f"over {n} devices: not divisible")
    spec = (None, "data")
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])
  return mesh, spec


class PositiveTable:
  """Per-class training data, padded to ``[C, rows, dim]``, read shard by shard.

  ``sources`` are ``C`` array-likes ``[N_c, dim]`` that support ``len`` and row slicing:
  NumPy arrays, memory maps, or :class:`sdrift_jax.data.latents.RowView` s. The trainer
  places the table on its mesh with ``jax.make_array_from_callback``, which asks each
  process only for the blocks its own devices hold, and :meth:`read` reads only those
  rows: per-group coupling shards the class axis (a process reads its classes), global
  coupling the row axis (a process reads its slice of every class). Sampling inside the
  step draws the same indices whatever the layout, so the batch does not depend on it.
  """

  def __init__(self, sources):
    self.sources = list(sources)
    self.counts = np.array([len(s) for s in self.sources], np.int32)
    if len(self.sources) == 0 or self.counts.min() < 1:
      raise ValueError(f"every class needs training samples; counts {self.counts.tolist()}")
    dims = {int(s.shape[1]) for s in self.sources}
    if len(dims) != 1:
      raise ValueError(f"ragged data dimensions over classes: {sorted(dims)}")
    self.dim = dims.pop()
    self.rows_read = 0  # how many data rows this process has read (tests, logs)
    self.placed = {}  # sharding (None: one device) -> (rows, counts), reused by a sweep

  def shape(self, row_multiple: int = 1) -> tuple[int, int, int]:
    rows = -(-int(self.counts.max()) // row_multiple) * row_multiple
    return (len(self.sources), rows, self.dim)

  def read(self, index, shape) -> np.ndarray:
    """The block ``index`` (a tuple of slices, as ``make_array_from_callback`` gives) of the
    padded table of ``shape``; padding rows are zeros and never sampled."""
    classes, rows, cols = (index + (slice(None),) * 3)[:3]
    c_ids = range(*classes.indices(shape[0]))
    r0, r1, _ = rows.indices(shape[1])
    out = np.zeros((len(c_ids), r1 - r0, shape[2]), np.float32)
    for i, c in enumerate(c_ids):
      hi = min(r1, int(self.counts[c]))
      if hi > r0:
        out[i, : hi - r0] = np.asarray(self.sources[c][r0:hi], np.float32)
        self.rows_read += hi - r0
    return out[:, :, cols]


def sample_unconditional(key, n: int, table) -> jax.Array:
  """``n`` rows from all classes together, uniformly with replacement: ``[n, dim]``
  (a class is drawn in proportion to its row count, then a row within it)."""
  rows, counts = table
  k_class, k_row = jax.random.split(key)
  c = jax.random.choice(k_class, counts.shape[0], (n,), p=counts / jnp.sum(counts))
  r = jnp.minimum((jax.random.uniform(k_row, (n,)) * counts[c]).astype(jnp.int32),
                  counts[c] - 1)
  return rows[c, r]


def sample_from_table(key, n: int, table) -> jax.Array:
  """``n`` rows per class, uniformly with replacement: ``[C, n, dim]``."""
  rows, counts = table
  u = jax.random.uniform(key, (rows.shape[0], n))
  idx = jnp.minimum((u * counts[:, None]).astype(jnp.int32), counts[:, None] - 1)
  return jnp.take_along_axis(rows, idx[..., None], axis=1)


def class_conditional_problem(per_class_train, eval_sets, name: str = "data",
                              extra_eval=None) -> Problem:
  """A :class:`Problem` with one group per class; positives drawn with replacement.

  Args:
    per_class_train: ``C`` array-likes ``[N_c, dim]`` (ragged ``N_c`` allowed; lazy row
      views are read only where a process's devices need them, see
      :class:`PositiveTable`).
    eval_sets: list of ``C`` held-out arrays ``[M_c, dim]``.
    name: label for logs.
    extra_eval: see :class:`Problem`.
  """
  table = PositiveTable(per_class_train)
  return Problem(dim=table.dim, sample_positives=sample_from_table,
                 eval_data=tuple(eval_sets), name=name, num_classes=len(table.counts),
                 extra_eval=extra_eval, table=table)


def method_config(config, method: str, methods=("baseline", "sinkhorn")):
  """A copy of ``config`` whose drift is the sweep ``method``: ``'baseline'`` takes
  ``config.baseline`` (normalization, mask_self, and ``form`` for the feature-drift
  objective), ``'sinkhorn'`` the unmasked Sinkhorn (split form)."""
  if method not in methods:
    raise ValueError(f"unknown method {method!r} in config.sweep.methods: expected {methods}")
  sub = ml_collections.ConfigDict(config.to_dict())
  if method == "baseline":
    sub.drift.normalization = config.baseline.normalization
    sub.drift.mask_self = bool(config.baseline.mask_self)
    if "form" in config.baseline:
      sub.loss.form = config.baseline.form
  else:
    sub.drift.normalization = "sinkhorn"
    sub.drift.mask_self = False
    if "loss" in sub:
      sub.loss.form = "split"
  return sub


class Trainer:
  """Builds the pure functions of a run from its config."""

  def __init__(self, config: ml_collections.ConfigDict, problem: Problem):
    self.config = config
    self.problem = problem
    self.num_seeds = int(config.train.num_seeds)
    self.batch = int(config.train.batch_size)
    self.noise_dim = int(config.model.noise_dim)
    self.objective = objectives.make_objective(config)
    if self.objective.guided and problem.table is None:
      raise ValueError("classifier-free guidance draws unconditional negatives from the "
                       "problem's data table; this problem has none")
    if bool(config.model.get("omega_dim", 0)) != self.objective.guided:
      raise ValueError("config.model.omega_dim > 0 (a generator that takes omega) and "
                       "config.guidance.num_uncond > 0 (classifier-free guidance) go "
                       f"together; got omega_dim={config.model.get('omega_dim', 0)}, "
                       f"num_uncond={self.objective.num_uncond}")
    self.tx = make_optimizer(config.optim, int(config.train.steps))
    self.ema_decay = float(config.train.get("ema_decay", 0.0))
    if not 0.0 <= self.ema_decay < 1.0:
      raise ValueError(f"config.train.ema_decay must be in [0, 1) (0 = no EMA), got "
                       f"{self.ema_decay}")
    self.base_key = jax.random.key(int(config.seed))
    model = models.make_generator(config.model, problem.dim, jax.random.key(0),
                                  num_classes=problem.num_classes)
    self.graphdef, _ = nnx.split(model)
    self.mesh, self.batch_spec = make_mesh(config.get("parallel"), problem.groups, self.batch)
    self._table = None

  def device_table(self):
    """The problem's :class:`PositiveTable` as ``(rows, counts)`` device arrays (built on
    first use, then shared by every trainer of the problem with the same layout): rows
    sharded like the batch (class axis per group, row axis globally), each process
    reading only its devices' blocks; ``None`` without a table."""
    table = self.problem.table
    if table is None or self._table is not None:
      return self._table
    if self.mesh is None:
      sharding = None
    else:
      per_group = self.batch_spec[0] is not None
      sharding = NamedSharding(self.mesh, PartitionSpec("data", None, None) if per_group
                               else PartitionSpec(None, "data", None))
    if sharding not in table.placed:
      if sharding is None:
        shape = table.shape()
        table.placed[None] = (jnp.asarray(table.read((slice(None),) * 3, shape)),
                              jnp.asarray(table.counts))
      else:
        shape = table.shape(1 if per_group else self.mesh.devices.size)
        rows = jax.make_array_from_callback(shape, sharding,
                                            lambda index: table.read(index, shape))
        counts = jax.device_put(table.counts, NamedSharding(self.mesh, PartitionSpec()))
        table.placed[sharding] = (rows, counts)
    self._table = table.placed[sharding]
    return self._table

  # -- pure pieces -----------------------------------------------------------------
  def seed_keys(self) -> jax.Array:
    return jax.vmap(lambda s: jax.random.fold_in(self.base_key, s))(
        jnp.arange(self.num_seeds))

  def init(self) -> TrainState:
    def one(key):
      model = models.make_generator(self.config.model, self.problem.dim,
                                    jax.random.fold_in(key, 0),
                                    num_classes=self.problem.num_classes)
      params = nnx.split(model)[1]
      # The EMA starts at the initial parameters (no debiasing), as the reference's does.
      return params, self.tx.init(params), (params if self.ema_decay else None)
    params, opt_state, ema = jax.jit(jax.vmap(one))(self.seed_keys())
    state = TrainState(params, opt_state, jnp.zeros((), jnp.int32), ema)
    if self.mesh is not None:  # the whole state replicated on every device
      state = jax.device_put(state, NamedSharding(self.mesh, PartitionSpec()))
    return state

  def eval_params(self, state: TrainState):
    """The parameters that evaluation and samples use: the EMA if there is one."""
    return state.params if state.ema is None else state.ema

  def _shard(self, x):
    """Constrains a per-step ``[G, B, ...]`` array to the mesh (no-op on one device)."""
    if self.mesh is None:
      return x
    spec = PartitionSpec(*self.batch_spec, *([None] * (x.ndim - 2)))
    return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

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

  def _step(self, params, opt_state, key, table=None):
    k_eps, k_pos = jax.random.split(key)
    k_unc, k_omega = jax.random.split(jax.random.fold_in(key, 1))
    G = self.problem.groups
    eps = self._shard(jax.random.normal(k_eps, (G, self.batch, self.noise_dim)))
    extra = () if table is None else (table,)
    y_pos = self._shard(self.problem.sample_positives(k_pos, self.batch, *extra)
                        .reshape(G, -1, self.problem.dim))
    omega, y_unc = self.sample_guidance(k_omega, k_unc, table)

    def loss_fn(p):
      x = self.generate_groups(p, eps, omega)
      return self.objective.batch_loss(x, y_pos, y_unc, omega)

    (loss, drift_rms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, dict(loss=loss, drift_rms=drift_rms)

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
    """Jitted ``(state, seed_keys) -> (state, metrics [S, length])`` for ``length`` steps.

    With ``train.ema_decay = d > 0`` every optimizer step is followed by
    ``ema <- d * ema + (1 - d) * params``. The training data table (if any) is an
    argument of the compiled function, not a constant baked into it, so it keeps its
    sharding and is not copied per call.
    """
    def one_seed(params, opt_state, ema, seed_key, step0, table):
      def body(carry, i):
        p, o, e = carry
        p, o, m = self._step(p, o, jax.random.fold_in(seed_key, step0 + i), table)
        if e is not None:
          e = optax.incremental_update(p, e, 1.0 - self.ema_decay)
        return (p, o, e), m
      carry, ms = jax.lax.scan(body, (params, opt_state, ema), jnp.arange(length))
      return carry, ms

    def chunk(state: TrainState, seed_keys, table):
      (params, opt_state, ema), ms = jax.vmap(one_seed, in_axes=(0, 0, 0, 0, None, None))(
          state.params, state.opt_state, state.ema, seed_keys, state.step, table)
      return TrainState(params, opt_state, state.step + length, ema), ms

    jitted = jax.jit(chunk, donate_argnums=0)
    return lambda state, seed_keys: jitted(state, seed_keys, self.device_table())

  def make_sampler(self):
    """Jitted ``(params [S], eps [G, n, noise]) -> samples [S, G, n, dim]``."""
    return jax.jit(jax.vmap(self.generate_groups, in_axes=(0, None)))

  def make_diagnostics(self):
    """Jitted ``(x [S, G, n, dim], y [G, n, dim]) -> [S, 2]``: the largest marginal error
    over groups of the positive and negative couplings."""
    per_group = jax.vmap(self.objective.marginal_errors)
    return jax.jit(jax.vmap(lambda x, y: jnp.max(per_group(x, y), axis=0), in_axes=(0, None)))

  def _w2(self, samples) -> list[list[float]]:
    """W2^2 of ``samples [S, G, n, dim]`` against each group's held-out set: ``[S][G]``."""
    sets = self.problem.eval_sets()
    return [[metrics_lib.w2_squared(seed[g], sets[g]) for g in range(len(sets))]
            for seed in samples]

  def evaluate(self, params, eval_eps, sampler, diagnostics, raw_params=None
               ) -> tuple[dict, np.ndarray]:
    """W2^2 per seed (averaged over classes), marginal errors, and the problem's extras.

    Args:
      params: the parameters evaluated (the EMA when training keeps one), ``[S, ...]``.
      eval_eps: noise ``[G, n, noise_dim]``.
      sampler: from :meth:`make_sampler`.
      diagnostics: from :meth:`make_diagnostics`.
      raw_params: optional second parameter set (the raw ones when ``params`` is the EMA),
        whose W2^2 is recorded as ``w2_raw``.

    Returns:
      ``(record, samples [S, G, n, dim])``, samples of ``params``.
    """
    samples = np.asarray(sampler(params, eval_eps))  # [S, G, n, dim]
    sets = self.problem.eval_sets()
    w2 = self._w2(samples)
    record = dict(w2=np.mean(w2, axis=1).tolist())
    if self.problem.num_classes:
      record["w2_per_class"] = w2
    if raw_params is not None:
      record["w2_raw"] = np.mean(self._w2(np.asarray(sampler(raw_params, eval_eps))),
                                 axis=1).tolist()
    m = min(self.batch, min(len(e) for e in sets), samples.shape[2])
    y = jnp.asarray(np.stack([e[:m] for e in sets]))
    errs = np.asarray(diagnostics(jnp.asarray(samples[:, :, :m]), y))
    record["marginal_error_pos"] = errs[:, 0].tolist()
    record["marginal_error_neg"] = errs[:, 1].tolist()
    if self.problem.extra_eval is not None:
      record.update(self.problem.extra_eval(samples))
    return record, samples


class MetricWriter:
  """Appends JSON lines to ``workdir/metrics.jsonl`` (process 0 only)."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    if self.enabled and os.path.exists(self.path):
      # Records after the restored step will be recomputed, identically: drop them (and a
      # partial last line, which read_jsonl drops with a warning).
      kept = [r for r in workdir_lib.read_jsonl(self.path) if r.get("step", 0) <= resume_step]
      workdir_lib.write_jsonl(self.path, kept)

  def write(self, record: dict) -> None:
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_report(workdir: str, lines: list[str], payload, name: str = "table") -> str:
  """Writes ``<name>.md`` (the lines) and ``results.json`` (the payload) in ``workdir``;
  returns the markdown path."""
  path = os.path.join(workdir, f"{name}.md")
  workdir_lib.atomic_write(path, "\n".join(lines) + "\n")
  workdir_lib.atomic_write_json(os.path.join(workdir, "results.json"), payload, indent=1)
  return path


def run_seconds(history: list[dict], log_every: int) -> float:
  """Wall time of a run from its metric records (survives resumes); records written
  before ``seconds`` was logged count their training time only."""
  return float(sum(r.get("seconds", log_every / r["steps_per_s"]) for r in history))


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``workdir/metrics.jsonl`` (see :func:`sdrift_jax.workdir.read_jsonl`:
  a partial last line is dropped with a warning, any other bad line raises)."""
  return workdir_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))


#: Config keys added after runs were written without them, and the value that computes
#: what those runs computed: a ``config.json`` that lacks one compares as holding it.
FIELDS_WITH_FORMER_DEFAULTS = {"train.ema_decay": 0.0, "model.res_scale": 1.0,
                               "model.out_init_std": 0.0, "model.omega_dim": 0,
                               "model.init": "flax",
                               "drift.relative_tau": False,
                               **objectives.FORMER_DEFAULTS}


def write_config(config, workdir: str) -> None:
  """Writes ``config.json``; refuses a workdir that holds a run of another config.

  Keys that do not change what a run computes are not compared: ``train.steps`` (a
  finished run may be extended), ``sweep.*`` (a setting of a sweep is the same run in any
  sweep), ``drift.algorithm`` (all algorithms give the same drift to rounding) and
  ``parallel.*`` (the device layout gives the same training to float tolerance). A key of
  :data:`FIELDS_WITH_FORMER_DEFAULTS` missing from the old file takes its former default.
  """
  path = os.path.join(workdir, "config.json")
  text = config.to_json(indent=2, sort_keys=True)
  if os.path.exists(path):
    new = _flatten(json.loads(text))
    with open(path) as f:
      try:
        written = json.load(f)
      except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it or use another "
                         "--workdir") from None
    old = {**{k: v for k, v in FIELDS_WITH_FORMER_DEFAULTS.items() if k in new},
           **_flatten(written)}
    ignore = ("train.steps", "sweep.", "drift.algorithm", "parallel.")
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)
                  and not any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignore))
    if diff:
      raise ValueError(f"workdir {workdir} holds a run of a different config "
                       f"(differs in {diff}); use another --workdir or delete it")
    if old.get("train.steps") != new.get("train.steps") and new.get("optim.schedule") == "cosine":
      log.warning("config.train.steps changed from %s to %s: the cosine schedule decays over "
                  "train.steps, so the resumed steps follow a different schedule than the "
                  "first run's", old.get("train.steps"), new.get("train.steps"))
  if jax.process_index() == 0:
    workdir_lib.atomic_write(path, text)


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_train_config(train_config) -> None:
  steps, every = int(train_config.steps), int(train_config.log_every)
  for name in ("steps", "batch_size", "num_seeds", "log_every", "eval_every",
               "checkpoint_every"):
    if int(train_config[name]) < 1:
      raise ValueError(f"config.train.{name} must be >= 1, got {train_config[name]}")
  for name in ("eval_every", "checkpoint_every"):
    if int(train_config[name]) % every:
      raise ValueError(f"config.train.{name} ({train_config[name]}) must be a multiple of "
                       f"config.train.log_every ({every})")
  if steps % every:
    raise ValueError(f"config.train.steps ({steps}) must be a multiple of "
                     f"config.train.log_every ({every})")


def train_generator(config: ml_collections.ConfigDict, workdir: str, problem: Problem
                    ) -> dict:
  """Trains ``config.train.num_seeds`` generators; resumes from ``workdir`` if it can.

  Writes ``config.json``, ``metrics.jsonl`` (one record per ``log_every`` steps, with
  W2^2 per seed every ``eval_every`` steps) and orbax checkpoints under
  ``workdir/checkpoints``. With ``train.ema_decay > 0`` the evaluations and the returned
  samples use the EMA of the parameters: ``w2`` (and every other metric) is the EMA's,
  ``w2_raw`` the raw parameters', and such records carry ``eval_params: 'ema'``.

  The run holds ``workdir/.lock`` throughout (process 0; :func:`sdrift_jax.workdir.hold`),
  so a second run into the same workdir is refused. Resuming takes the newest kept
  checkpoint that verifies (:meth:`sdrift_jax.checkpoint.Checkpointer.restore_latest`).

  Returns:
    A summary: the last evaluation record, final samples ``[S, n, dim]`` (``[S, G, n,
    dim]`` for class-conditional problems), the final state and the trainer.

  Raises:
    sdrift_jax.workdir.WorkdirBusyError: another run holds the workdir.
    ValueError: a bad config, a workdir of another config, or ``train.steps`` below the
      step the workdir's checkpoint is at.
    NonFiniteLossError: the loss became NaN or infinite.
  """
  check_train_config(config.train)
  check_drift_config(config, problem.dim, bool(problem.num_classes))
  trainer = Trainer(config, problem)  # checks the device layout before writing anything
  with workdir_lib.hold(workdir, enabled=jax.process_index() == 0):
    return _train_generator(config, workdir, problem, trainer)


def _zero_drift_note(name: str, first: int, last: int) -> None:
  log.info("%s: the drift is exactly 0 at every step %d-%d, so the loss is exactly 0 and "
           "the generator does not move: at this tau the kernel weights exp(-cost / tau) "
           "underflow to 0 (the baseline's normalization then gives no drift, where "
           "Sinkhorn's still does); a property of the method at this tau, not a failure "
           "of the run (a larger tau or drift.relative_tau avoids it)", name, first, last)


def _train_generator(config, workdir: str, problem: Problem, trainer: "Trainer") -> dict:
  """:func:`train_generator` inside the workdir lock."""
  os.makedirs(workdir, exist_ok=True)
  write_config(config, workdir)
  if trainer.mesh is not None:
    log.info("%s: %d devices on %d process(es), coupling %s", problem.name,
             trainer.mesh.devices.size, jax.process_count(), config.parallel.coupling)
  state = trainer.init()
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    start, state = ckpt.restore_latest(state)
  except checkpoint_lib.CheckpointError:
    raise
  except ValueError as e:
    if "tree structures do not match" not in str(e):
      raise
    raise ValueError(
        f"the checkpoint in {ckpt.directory} does not have the layout of "
        f"this config's state (with an EMA of the parameters: "
        f"{state.ema is not None}, config.train.ema_decay = {trainer.ema_decay}); was it "
        f"written with another ema_decay? Use another --workdir. ({e})") from None
  if start is not None:
    log.info("resumed %s from step %d", workdir, start)
  start = int(state.step)
  if start > int(config.train.steps):
    ckpt.close()
    raise ValueError(f"config.train.steps = {config.train.steps} but {workdir} holds a run "
                     f"at step {start}; ask for steps >= {start} (or use another --workdir)")
  writer = MetricWriter(workdir, resume_step=start)

  cfg = config.train
  steps, every = int(cfg.steps), int(cfg.log_every)
  chunk = trainer.make_chunk(every)
  sampler = trainer.make_sampler()
  diagnostics = trainer.make_diagnostics()
  seed_keys = trainer.seed_keys()
  eval_key = jax.random.fold_in(trainer.base_key, 2**31 - 1)
  n_eval = int(config.eval.num_samples)
  eval_eps = jax.random.normal(eval_key, (problem.groups, n_eval, trainer.noise_dim))

  last_eval: dict = {}
  step = start
  zero_drift_noted = False
  t_last = time.perf_counter()
  while step < steps:
    state, ms = chunk(state, seed_keys)
    losses = np.asarray(ms["loss"])  # the one host sync of the chunk
    if not np.all(np.isfinite(losses)):
      bad = int(np.argmax(~np.all(np.isfinite(losses), axis=0)))
      good = ckpt.latest_checked_step()
      raise NonFiniteLossError(
          f"non-finite loss at step {step + bad + 1} (seeds "
          f"{np.flatnonzero(~np.all(np.isfinite(losses), axis=1)).tolist()}); stopped. " +
          (f"Last good checkpoint: step {good} in {ckpt.directory}" if good is not None
           else f"No verified checkpoint in {ckpt.directory}"))
    drift_rms = np.asarray(ms["drift_rms"])
    if not zero_drift_noted and not np.any(drift_rms):
      _zero_drift_note(problem.name, step + 1, step + every)
      zero_drift_noted = True
    step += every
    now = time.perf_counter()
    record = dict(step=step, loss=losses[:, -1].tolist(),
                  drift_rms=drift_rms[:, -1].tolist(), steps_per_s=every / (now - t_last))
    if step % int(cfg.eval_every) == 0 or step == steps:
      evaluation, _ = trainer.evaluate(
          trainer.eval_params(state), eval_eps, sampler, diagnostics,
          raw_params=None if state.ema is None else state.params)
      if state.ema is not None:
        evaluation["eval_params"] = "ema"
      record.update(evaluation)
      last_eval = record
    record["seconds"] = time.perf_counter() - t_last  # this chunk, evaluation included
    writer.write(record)
    if step % int(cfg.checkpoint_every) == 0 or step == steps:
      ckpt.save(step, state)
    extra = "".join(f"  {k} {np.mean(record[k]):.4f}" for k in ("w2", "accuracy") if k in record)
    log.info("%s step %d/%d  %.1f steps/s  loss %.3e%s", problem.name, step, steps,
             record["steps_per_s"], float(np.mean(record["loss"])), extra)
    t_last = time.perf_counter()
  ckpt.close()
  samples = np.asarray(sampler(trainer.eval_params(state), eval_eps))
  if not problem.num_classes:
    samples = samples[:, 0]
  return dict(last_eval=last_eval, samples=samples, state=state, trainer=trainer)
