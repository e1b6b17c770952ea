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
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sdrift_jax import checkpoint as checkpoint_lib
from sdrift_jax import drift as drift_lib
from sdrift_jax import metrics as metrics_lib
from sdrift_jax import models

log = logging.getLogger("sdrift_jax")


class NonFiniteLossError(FloatingPointError):
  """Raised when training produces a NaN or infinite loss."""


class TrainState(NamedTuple):
  """Parameters and optimizer state, each with a leading seed axis ``[S, ...]``."""
  params: Any
  opt_state: Any
  step: jax.Array  # int32 scalar, shared by all seeds


def drift_loss(x: jax.Array, V: jax.Array) -> jax.Array:
  """``0.5 * mean_i |x_i - stop_gradient(x_i + V_i)|^2``; its value is ``0.5 |V|^2``.

  Args:
    x: array of shape ``[N, d]``, generator outputs (differentiated).
    V: array of shape ``[N, d]``, the drift at ``x`` (treated as a constant).
  """
  target = jax.lax.stop_gradient(x + V)
  return 0.5 * jnp.mean(jnp.sum(jnp.square(x - target), axis=-1))


def drift_kwargs(drift_config) -> dict:
  """The keyword arguments of :func:`sdrift_jax.drift_field` named by a config."""
  tau = drift_config.tau
  tau = tuple(tau) if isinstance(tau, (list, tuple)) else float(tau)
  return dict(tau=tau, T=int(drift_config.T), normalization=drift_config.normalization,
              cost=drift_config.cost, mask_self=bool(drift_config.mask_self))


def check_drift_config(drift_config, dim: int = 2) -> None:
  """Raises a ValueError naming ``config.drift`` if its fields would be rejected."""
  try:
    kw = drift_kwargs(drift_config)
    dummy = np.zeros((2, dim), np.float32)
    drift_lib._prepare(dummy, dummy, None, kw["tau"], kw["T"], kw["normalization"],
                       kw["cost"], kw["mask_self"], None, None, None)
  except (ValueError, TypeError) as e:
    raise ValueError(f"bad config.drift: {e}") from None


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
  """Adam or AdamW with an optional warm-up + cosine schedule and global-norm clipping."""
  lr = optim_config.learning_rate
  if optim_config.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, lr, max(optim_config.warmup_steps, 1),
                                            total_steps)
  elif optim_config.schedule != "constant":
    raise ValueError(f"unknown config.optim.schedule {optim_config.schedule!r}: "
                     "expected 'constant' or 'cosine'")
  if optim_config.name == "adam":
    tx = optax.adam(lr, b1=optim_config.b1, b2=optim_config.b2)
  elif optim_config.name == "adamw":
    tx = optax.adamw(lr, b1=optim_config.b1, b2=optim_config.b2,
                     weight_decay=optim_config.weight_decay)
  else:
    raise ValueError(f"unknown config.optim.name {optim_config.name!r}: "
                     "expected 'adam' or 'adamw'")
  if optim_config.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.clip_norm), tx)
  return tx


@dataclasses.dataclass(frozen=True)
class Problem:
  """What a generator is trained to match.

  Attributes:
    dim: data dimension.
    sample_positives: ``(key, n) -> [n, dim]`` draws data samples for a train step.
    eval_data: array ``[M, dim]`` of held-out samples for W2^2.
    name: label for logs and figures.
  """
  dim: int
  sample_positives: Callable[[jax.Array, int], jax.Array]
  eval_data: np.ndarray
  name: str = "data"


class Trainer:
  """Builds the pure functions of a run from its config."""

  def __init__(self, config: ml_collections.ConfigDict, problem: Problem):
    self.config = config
    self.problem = problem
    self.num_seeds = int(config.train.num_seeds)
    self.batch = int(config.train.batch_size)
    self.noise_dim = int(config.model.noise_dim)
    self.drift_kw = drift_kwargs(config.drift)
    self.tx = make_optimizer(config.optim, int(config.train.steps))
    self.base_key = jax.random.key(int(config.seed))
    model = models.make_generator(config.model, problem.dim, jax.random.key(0))
    self.graphdef, _ = nnx.split(model)

  # -- pure pieces -----------------------------------------------------------------
  def seed_keys(self) -> jax.Array:
    return jax.vmap(lambda s: jax.random.fold_in(self.base_key, s))(
        jnp.arange(self.num_seeds))

  def init(self) -> TrainState:
    def one(key):
      model = models.make_generator(self.config.model, self.problem.dim,
                                    jax.random.fold_in(key, 0))
      params = nnx.split(model)[1]
      return params, self.tx.init(params)
    params, opt_state = jax.jit(jax.vmap(one))(self.seed_keys())
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32))

  def generate(self, params, eps):
    return nnx.merge(self.graphdef, params)(eps)

  def _step(self, params, opt_state, key):
    k_eps, k_pos = jax.random.split(key)
    eps = jax.random.normal(k_eps, (self.batch, self.noise_dim))
    y_pos = self.problem.sample_positives(k_pos, self.batch)

    def loss_fn(p):
      x = self.generate(p, eps)
      xs = jax.lax.stop_gradient(x)
      V = drift_lib.drift_field(xs, y_pos, xs, **self.drift_kw)
      return drift_loss(x, V), V

    (loss, V), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, dict(loss=loss, drift_rms=jnp.sqrt(jnp.mean(jnp.sum(V * V, -1))))

  def make_chunk(self, length: int):
    """Jitted ``(state, seed_keys) -> (state, metrics [S, length])`` for ``length`` steps."""
    def one_seed(params, opt_state, seed_key, step0):
      def body(carry, i):
        p, o = carry
        p, o, m = self._step(p, o, jax.random.fold_in(seed_key, step0 + i))
        return (p, o), m
      (params, opt_state), ms = jax.lax.scan(body, (params, opt_state), jnp.arange(length))
      return params, opt_state, ms

    def chunk(state: TrainState, seed_keys):
      params, opt_state, ms = jax.vmap(one_seed, in_axes=(0, 0, 0, None))(
          state.params, state.opt_state, seed_keys, state.step)
      return TrainState(params, opt_state, state.step + length), ms

    return jax.jit(chunk, donate_argnums=0)

  def make_sampler(self):
    """Jitted ``(params [S], eps [n, noise]) -> samples [S, n, dim]``."""
    return jax.jit(jax.vmap(self.generate, in_axes=(0, None)))

  def make_diagnostics(self):
    """Jitted per-seed marginal errors of the drift's couplings on an eval batch."""
    def one(x, y):
      info = drift_lib.drift_field_with_info(x, y, x, **self.drift_kw)
      return jnp.stack([jnp.max(jnp.atleast_1d(info.marginal_error_pos)),
                        jnp.max(jnp.atleast_1d(info.marginal_error_neg))])
    return jax.jit(jax.vmap(one, in_axes=(0, None)))


class MetricWriter:
  """Appends JSON lines to ``workdir/metrics.jsonl`` (process 0 only)."""

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = jax.process_index() == 0
    if self.enabled and os.path.exists(self.path):
      # Records after the restored step will be recomputed, identically: drop them.
      with open(self.path) as f:
        kept = [l for l in f if l.strip() and json.loads(l).get("step", 0) <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(kept)

  def write(self, record: dict) -> None:
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(l) for l in f if l.strip()]


def write_config(config, workdir: str) -> None:
  """Writes ``config.json``; refuses a workdir that holds a run of another config."""
  path = os.path.join(workdir, "config.json")
  text = config.to_json(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    new = json.loads(text)
    ignore = ("train.steps",)  # a finished run may be extended
    diff = sorted(k for k in _flatten(old).keys() | _flatten(new).keys()
                  if _flatten(old).get(k) != _flatten(new).get(k) and k not in ignore)
    if diff:
      raise ValueError(f"workdir {workdir} holds a run of a different config "
                       f"(differs in {diff}); use another --workdir or delete it")
  if jax.process_index() == 0:
    with open(path, "w") as f:
      f.write(text)


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
  ``workdir/checkpoints``.

  Returns:
    A summary: the last evaluation record, final samples ``[S, n, dim]`` and the trainer.
  """
  check_train_config(config.train)
  check_drift_config(config.drift, problem.dim)
  os.makedirs(workdir, exist_ok=True)
  write_config(config, workdir)
  trainer = Trainer(config, problem)
  state = trainer.init()
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  start = ckpt.latest_step()
  if start is not None:
    state = ckpt.restore(start, state)
    log.info("resumed %s from step %d", workdir, start)
  start = int(state.step)
  writer = MetricWriter(workdir, resume_step=start)

  cfg = config.train
  steps, every = int(cfg.steps), int(cfg.log_every)
  chunk = trainer.make_chunk(every)
  sampler = trainer.make_sampler()
  diagnostics = trainer.make_diagnostics()
  seed_keys = trainer.seed_keys()
  eval_key = jax.random.fold_in(trainer.base_key, 2**31 - 1)
  n_eval = int(config.eval.num_samples)
  eval_eps = jax.random.normal(eval_key, (n_eval, trainer.noise_dim))
  eval_data = np.asarray(problem.eval_data)
  diag_data = jnp.asarray(eval_data[: trainer.batch])

  last_eval: dict = {}
  step = start
  t_last = time.perf_counter()
  while step < steps:
    state, ms = chunk(state, seed_keys)
    losses = np.asarray(ms["loss"])  # the one host sync of the chunk
    if not np.all(np.isfinite(losses)):
      bad = int(np.argmax(~np.all(np.isfinite(losses), axis=0)))
      ckpt.wait()
      raise NonFiniteLossError(
          f"non-finite loss at step {step + bad + 1} (seeds "
          f"{np.flatnonzero(~np.all(np.isfinite(losses), axis=1)).tolist()}); stopped. "
          f"Last good checkpoint: step {ckpt.latest_step()} in {ckpt.directory}")
    step += every
    now = time.perf_counter()
    record = dict(step=step, loss=losses[:, -1].tolist(),
                  drift_rms=np.asarray(ms["drift_rms"])[:, -1].tolist(),
                  steps_per_s=every / (now - t_last))
    if step % int(cfg.eval_every) == 0 or step == steps:
      samples = np.asarray(sampler(state.params, eval_eps))
      record["w2"] = [metrics_lib.w2_squared(s, eval_data) for s in samples]
      errs = np.asarray(diagnostics(jnp.asarray(samples[:, : trainer.batch]), diag_data))
      record["marginal_error_pos"] = errs[:, 0].tolist()
      record["marginal_error_neg"] = errs[:, 1].tolist()
      last_eval = record
    writer.write(record)
    if step % int(cfg.checkpoint_every) == 0 or step == steps:
      ckpt.save(step, state)
    w2 = f"  W2^2 {np.mean(record['w2']):.4f}" if "w2" in record else ""
    log.info("%s step %d/%d  %.1f steps/s  loss %.3e%s", problem.name, step, steps,
             record["steps_per_s"], float(np.mean(record["loss"])), w2)
    t_last = time.perf_counter()
  ckpt.close()
  samples = np.asarray(sampler(state.params, eval_eps))
  return dict(last_eval=last_eval, samples=samples, state=state, trainer=trainer)
