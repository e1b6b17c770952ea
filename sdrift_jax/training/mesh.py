"""The device mesh of ``config.parallel`` and the shardings of the training data.

A run shards one axis of its per-step ``[G, B, ...]`` arrays over a 1-D mesh named
``'data'``: the group (class) axis (``'per_group'``) or the batch axis within each group
(``'global'``). Parameters and optimizer state are replicated.
"""
from __future__ import annotations

from typing import Optional

import jax
from jax.sharding import NamedSharding, PartitionSpec
import jax.numpy as jnp

__all__ = ["constrain", "make_mesh", "place_table", "replicated", "seeded_batch"]

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


def constrain(x, mesh, batch_spec):
  """Constrains a per-step ``[G, B, ...]`` array to the mesh (no-op on one device)."""
  if mesh is None:
    return x
  spec = PartitionSpec(*batch_spec, *([None] * (x.ndim - 2)))
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def replicated(mesh) -> Optional[NamedSharding]:
  """The sharding that puts a whole array on every device of ``mesh``."""
  return None if mesh is None else NamedSharding(mesh, PartitionSpec())


def seeded_batch(mesh, batch_spec, ndim: int) -> Optional[NamedSharding]:
  """The sharding of a per-seed ``[S, G, B, ...]`` state array (a memory bank) laid out
  like the batch: seeds whole, groups or rows over the mesh as ``batch_spec``."""
  if mesh is None:
    return None
  return NamedSharding(mesh, PartitionSpec(None, *batch_spec, *([None] * (ndim - 3))))


def place_table(table, mesh, batch_spec):
  """A :class:`sdrift_jax.training.problem.PositiveTable` as ``(rows, counts)`` device
  arrays, rows sharded like the batch (class axis per group, row axis globally), each
  process reading only its devices' blocks. Placed once per layout and kept on the table,
  so every run of a sweep shares it."""
  per_group = mesh is not None and batch_spec[0] is not None
  if mesh is None:
    sharding = None
  else:
    sharding = NamedSharding(mesh, PartitionSpec("data", None, None) if per_group
                             else PartitionSpec(None, "data", None))

  def build():
    if sharding is None:
      shape = table.shape()
      return (jnp.asarray(table.read((slice(None),) * 3, shape)), jnp.asarray(table.counts))
    shape = table.shape(1 if per_group else mesh.devices.size)
    rows = jax.make_array_from_callback(shape, sharding, lambda index: table.read(index, shape))
    return rows, jax.device_put(table.counts, replicated(mesh))

  return table.placed_on(sharding, build)
