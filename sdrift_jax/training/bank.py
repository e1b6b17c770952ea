"""Memory banks of positives: per class, a ring buffer that each step refreshes in part,
from which the step draws the positives its drift couples against.

As Deng et al.'s ``ArrayMemoryBank``, but holding what the drift couples: the samples
themselves, or, for the ``'feature_drift'`` objective with a frozen encoder, their
feature sets (an encoder that does not train gives a banked feature the value it would
have now, so a bank of ``B`` features costs ``bank_push`` encodings per step instead of
``num_positives``). The bank is part of the checkpointed training state (a resume is
bit-identical), has a leading seed axis like the rest of it, and is sharded like the
batch (``[G, B, ...]``).

Config (``config.train``): ``bank_size`` (rows per class, 0 = no bank), ``bank_push`` (new
positives per class per step, 0 = ``batch_size``), ``num_positives`` (positives per class
a step couples against, 0 = ``batch_size``; without a bank, drawn fresh from the data).
With a bank, ``num_positives = bank_size`` couples the whole bank every step, in a fixed
order: only the ``bank_push`` newest rows change between steps, the persistent support
on which warm-started couplings (``drift.warm_start``) converge in few half-steps.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Bank", "BankConfig", "bank_config", "draw", "push"]


class Bank(NamedTuple):
  """``items``: ``[G, B, d]`` samples or ``{name: [G, B, L, C]}`` feature sets;
  ``ptr``: int32, the row the next push writes first."""
  items: Any
  ptr: jax.Array


class BankConfig(NamedTuple):
  size: int  # 0: no bank
  push: int
  num_positives: int


def bank_config(train_config) -> BankConfig:
  """The bank settings of ``config.train`` (absent fields: no bank, ``batch_size``
  positives), checked.

  Raises:
    ValueError: naming the field: a bank smaller than the positives a step couples
      against, a push larger than the bank or not dividing it, a push without a bank.
  """
  batch = int(train_config.batch_size)
  size = int(train_config.get("bank_size", 0))
  push = int(train_config.get("bank_push", 0)) or (batch if size else 0)
  num = int(train_config.get("num_positives", 0)) or batch
  if size < 0 or push < 0 or num < 1:
    raise ValueError("config.train.bank_size, bank_push and num_positives must be >= 0")
  if not size:
    if push:
      raise ValueError(f"config.train.bank_push = {push} needs a bank "
                       "(config.train.bank_size > 0)")
    return BankConfig(0, 0, num)
  if num > size:
    raise ValueError(f"config.train.bank_size = {size} is smaller than the "
                     f"{num} positives a step couples against (config.train.num_positives, "
                     "0 = batch_size); ask for a larger bank or fewer positives")
  if push > size or size % push:
    raise ValueError(f"config.train.bank_push = {push} must divide config.train.bank_size "
                     f"= {size} (each push writes a contiguous block of the ring)")
  return BankConfig(size, push, num)


def push(bank: Bank, new_items, count: int) -> Bank:
  """Writes ``count`` new rows per group (``new_items``: ``[G, count, ...]`` leaves) at
  the ring's pointer, overwriting the oldest."""
  size = jax.tree.leaves(bank.items)[0].shape[1]
  write = lambda old, new: jax.lax.dynamic_update_slice_in_dim(old, new.astype(old.dtype),
                                                               bank.ptr, axis=1)
  items = jax.tree.map(write, bank.items, new_items)
  return Bank(items, (bank.ptr + count) % size)


def draw(bank: Bank, key, num: int):
  """``num`` rows per group without replacement (each group its own draw); the whole
  bank in its order when ``num`` is its size."""
  leaves = jax.tree.leaves(bank.items)
  G, size = leaves[0].shape[:2]
  if num == size:
    return bank.items
  idx = jax.vmap(lambda k: jax.random.permutation(k, size)[:num])(jax.random.split(key, G))
  take = lambda v: jnp.take_along_axis(v, idx.reshape(idx.shape + (1,) * (v.ndim - 2)),
                                       axis=1)
  return jax.tree.map(take, bank.items)
