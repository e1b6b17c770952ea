"""``train_generator``: a run from its config into its workdir, resumable.

The loop around the trainer's compiled chunks: the workdir lock, ``config.json``,
checkpoints (orbax, verified, the newest good one restored), evaluation every
``eval_every`` steps through the problem's evaluators, metrics to ``metrics.jsonl`` and
TensorBoard, and a clear stop on a non-finite loss.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time

import jax
import ml_collections
import numpy as np

from sdrift_jax.training import bank as bank_lib
from sdrift_jax.training import checkpoint as checkpoint_lib
from sdrift_jax.training import workdir as workdir_lib
from sdrift_jax.training import evaluators
from sdrift_jax.training import objectives
from sdrift_jax.training import ranges
from sdrift_jax.training import run_files
from sdrift_jax.training import shared
from sdrift_jax.training import trainer as trainer_lib
from sdrift_jax.training import writers
from sdrift_jax.training.problem import Problem

__all__ = ["check_train_config", "NonFiniteLossError", "RunHistoryError", "train_generator"]

log = logging.getLogger("sdrift_jax")


class NonFiniteLossError(FloatingPointError):
  """Raised when training produces a NaN or infinite loss."""


class RunHistoryError(ValueError):
  """A workdir holds a run's history but no checkpoint to resume it from."""


def check_history(workdir: str, ckpt_dir: str, restored_step, checkpoint_every: int) -> None:
  """Refuses to start a workdir over that holds a run's history, and says so when a
  resumed run's ``metrics.jsonl`` lacks steps it has passed.

  With no checkpoint restored, the run would start at step 0 and rewrite
  ``metrics.jsonl``. That is refused when the workdir shows it held more than a first
  unfinished interval: damaged checkpoints set aside in ``<ckpt_dir>.damaged``, or
  metrics past step ``2 * checkpoint_every`` (a kill before the first save finished can
  leave records up to there, which a fresh start recomputes identically).

  Raises:
    RunHistoryError: naming the evidence and the two ways on (``--restart``, which
      moves the workdir's contents aside, or another workdir).
  """
  path = os.path.join(workdir, "metrics.jsonl")
  last = max((int(r.get("step", 0)) for r in workdir_lib.read_jsonl(path)), default=0)
  if restored_step is None:
    damaged = f"{ckpt_dir}.damaged"
    if os.path.isdir(damaged):
      evidence = f"its damaged checkpoints are in {damaged}"
    elif last > 2 * checkpoint_every:
      evidence = f"{path} records steps up to {last}, {ckpt_dir} holds no checkpoint"
    else:
      return
    raise RunHistoryError(
        f"{workdir} holds a run's history ({evidence}) and nothing to resume it from. "
        "Rerun with --restart (moves the workdir's contents aside) or use another --workdir")
  if last < restored_step:
    log.warning("%s ends at step %d but the run resumes from step %d: the history of "
                "steps %d-%d is missing (was the file deleted or cut?)", path, last,
                restored_step, last + 1, restored_step)


def check_train_config(train_config) -> None:
  """Raises a ValueError naming the field if ``config.train`` is not a valid schedule of
  steps, evaluations and checkpoints."""
  for name in ("steps", "batch_size", "num_seeds", "log_every", "eval_every",
               "checkpoint_every"):
    value = train_config[name]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"config.train.{name} must be an integer, got {value!r}")
    if value < 1:
      raise ValueError(f"config.train.{name} must be >= 1, got {train_config[name]}")
  steps, every = int(train_config.steps), int(train_config.log_every)
  for name in ("eval_every", "checkpoint_every"):
    if int(train_config[name]) % every:
      raise ValueError(f"config.train.{name} ({train_config[name]}) must be a multiple of "
                       f"config.train.log_every ({every})")
  if steps % every:
    raise ValueError(f"config.train.steps ({steps}) must be a multiple of "
                     f"config.train.log_every ({every})")
  bank_lib.bank_config(train_config)  # a bank that cannot serve its draws


def train_generator(config: ml_collections.ConfigDict, workdir: str, problem: Problem
                    ) -> dict:
  """Trains ``config.train.num_seeds`` generators; resumes from ``workdir`` if it can.

  Writes ``config.json``, ``metrics.jsonl`` (one record per ``log_every`` steps, with
  W2^2 per seed every ``eval_every`` steps) and orbax checkpoints under
  ``workdir/checkpoints``. With ``train.ema_decay > 0`` the evaluations and the returned
  samples use the EMA of the parameters: ``w2`` (and every other metric) is the EMA's,
  ``w2_raw`` the raw parameters', and such records carry ``eval_params: 'ema'``.

  The run holds ``workdir/.lock`` throughout (process 0; :func:`sdrift_jax.training.workdir.hold`),
  so a second run into the same workdir is refused. Resuming takes the newest kept
  checkpoint that verifies (:meth:`sdrift_jax.training.checkpoint.Checkpointer.restore_latest`).

  Returns:
    A summary: the last evaluation record, final samples ``[S, n, dim]`` (``[S, G, n,
    dim]`` for class-conditional problems), the final state and the trainer.

  Raises:
    sdrift_jax.training.workdir.WorkdirBusyError: another run holds the workdir.
    ValueError: a bad config, a workdir of another config, or ``train.steps`` below the
      step the workdir's checkpoint is at.
    NonFiniteLossError: the loss became NaN or infinite.
  """
  ranges.check_ranges(config, strict=False)
  check_train_config(config.train)
  objectives.check_objective_config(config, problem.dim, bool(problem.num_classes))
  trainer = shared.shared_trainer(config, problem)  # checks the device layout first
  with workdir_lib.hold(workdir, enabled=jax.process_index() == 0):
    return _train_generator(config, workdir, problem, trainer)


def _zero_drift_note(name: str, first: int, last: int) -> None:
  log.info("%s: the drift is exactly 0 at every step %d-%d, so the loss is exactly 0 and "
           "the generator does not move: at this tau the kernel weights exp(-cost / tau) "
           "underflow to 0 (the baseline's normalization then gives no drift, where "
           "Sinkhorn's still does); a property of the method at this tau, not a failure "
           "of the run (a larger tau or drift.relative_tau avoids it)", name, first, last)


def _train_generator(config, workdir: str, problem: Problem,
                     trainer: trainer_lib.Trainer) -> dict:
  """:func:`train_generator` inside the workdir lock."""
  os.makedirs(workdir, exist_ok=True)
  run_files.write_config(config, workdir)
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
  try:
    check_history(workdir, ckpt.directory, start, int(config.train.checkpoint_every))
  except RunHistoryError:
    ckpt.close()
    with contextlib.suppress(OSError):  # the empty folder the checkpointer made
      os.rmdir(ckpt.directory)
    raise
  if start is not None:
    log.info("resumed %s from step %d", workdir, start)
  start = int(state.step)
  if start > int(config.train.steps):
    ckpt.close()
    raise ValueError(f"config.train.steps = {config.train.steps} but {workdir} holds a run "
                     f"at step {start}; ask for steps >= {start} (or use another --workdir)")
  writer = writers.create_writer(workdir, config, resume_step=start)
  tau = trainer.objective.tau_array(objectives.config_tau(config.drift))

  cfg = config.train
  steps, every = int(cfg.steps), int(cfg.log_every)
  chunk = trainer.make_chunk(every)
  seed_keys = trainer.seed_keys()
  eval_key = jax.random.fold_in(trainer.base_key, 2**31 - 1)
  n_eval = int(config.eval.num_samples)
  eval_eps = jax.random.normal(eval_key, (problem.groups, n_eval, trainer.noise_dim))

  last_eval: dict = {}
  step = start
  zero_drift_noted = False
  t_last = time.perf_counter()
  while step < steps:
    state, ms = chunk(state, seed_keys, tau)
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
    if "half_steps" in ms:  # the convergence controls: the half-steps of the last step
      record["half_steps"] = np.asarray(ms["half_steps"])[:, -1].tolist()
    if step % int(cfg.eval_every) == 0 or step == steps:
      evaluation, _ = trainer.evaluate(
          trainer.eval_params(state), eval_eps, tau,
          raw_params=None if state.ema is None else state.params)
      if state.ema is not None:
        evaluation["eval_params"] = "ema"
      record.update(evaluation)
      last_eval = record
    record["seconds"] = time.perf_counter() - t_last  # this chunk, evaluation included
    writer.write_scalars(step, {k: v for k, v in record.items() if k != "step"})
    if step % int(cfg.checkpoint_every) == 0 or step == steps:
      ckpt.save(step, state)
    extra = evaluators.log_text(trainer.evaluators, record)
    log.info("%s step %d/%d  %.1f steps/s  loss %.3e%s", problem.name, step, steps,
             record["steps_per_s"], float(np.mean(record["loss"])), extra)
    t_last = time.perf_counter()
  ckpt.close()
  writer.close()
  samples = np.asarray(trainer.make_sampler()(trainer.eval_params(state), eval_eps))
  if not problem.num_classes:
    samples = samples[:, 0]
  return dict(last_eval=last_eval, samples=samples, state=state, trainer=trainer)
