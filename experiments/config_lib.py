"""Helpers for config files: variant strings and typed overrides.

A config file's ``get_config(arg)`` receives what follows the colon in
``--config=configs/toy.py:smoke,tau=0.05``; :func:`parse_variant` splits it into flags
(``{'smoke'}``) and assignments (``{'tau': '0.05'}``), and :func:`set_typed` writes an
assignment into a ConfigDict with the type of the field it replaces.
"""
from __future__ import annotations

import ast
from typing import Any

import ml_collections

from sdrift_jax.training import ranges as ranges_lib

#: The ranges of the experiments' own config blocks, beside the library's
#: (:data:`sdrift_jax.training.ranges.RANGES`).
EXPERIMENT_RANGES = {
    "data.dim": ranges_lib.COUNT, "data.rank": ranges_lib.COUNT,
    "data.num_classes": ranges_lib.COUNT, "data.train_per_class": ranges_lib.COUNT,
    "data.test_per_class": ranges_lib.COUNT,
    "data.max_train": ranges_lib.COUNT_OR_ZERO,  # 0: all
    "data.seed": ranges_lib.COUNT_OR_ZERO, "data.split_seed": ranges_lib.COUNT_OR_ZERO,
    "*.batch_size": ranges_lib.COUNT, "*.epochs": ranges_lib.COUNT,
    "*.learning_rate": ranges_lib.POSITIVE,
    "autoencoder.latent_dim": ranges_lib.COUNT, "encoder.widths": ranges_lib.COUNT,
    "encoder.max_mask_ratio": ranges_lib.FRACTION,
    "encoder.visible_weight": ranges_lib.NON_NEGATIVE,
    "features.patch_sizes": ranges_lib.COUNT,
    "particles.T": ranges_lib.COUNT, "particles.steps": ranges_lib.COUNT,
    "particles.num_points": ranges_lib.Range(2, integer=True),
    "particles.eta": ranges_lib.POSITIVE, "particles.source_std": ranges_lib.POSITIVE,
    "particles.taus": ranges_lib.POSITIVE, "particles.gif_every": ranges_lib.COUNT,
    "particles.gif_steps": ranges_lib.COUNT,
    "sweep.taus": ranges_lib.POSITIVE,
}


def check_ranges(config) -> None:
  """Every number of an experiment's config in its range (NaN, inf, a negative learning
  rate, a zero count ... refused naming the key), before anything is written."""
  ranges_lib.check_ranges(config, EXPERIMENT_RANGES)


def parse_variant(arg: str | None) -> tuple[set[str], dict[str, str]]:
  """``'smoke,tau=0.1'`` -> ``({'smoke'}, {'tau': '0.1'})``."""
  flags, assignments = set(), {}
  for part in _split_top_level(arg or ""):
    part = part.strip()
    if not part:
      continue
    if "=" in part:
      key, value = part.split("=", 1)
      assignments[key.strip()] = value.strip()
    else:
      flags.add(part)
  return flags, assignments


def _split_top_level(text: str) -> list[str]:
  """Splits on commas outside brackets: ``a=(1,2),b`` -> ``['a=(1,2)', 'b']``."""
  parts, depth, current = [], 0, []
  for ch in text:
    if ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    if ch == "," and depth == 0:
      parts.append("".join(current))
      current = []
    else:
      current.append(ch)
  parts.append("".join(current))
  return parts


def _literal(value: str) -> Any:
  """A Python literal, or the string itself; ``(a,b)`` / ``[a,b]`` with bare words is a
  tuple of literals-or-strings, so that ``targets=(moons,spiral)`` needs no quotes."""
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    v = value.strip()
    if len(v) >= 2 and v[0] + v[-1] in ("()", "[]"):
      return tuple(_literal(p.strip()) for p in v[1:-1].split(",") if p.strip())
    return value


def _number(value: str, like: int | float) -> Any:
  """``value`` as the type of ``like``: an int field takes only integers (``T=1.5`` is an
  error, not ``T = 1``); a float field takes ints and floats; either takes a tuple."""
  try:
    parsed = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    parsed = None
  if isinstance(parsed, (list, tuple)):
    return parsed
  if isinstance(like, int):
    if isinstance(parsed, int) and not isinstance(parsed, bool):
      return parsed
    if isinstance(parsed, float) and parsed.is_integer() and "e" in value.lower():
      return int(parsed)  # 1e3
    raise ValueError("expected an integer")
  if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
    return float(parsed)
  raise ValueError("expected a number")


def _convert(value: str, like: Any) -> Any:
  if isinstance(like, bool):
    if value.lower() in ("1", "true", "yes"):
      return True
    if value.lower() in ("0", "false", "no"):
      return False
    raise ValueError("expected a bool (true/false)")
  if isinstance(like, (int, float)):
    return _number(value, like)
  if isinstance(like, (list, tuple)):
    parsed = _literal(value)
    parsed = tuple(parsed) if isinstance(parsed, (list, tuple)) else (parsed,)
    if like and all(_is_number(v) for v in like) and not all(
        _is_number(v) or (isinstance(v, (list, tuple)) and all(map(_is_number, v)))
        for v in parsed):
      raise ValueError("expected a number or a tuple of numbers")
    return parsed
  return value


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_float(key: str, value: str) -> float:
  """``value`` as a float, or a ValueError naming ``key`` and ``value``."""
  try:
    return _number(value, 0.0)
  except ValueError as e:
    raise ValueError(f"config key {key!r}: cannot set {value!r}: {e}") from None


def set_typed(config: ml_collections.ConfigDict, dotted: str, value: str) -> None:
  """Sets ``config.<dotted>`` from a string, converted to the existing field's type."""
  node = config
  *parents, leaf = dotted.split(".")
  for name in parents:
    if name not in node:
      raise KeyError(f"unknown config key {dotted!r} (no field {name!r})")
    node = node[name]
  if leaf not in node:
    raise KeyError(f"unknown config key {dotted!r}; fields here: {sorted(node.keys())}")
  like = node[leaf]
  try:
    node[leaf] = _convert(value, like)
  except ValueError as e:
    raise ValueError(f"config key {dotted!r}: cannot set {value!r}: {e} (the field holds "
                     f"{like!r})") from None


def apply_assignments(config, assignments: dict[str, str], aliases: dict[str, str]) -> None:
  """Applies ``key=value`` assignments, resolving short ``aliases`` to dotted keys.

  A key that is neither a short key nor a dotted path to a field is refused with the short
  keys listed (a typo of a short key is the likely mistake).
  """
  for key, value in assignments.items():
    dotted = aliases.get(key, key)
    if "." not in dotted and dotted not in config:
      raise KeyError(f"unknown config key {key!r}; short keys: {sorted(aliases)}, or a "
                     "dotted field such as drift.tau")
    set_typed(config, dotted, value)


def apply_sweep_assignments(config, assignments: dict[str, str], aliases: dict[str, str],
                            per_setting: dict[str, str], config_name: str) -> None:
  """The end of a sweep config's ``get_config``: ``tau=x`` sets ``sweep.taus = (x,)``,
  the other assignments are applied (:func:`apply_assignments`), and overrides of the
  fields each setting sets are refused (:func:`check_per_setting`)."""
  assignments = dict(assignments)
  tau = assignments.pop("tau", None)
  if tau is not None:
    config.sweep.taus = (parse_float("tau", tau),)
  apply_assignments(config, assignments, aliases)
  check_per_setting(config, [aliases.get(k, k) for k in assignments], per_setting,
                    config_name)


def check_per_setting(config, keys, per_setting: dict[str, str], config_name: str) -> None:
  """Refuses overrides of fields that a sweep sets per setting, which would be ignored.

  Args:
    config: the ConfigDict; the check applies when it has a ``sweep`` block (every
      generator experiment runs a grid of settings).
    keys: the dotted keys the user set.
    per_setting: dotted field -> what to set instead (``{'drift.tau': 'sweep.taus'}``).
    config_name: for the message.
  """
  if config.get("sweep") is None:
    return
  for key in keys:
    if key in per_setting:
      raise ValueError(f"{key} is set per sweep setting in {config_name}, so this value "
                       f"would be ignored; set {per_setting[key]} instead")


def check_unknown_flags(flags: set[str], known, config_name: str) -> None:
  """Refuses variant names not in ``known`` (a set, or a config's ``VARIANTS`` dict of
  name -> one-line description)."""
  unknown = flags - set(known)
  if unknown:
    raise ValueError(f"unknown variant(s) {sorted(unknown)} for {config_name}; "
                     f"known: {sorted(known)} or key=value")


def optimizer_config(name: str = "adam", learning_rate: float = 1e-3,
                     weight_decay: float = 0.0, **overrides) -> ml_collections.ConfigDict:
  """The ``optim`` block read by :func:`sdrift_jax.training.optim.make_optimizer`:
  ``name`` (adam, adamw), ``learning_rate``, ``b1``, ``b2``, ``weight_decay`` (adamw),
  ``clip_norm`` (global norm, 0 = off), ``schedule`` (constant, cosine,
  warmup_constant), ``warmup_steps`` and ``decay_steps`` (where cosine reaches 0; 0 =
  ``train.steps``)."""
  fields = dict(name=name, learning_rate=learning_rate, b1=0.9, b2=0.999,
                weight_decay=weight_decay, clip_norm=0.0, schedule="constant",
                warmup_steps=0, decay_steps=0)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def train_config(steps: int, batch_size: int, log_every: int, eval_every: int,
                 checkpoint_every: int, num_seeds: int = 1,
                 ema_decay: float = 0.0) -> ml_collections.ConfigDict:
  """The ``train`` block read by :func:`sdrift_jax.training.train_generator`.

  ``ema_decay``: ``d`` of the exponential moving average of the parameters, ``ema <- d *
  ema + (1 - d) * params`` after every step from ``ema = params`` at initialization;
  evaluation and samples then use the EMA. 0 keeps no EMA.

  ``num_positives``: positives per class a step couples against (0: ``batch_size``);
  ``bank_size``: a memory bank of that many positives per class (0: none), refreshed by
  ``bank_push`` per step (0: ``batch_size``); :mod:`sdrift_jax.training.bank`.

  ``first_seed``: the index of the run's first seed (its keys are ``fold_in(key(seed),
  first_seed + s)``): seeds of one experiment run in separate processes with
  ``num_seeds=1, first_seed=k`` share ``seed`` and with it the helper networks.
  """
  return ml_collections.ConfigDict(dict(steps=steps, batch_size=batch_size,
                                        num_seeds=num_seeds, log_every=log_every,
                                        eval_every=eval_every,
                                        checkpoint_every=checkpoint_every,
                                        ema_decay=ema_decay, bank_size=0, bank_push=0,
                                        num_positives=0, first_seed=0))


def parallel_config(coupling: str, devices: int = 1) -> ml_collections.ConfigDict:
  """``config.parallel``: ``devices`` (0 = all visible, 1 = no mesh), the coupling scope
  (``'per_group'``: classes sharded, ``'global'``: each group's batch sharded) and
  ``distributed`` (experiments/run.py calls ``jax.distributed.initialize()`` first, as
  with ``--distributed``); see :func:`sdrift_jax.training.mesh.make_mesh` and
  docs/cluster.md."""
  return ml_collections.ConfigDict(dict(devices=devices, coupling=coupling,
                                        distributed=False))


def logging_config(tensorboard: bool = True) -> ml_collections.ConfigDict:
  """``config.logging``: ``tensorboard`` (event files under ``<run>/tensorboard`` beside
  ``metrics.jsonl``; :mod:`sdrift_jax.training.writers`)."""
  return ml_collections.ConfigDict(dict(tensorboard=tensorboard))


def load(arg: str) -> ml_collections.ConfigDict:
  """The config of ``'configs/NAME.py[:variant,key=value]'``, as ``--config`` gives it."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  path, _, variant = arg.partition(":")
  spec = importlib.util.spec_from_file_location(
      "config_" + os.path.splitext(os.path.basename(path))[0], path)
  if spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"no config file {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant or None)
