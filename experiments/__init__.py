"""The experiments, as plug-ins registered by name.

An experiment is a module of this package with one entry point, ``run(config, workdir)``,
registered under the name that ``config.experiment`` gives::

    @experiments.register("toy")
    def run(config, workdir): ...

:func:`run_experiment` finds the module by that name (``experiments/<name>.py``, imported
on first use), so adding an experiment takes its module, its config and its test, and no
list to edit. The pipelines here use the library (:mod:`sdrift_jax`), its training
package (:mod:`sdrift_jax.training`) and the sweep driver (:mod:`experiments.sweep`).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

_REGISTRY: dict[str, Callable] = {}
#: Modules of this package that are not experiments (the CLI, shared pieces, scripts).
_NOT_EXPERIMENTS = ("run", "cli_args", "cli_faults", "sweep", "tables", "mnist_models",
                    "latent_dispersion")


def register(name: str):
  """Decorator: registers ``fn(config, workdir)`` as the experiment ``name``."""
  def wrap(fn):
    if name in _REGISTRY and _REGISTRY[name] is not fn:
      raise ValueError(f"experiment {name!r} is registered twice")
    _REGISTRY[name] = fn
    return fn
  return wrap


def names() -> list[str]:
  """Every experiment of this package (imports each module once)."""
  for info in pkgutil.iter_modules(__path__):
    if not info.name.startswith("_") and info.name not in _NOT_EXPERIMENTS:
      importlib.import_module(f"{__name__}.{info.name}")
  return sorted(_REGISTRY)


def get(name) -> Callable:
  """The entry point registered as ``name`` (its module imported on first use).

  Only a module of this package that may be an experiment is imported: a name that is
  not an identifier (``../x``, ``a.b``), starts with ``_`` or is one of the
  :data:`_NOT_EXPERIMENTS` (``run``: importing it would define its flags again) is
  unknown.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"config.experiment must name an experiment, got {name!r}")
  if name in _NOT_EXPERIMENTS or name.startswith("_") or not name.isidentifier():
    raise ValueError(f"unknown config.experiment {name!r}: expected one of {names()}")
  if name not in _REGISTRY:
    try:
      importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
      if e.name != f"{__name__}.{name}":
        raise
  if name not in _REGISTRY:
    raise ValueError(f"unknown config.experiment {name!r}: expected one of {names()}")
  return _REGISTRY[name]


def _move_aside(workdir: str) -> None:
  """Moves everything in ``workdir`` but its lock to ``<workdir>.old-<time>/``."""
  import logging  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from sdrift_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  names = sorted(n for n in os.listdir(workdir) if n != workdir_lib.LOCK_NAME)
  if not names:
    return
  aside = f"{os.path.normpath(workdir)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
  while os.path.exists(aside):
    aside += "+"
  os.makedirs(aside)
  for name in names:
    os.replace(os.path.join(workdir, name), os.path.join(aside, name))
  logging.getLogger("sdrift_jax").info("--restart: moved what %s held (%s) to %s", workdir,
                                       ", ".join(names[:4]) + (", ..." if len(names) > 4
                                                               else ""), aside)


def _check_same_experiment(config, workdir: str) -> None:
  """Refuses a workdir whose top config (a sweep's or a single run's) is of another
  experiment: its files would mix with this one's."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  for name in ("sweep_config.json", "config.json"):
    path = os.path.join(workdir, name)
    if not os.path.isfile(path):
      continue
    try:
      with open(path) as f:
        held = json.load(f).get("experiment")
    except (OSError, ValueError, AttributeError) as e:
      raise ValueError(f"{path} is damaged ({type(e).__name__}: {e}); restore or delete it "
                       "(it records which run the workdir holds)") from None
    if held is not None and held != config.get("experiment"):
      raise ValueError(f"{workdir} holds a run of experiment {held!r} ({path}); use another "
                       f"--workdir for {config.get('experiment')!r}")


def run_experiment(config, workdir: str, restart: bool = False):
  """Runs the experiment of ``config`` in ``workdir`` and returns its summary.

  The run holds ``workdir``'s lock (:func:`sdrift_jax.training.workdir.hold`, process 0 only: the
  processes of one multi-host job share the workdir) from start to end, so a second run
  into it, or into the top directory of a sweep in progress, is refused at once.

  A workdir that holds a run is resumed; one whose history cannot be resumed (damaged or
  deleted checkpoints) is refused (:class:`sdrift_jax.training.RunHistoryError`).
  ``restart=True`` (the CLI's ``--restart``) first moves everything the workdir holds to
  ``<workdir>.old-<time>/`` and starts over: nothing is deleted.

  Raises:
    sdrift_jax.training.workdir.WorkdirBusyError: another run holds ``workdir``.
    ValueError: an unknown ``config.experiment``, or what the experiment refuses.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from sdrift_jax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  entry = get(config.get("experiment"))
  from experiments import config_lib  # pylint: disable=g-import-not-at-top
  config_lib.check_ranges(config)
  with workdir_lib.hold(workdir, enabled=jax.process_index() == 0):
    if restart:
      if jax.process_index() == 0:
        _move_aside(workdir)
      if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        multihost_utils.sync_global_devices("workdir moved aside")
    _check_same_experiment(config, workdir)
    return entry(config, workdir)
