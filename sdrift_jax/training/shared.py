"""Trainers shared across the runs of one process: the settings of a sweep that differ
only in ``drift.tau`` reuse one :class:`~sdrift_jax.training.trainer.Trainer` and its
compiled programs."""
from __future__ import annotations

import collections
import json

from sdrift_jax.training.problem import Problem
from sdrift_jax.training.trainer import Trainer

__all__ = ["clear_shared_trainers", "shared_trainer"]

#: Trainers by problem and static config, so that the settings of a sweep that differ only
#: in ``drift.tau`` share one trainer and its compiled programs.
_SHARED: "collections.OrderedDict[tuple, Trainer]" = collections.OrderedDict()
_SHARED_MAX = 4


def _static_key(config) -> str:
  """The config without the fields a trainer takes per call or never reads."""
  d = config.to_dict()
  drift = d.get("drift", {})
  if "tau" in drift:  # its value is an argument of the step; its shape is not
    tau = drift.pop("tau")
    drift["tau_count"] = len(tau) if isinstance(tau, (list, tuple)) else None
  for block in ("sweep", "logging"):
    d.pop(block, None)
  return json.dumps(d, sort_keys=True, default=str)


def clear_shared_trainers() -> None:
  """Forgets the trainers :func:`shared_trainer` keeps (and so their compiled programs)."""
  _SHARED.clear()


def shared_trainer(config, problem: Problem) -> Trainer:
  """The :class:`Trainer` of ``(config, problem)``, reused across calls whose configs
  differ in ``drift.tau`` (and ``sweep`` / ``logging``) only: the compiled step takes
  ``tau`` as an argument, so a temperature sweep compiles once."""
  key = (id(problem), _static_key(config))
  trainer = _SHARED.get(key)
  if trainer is None or trainer.problem is not problem:
    trainer = Trainer(config, problem)
    _SHARED[key] = trainer
    while len(_SHARED) > _SHARED_MAX:
      _SHARED.popitem(last=False)
  _SHARED.move_to_end(key)
  return trainer
