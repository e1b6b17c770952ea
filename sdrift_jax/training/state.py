"""The state a run trains and checkpoints, and the seed axis every array of it carries."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

__all__ = ["TrainState", "over_seeds"]


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
    drift_state: ``None`` unless ``drift.warm_start``: the couplings' state the next step
      starts from (:class:`sdrift_jax.DriftState` per seed and group, a dict of them per
      feature set).
    bank: ``None`` unless ``train.bank_size``: the memory bank of positives
      (:class:`sdrift_jax.training.bank.Bank`, leading seed axis).

  A pytree whose children are the fields that are not ``None``: without an EMA and a
  drift state it flattens, and so checkpoints, exactly as the three-field state did
  before they existed, so those checkpoints still restore.
  """
  params: Any
  opt_state: Any
  step: jax.Array
  ema: Any = None
  drift_state: Any = None
  bank: Any = None

  def _fields(self) -> tuple[str, ...]:
    return (("params", "opt_state", "step") + (() if self.ema is None else ("ema",))
            + (() if self.drift_state is None else ("drift_state",))
            + (() if self.bank is None else ("bank",)))

  def tree_flatten_with_keys(self):
    return [(jax.tree_util.GetAttrKey(n), getattr(self, n)) for n in self._fields()], \
        self._fields()

  def tree_flatten(self):
    return [getattr(self, n) for n in self._fields()], self._fields()

  @classmethod
  def tree_unflatten(cls, fields, children):
    return cls(**dict(zip(fields, children)))


def over_seeds(fn, in_axes, num_seeds: int):
  """``jax.vmap(fn, in_axes)`` over the leading seed axis; for one seed, ``fn`` on the
  arrays with that axis dropped, its outputs given it back. The same values, but a
  convolution stays a plain convolution (vmapped over its weights, XLA makes it a
  grouped one): the pixel generator's step took 0.99 s vmapped against 0.89 s
  (``python -m benchmarks.pixel_step_cpu``)."""
  if num_seeds != 1:
    return jax.vmap(fn, in_axes=in_axes)

  def single(*args):
    args = [a if ax is None else jax.tree.map(lambda v: v[0], a)
            for a, ax in zip(args, in_axes)]
    return jax.tree.map(lambda v: v[None], fn(*args))
  return single
