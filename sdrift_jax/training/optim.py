"""The optimizer of ``config.optim``: Adam or AdamW, a learning-rate schedule, gradient
clipping, and an optional learning rate of its own for class embeddings (optax)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["decay_steps", "make_optimizer", "make_schedule", "SCHEDULES"]

SCHEDULES = ("constant", "cosine", "warmup_constant")


def decay_steps(optim_config, total_steps: int) -> int:
  """The step at which ``'cosine'`` reaches 0: ``optim.decay_steps``, or ``total_steps``
  (``train.steps``) when that is 0. A run extended past its first ``train.steps`` keeps
  its schedule by setting ``decay_steps`` to the first run's ``train.steps``."""
  steps = int(optim_config.get("decay_steps", 0))
  if steps < 0:
    raise ValueError(f"config.optim.decay_steps must be >= 0 (0: train.steps), got {steps}")
  return steps or int(total_steps)


def make_schedule(optim_config, lr: float, total_steps: int):
  """The learning rate of ``config.optim.schedule``: a float or an optax schedule.

  ``'constant'``: ``lr``. ``'cosine'``: linear warm-up from 0 over ``warmup_steps`` (at
  least 1), then cosine decay to 0 at :func:`decay_steps`. ``'warmup_constant'``: the
  reference MNIST script's ramp, ``lr * (t + 1) / warmup_steps`` at optimizer step ``t``
  (0-based) while ``t < warmup_steps``, then ``lr``.
  """
  schedule, warmup = optim_config.schedule, int(optim_config.warmup_steps)
  if schedule == "constant":
    if warmup:
      raise ValueError(f"config.optim.warmup_steps = {warmup} applies to the 'cosine' and "
                       "'warmup_constant' schedules; 'constant' would ignore it")
    return lr
  if schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1),
                                              decay_steps(optim_config, total_steps))
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
  if optim_config.name == "adam" and float(optim_config.get("weight_decay", 0.0)):
    raise ValueError("config.optim.weight_decay applies to 'adamw'; Adam would ignore it")
  tx = _base_optimizer(optim_config, optim_config.learning_rate, total_steps)
  embed_lr = optim_config.get("embed_learning_rate", None)
  if embed_lr:
    tx = optax.multi_transform(
        {"default": tx, "embed": _base_optimizer(optim_config, embed_lr, total_steps)},
        _embedding_labels)
  if optim_config.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim_config.clip_norm), tx)
  return tx
