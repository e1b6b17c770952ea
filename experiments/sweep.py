"""The one sweep driver: every generator experiment is a grid of settings.

``config.sweep`` lists the values of each axis of an experiment (``taus``, ``methods``,
``kernels``, ``targets``, ...); a single run is a grid of one setting. For each setting,
:func:`setting_config` derives the run's config in one way: each :class:`Axis` writes its
value into a copy of the config, then the mask rule applies. :func:`run_sweep` checks
every setting before anything trains, runs them one by one (each in its own workdir
``<workdir>/<axis dirs>``, resumable), and rewrites the experiment's table after each.

The mask rule, stated once: ``drift.mask_self`` masks the self-pairs of the one- and
two-sided baselines only; the Sinkhorn drift is not masked (the reference code does not
mask it: ``pre_mask = repulsion_mask_diag and dtype != 'sinkhorn'`` in its toy script)
unless a config's ``sinkhorn.mask_self`` asks for it (``configs/mnist_pixels.py``: at
low temperature the unmasked self-coupling tends to the identity and its repulsion
cancels; docs/results.md s.5).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from typing import Any, Callable, Optional, Sequence

import jax
import ml_collections
from flax import nnx

from sdrift_jax import costs as costs_lib
from sdrift_jax.models import generators as models
from sdrift_jax.training import workdir as workdir_lib
from sdrift_jax.training import check_train_config
from sdrift_jax.training import objectives
from sdrift_jax.training import optim

log = logging.getLogger("sdrift_jax")

METHODS = ("baseline", "sinkhorn")


@dataclasses.dataclass(frozen=True)
class Axis:
  """One axis of a sweep.

  Attributes:
    name: the key of the setting (and of its result) that holds the value.
    values: the field of ``config.sweep`` listing the values.
    apply: ``(config, value) -> None`` writes the value into a copy of the config.
    dirname: ``value -> str``, the run directory's component for the value.
  """
  name: str
  values: str
  apply: Callable[[ml_collections.ConfigDict, Any], None]
  dirname: Callable[[Any], str] = str


def field_axis(name: str, values: str, dotted: str) -> Axis:
  """An axis whose value is written to the config field ``dotted``."""
  parent, leaf = dotted.rsplit(".", 1)

  def apply(config, value):
    config[parent][leaf] = value
  return Axis(name, values, apply)


def tau_text(tau) -> str:
  """``0.05`` -> ``'0.05'``; several temperatures ``(0.02, 0.2)`` -> ``'0.02+0.2'``."""
  return "+".join(f"{t:g}" for t in tau) if isinstance(tau, (list, tuple)) else f"{tau:g}"


def tau_axis() -> Axis:
  """``sweep.taus`` -> ``drift.tau`` (a float, or a tuple of several temperatures)."""
  def apply(config, tau):
    # A sweep may mix single temperatures and tuples of several (the field's type then
    # changes from setting to setting).
    with config.drift.ignore_type():
      config.drift.tau = (tuple(map(float, tau)) if isinstance(tau, (list, tuple))
                          else float(tau))

  return Axis("tau", "taus", apply, lambda tau: "tau" + tau_text(tau))


def kernel_axis() -> Axis:
  """``sweep.kernels`` (``'gaussian'``, ``'laplacian'``) -> ``drift.cost``."""
  def apply(config, kernel):
    if kernel not in costs_lib.COST_ALIASES:
      raise ValueError(f"unknown kernel {kernel!r} in config.sweep.kernels: expected "
                       f"{tuple(costs_lib.COST_ALIASES)}")
    config.drift.cost = costs_lib.COST_ALIASES[kernel]
  return Axis("kernel", "kernels", apply)


def method_axis() -> Axis:
  """``sweep.methods``: ``'baseline'`` takes ``config.baseline`` (normalization,
  mask_self, and ``form`` for the feature-drift objective); ``'sinkhorn'`` is the
  Sinkhorn drift (split form)."""
  def apply(config, method):
    if method not in METHODS:
      raise ValueError(f"unknown method {method!r} in config.sweep.methods: expected "
                       f"{METHODS}")
    if method == "baseline":
      config.drift.normalization = config.baseline.normalization
      config.drift.mask_self = bool(config.baseline.mask_self)
      if "form" in config.baseline:
        config.loss.form = config.baseline.form
    else:
      config.drift.normalization = "sinkhorn"
      if "loss" in config:
        config.loss.form = "split"
  return Axis("method", "methods", apply)


def apply_mask_rule(config) -> None:
  """The mask rule (module docstring): no self-mask for the Sinkhorn drift unless the
  config asks for it by ``config.sinkhorn.mask_self``; the convergence controls
  (``drift.tol``, ``anneal_*``, ``warm_start``) apply to the Sinkhorn settings only (the
  baselines have no half-steps)."""
  if config.drift.normalization == "sinkhorn":
    config.drift.mask_self = bool("sinkhorn" in config and config.sinkhorn.mask_self)
  else:
    for key, off in objectives.CONVERGENCE_DEFAULTS.items():
      if key in config.drift:
        config.drift[key] = off


def settings(config, axes: Sequence[Axis]) -> list[dict]:
  """The grid: one ``{axis name: value}`` per combination of ``config.sweep``'s lists."""
  lists = []
  for axis in axes:
    values = config.sweep[axis.values]
    if not isinstance(values, (list, tuple)) or not values:
      raise ValueError(f"config.sweep.{axis.values} must be a non-empty tuple, got "
                       f"{values!r}")
    lists.append(values)
  return [dict(zip((a.name for a in axes), combo)) for combo in itertools.product(*lists)]


def setting_config(config, setting: dict, axes: Sequence[Axis]) -> ml_collections.ConfigDict:
  """The run config of one setting: a copy of ``config`` with each axis applied, then
  the mask rule."""
  sub = ml_collections.ConfigDict(config.to_dict())
  for axis in axes:
    axis.apply(sub, setting[axis.name])
  apply_mask_rule(sub)
  return sub


def setting_dir(workdir: str, setting: dict, axes: Sequence[Axis]) -> str:
  return os.path.join(workdir, *(a.dirname(setting[a.name]) for a in axes))


SETTINGS_NAME = "sweep_settings.json"


def _tuples(value):
  """JSON's lists back to the tuples the configs hold (a tau axis value can be a tuple)."""
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _earlier_settings(workdir: str, axes: Sequence[Axis]) -> list[dict]:
  """The settings an earlier sweep into ``workdir`` started (its run directory exists),
  from its ``sweep_settings.json``."""
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, SETTINGS_NAME)
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      recorded = json.load(f)
    names = {a.name for a in axes}
    if not (isinstance(recorded, list) and all(isinstance(r, dict) and set(r) == names
                                               for r in recorded)):
      raise ValueError(f"expected a list of settings with keys {sorted(names)}")
  except ValueError as e:
    raise ValueError(f"{path} is damaged ({e}); restore or delete it (the sweep's table "
                     "then lists this sweep's settings only)") from None
  out = [{k: _tuples(v) for k, v in r.items()} for r in recorded]
  return [r for r in out if os.path.isdir(setting_dir(workdir, r, axes))]


def run_sweep(config, workdir: str, *, axes: Sequence[Axis],
              run_setting: Callable[[Any, str, Any], dict],
              write_table: Callable[..., Any], dim: int, conditional: bool,
              prepare: Optional[Callable[[Any, str], Any]] = None) -> list[dict]:
  """Runs every setting of the grid and keeps the table current.

  The settings a sweep ran are recorded in ``<workdir>/sweep_settings.json``. A later
  sweep into the same workdir with other values keeps the earlier settings that it does
  not list (resumed, so already trained ones only reload), so their rows stay in the table.

  Args:
    config: the experiment's config (``config.sweep`` holds the axes' values).
    workdir: the sweep's directory; setting ``s`` runs in :func:`setting_dir`.
    axes: the experiment's axes.
    run_setting: ``(setting_config, run_dir, context) -> result dict`` (the axis values
      are added to it).
    write_table: ``(config, workdir, results, context, seconds, planned) -> None``,
      called on process 0 after every setting.
    dim: the data dimension, for the checks before training.
    conditional: whether the problem is class-conditional (for the checks).
    prepare: optional ``(config, workdir) -> context`` run once before the first
      setting (data, helper models, the problem).

  Returns:
    The results, one per setting.
  """
  grid = settings(config, axes)
  earlier = [e for e in _earlier_settings(workdir, axes)
             if setting_dir(workdir, e, axes) not in
             {setting_dir(workdir, s, axes) for s in grid}]
  if earlier:
    log.info("%s holds %d setting(s) of an earlier sweep that this one does not list "
             "(%s): kept in the table, resumed where they stopped", workdir, len(earlier),
             "; ".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in earlier[:3]) +
             ("; ..." if len(earlier) > 3 else ""))
    grid = earlier + grid
  subs = [setting_config(config, s, axes) for s in grid]
  for sub in subs:  # every setting checked before anything is written or trained
    check_train_config(sub.train)
    models.check_model_config(sub.model)
    objectives.check_objective_config(sub, dim, conditional)
    optim.make_optimizer(sub.optim, int(sub.train.steps))  # names: optimizer, schedule
    jax.eval_shape(lambda sub=sub: nnx.state(models.make_generator(  # activation, init
        sub.model, dim, jax.random.key(0), num_classes=2 if conditional else None)))
  if config.drift.mask_self and any(s.drift.normalization == "sinkhorn"
                                    and not s.drift.mask_self for s in subs):
    log.info("drift.mask_self applies to the one- and two-sided baselines; the Sinkhorn "
             "drift is trained unmasked (config.sinkhorn.mask_self masks it)")
  controls = {k: v for k, v in objectives.CONVERGENCE_DEFAULTS.items()
              if config.drift.get(k, v) != v}
  if controls and any(s.drift.normalization != "sinkhorn" for s in subs):
    log.info("drift.%s apply to the Sinkhorn settings; the baselines have no half-steps",
             ", ".join(sorted(controls)))
  t_start = time.perf_counter()
  # Before anything is written: what prepare refuses (missing data, a device layout that
  # cannot work) leaves no workdir behind.
  context = prepare(config, workdir) if prepare else None
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    workdir_lib.atomic_write(os.path.join(workdir, "sweep_config.json"),
                             config.to_json(indent=2, sort_keys=True))
    workdir_lib.atomic_write_json(os.path.join(workdir, SETTINGS_NAME), grid, indent=1)
  results = []
  for i, (setting, sub) in enumerate(zip(grid, subs)):
    log.info("%s %d/%d: %s", config.experiment, i + 1, len(grid),
             ", ".join(f"{k}={v}" for k, v in setting.items()))
    result = run_setting(sub, setting_dir(workdir, setting, axes), context)
    results.append({**result, **setting})
    if jax.process_index() == 0:
      write_table(config, workdir, results, context, time.perf_counter() - t_start,
                  len(grid))
  return results
