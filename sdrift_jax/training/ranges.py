"""The range of every number a run's config holds, checked before anything runs.

One table, :data:`RANGES`, maps config keys (``fnmatch`` patterns over dotted names) to
the interval their value must lie in. :func:`check_ranges` walks every number of a config
(the elements of tuples included, e.g. ``sweep.taus``) and refuses, naming the key, a
value that is NaN or infinite, out of its interval, or a float where a count is expected.
A number that no entry covers is refused too, so a new field cannot slip past unchecked.
Experiments add the ranges of their own blocks (:func:`check_ranges`'s ``extra``).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any, Mapping, Optional

__all__ = ["Range", "RANGES", "check_ranges"]


@dataclasses.dataclass(frozen=True)
class Range:
  """``lo <= value <= hi`` (strict where ``lo_open`` / ``hi_open``); ``integer``: a
  count, not a float. ``None`` bounds are open ends."""
  lo: Optional[float] = None
  hi: Optional[float] = None
  lo_open: bool = False
  hi_open: bool = False
  integer: bool = False

  def text(self) -> str:
    lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
    hi = "" if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
    kind = "an integer" if self.integer else "a finite number"
    return kind + (" " + " and ".join(p for p in (lo, hi) if p) if lo or hi else "")

  def holds(self, value) -> bool:
    if self.integer and not float(value).is_integer():
      return False
    if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
      return False
    return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1, integer=True)
COUNT_OR_ZERO = Range(0, integer=True)
FRACTION = Range(0, 1, hi_open=True)
FINITE = Range()

#: The library's config blocks: ``train``, ``optim``, ``drift``, ``guidance``, ``eval``,
#: ``model``, ``parallel`` and the run's ``seed``.
RANGES: dict[str, Range] = {
    "seed": COUNT_OR_ZERO,
    "train.steps": COUNT, "train.batch_size": COUNT, "train.num_seeds": COUNT,
    "train.first_seed": COUNT_OR_ZERO,
    "train.log_every": COUNT, "train.eval_every": COUNT, "train.checkpoint_every": COUNT,
    "train.ema_decay": FRACTION, "train.bank_size": COUNT_OR_ZERO,  # 0: no bank
    "train.bank_push": COUNT_OR_ZERO, "train.num_positives": COUNT_OR_ZERO,  # 0: batch
    "optim.learning_rate": POSITIVE, "optim.embed_learning_rate": POSITIVE,
    "optim.b1": FRACTION, "optim.b2": FRACTION, "optim.weight_decay": NON_NEGATIVE,
    "optim.clip_norm": NON_NEGATIVE,  # 0: off
    "optim.warmup_steps": COUNT_OR_ZERO, "optim.decay_steps": COUNT_OR_ZERO,
    "drift.T": COUNT, "drift.tau": POSITIVE, "drift.tol": NON_NEGATIVE,  # 0: off
    "drift.anneal_start": NON_NEGATIVE,  # 0: off
    "drift.anneal_decay": Range(0, 1, lo_open=True, hi_open=True),
    "guidance.num_uncond": COUNT_OR_ZERO, "guidance.omega_min": POSITIVE,
    "guidance.omega_max": POSITIVE, "guidance.omega_exponent": FINITE,
    "guidance.eval_omega": POSITIVE,
    "eval.num_samples": Range(2, integer=True),  # a covariance needs two samples
    "eval.fid_batch": COUNT,
    "model.noise_dim": COUNT, "model.hidden": COUNT, "model.depth": COUNT,
    "model.width": COUNT, "model.embed_dim": COUNT, "model.expansion": COUNT,
    "model.blocks": COUNT_OR_ZERO, "model.omega_dim": COUNT_OR_ZERO,
    "model.res_scale": POSITIVE, "model.out_init_std": NON_NEGATIVE,  # 0: init's default
    "parallel.devices": COUNT_OR_ZERO,  # 0: all
}


def _numbers(node, prefix: str):
  """``(dotted key, value)`` for every number under ``node``, tuple elements included."""
  items = node.items() if hasattr(node, "items") else []
  for key, value in items:
    name = f"{prefix}{key}"
    if hasattr(value, "items"):
      yield from _numbers(value, name + ".")
    else:
      yield from _leaf_numbers(name, value)


def _leaf_numbers(name: str, value):
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return
  if isinstance(value, (tuple, list)):
    for v in value:
      yield from _leaf_numbers(name, v)
  elif isinstance(value, (int, float)) or hasattr(value, "__float__"):
    yield name, value


def _range_of(name: str, table: Mapping[str, Range]) -> Optional[Range]:
  if name in table:
    return table[name]
  for pattern, rng in table.items():
    if fnmatch.fnmatchcase(name, pattern):
      return rng
  return None


def check_ranges(config, extra: Optional[Mapping[str, Range]] = None,
                 strict: bool = True) -> None:
  """Raises a ValueError naming the first number of ``config`` outside its range.

  Args:
    config: a run's config (``ml_collections.ConfigDict`` or nested mappings).
    extra: the ranges of an experiment's own blocks, added to :data:`RANGES`.
    strict: refuse a number that no range covers (``False``: skip it, for a library
      caller's config with blocks of its own).

  Raises:
    ValueError: ``config.KEY = VALUE: must be ...``; or a number no range covers.
  """
  table = {**RANGES, **(extra or {})}
  for name, value in _numbers(config, ""):
    rng = _range_of(name, table)
    if rng is None and not strict:
      continue
    if rng is None:
      raise ValueError(f"config.{name} = {value!r} has no known range; add it to "
                       "sdrift_jax.training.ranges.RANGES (or the experiment's table)")
    try:
      number = float(value)
    except (TypeError, ValueError, OverflowError):
      number = math.nan
    if not math.isfinite(number) or not rng.holds(number):
      raise ValueError(f"config.{name} = {_shown(value)}: must be {rng.text()}")


def _shown(value: Any) -> str:
  return repr(value) if not isinstance(value, float) else f"{value:g}"
