"""The command line's arguments checked before anything runs (:mod:`experiments.run`).

Holds the checks absl and ml_collections leave to us, each a usage error of one line and
exit status 2 (:func:`usage_error`): the ``--config`` file, variant and keys
(:func:`check_config_argument`), a ``config.experiment`` other than the config file's
(nothing is imported first), tuple flags given as bare words (:func:`tuple_overrides`),
an extra argument or an empty or file ``--workdir`` (:func:`check_arguments`); and the
default workdir of a config (:func:`default_workdir`).

The functions take the raw ``argv`` (and what absl parsed, as arguments): the flags
themselves are defined once, in :mod:`experiments.run`.
"""
import ast
import glob
import importlib.util
import os
import re
import sys
from typing import Optional

from experiments.cli_faults import one_line

__all__ = ["ROOT", "USAGE", "check_arguments", "check_config_argument", "config_argument",
           "default_workdir", "load_module", "tuple_overrides", "usage_error"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USAGE = "usage: python -m experiments.run --config=configs/NAME.py[:variant,key=value,...]"


def usage_error(message: str) -> None:
  """One line on stderr and exit status 2 (a mistake on the command line)."""
  print(f"error: {message}", file=sys.stderr)
  print(f"{USAGE}  (--help lists the configs and variants)", file=sys.stderr)
  sys.exit(2)


def load_module(path: str):
  """The config file at ``path``, imported as a module of its own."""
  spec = importlib.util.spec_from_file_location(
      "config_" + os.path.splitext(os.path.basename(path))[0], path)
  if spec is None or spec.loader is None or not path.endswith(".py"):
    raise ValueError(f"{path} is not a Python config file (configs/NAME.py)")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"{path} has no get_config(arg): not a config file")
  return module


def check_config_argument(argv) -> None:
  """Loads the ``--config`` file and variant once, so that a mistake in either is one
  line naming it (absl would print the config module's traceback)."""
  arg = config_argument(argv)
  if arg is None:
    usage_error("--config is required")
  path, _, variant = arg.partition(":")
  if not os.path.isfile(path):
    names = ", ".join(os.path.relpath(p, ROOT)
                      for p in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
    usage_error(f"no config file {path!r}; the configs are {names}")
  try:
    module = load_module(path)
    config = module.get_config(variant or None)
  except (ValueError, KeyError, TypeError, SyntaxError, ImportError, AttributeError) as e:
    usage_error(f"--config={arg}: {type(e).__name__ + ': ' if isinstance(e, SyntaxError) else ''}"
                f"{one_line(e)}")
  _check_experiment(argv, module, config, path, arg)
  module_per_setting = getattr(module, "PER_SETTING", {})
  for a in argv:
    if a.startswith("--config."):
      dotted = a[len("--config."):].split("=", 1)[0]
      try:
        from experiments import config_lib  # pylint: disable=g-import-not-at-top
        config_lib.check_per_setting(config, [dotted], module_per_setting, path)
      except ValueError as e:
        usage_error(f"{a}: {one_line(e)}")
      node = config
      for i, name in enumerate(dotted.split(".")):
        if not hasattr(node, "keys") or name not in node:
          where = ".".join(dotted.split(".")[:i]) or "the config"
          fields = sorted(node.keys()) if hasattr(node, "keys") else []
          usage_error(f"unknown config key {dotted!r} in {a}; fields of {where}: {fields}")
        node = node[name]


def _config_experiments() -> dict[str, list[str]]:
  """``{experiment: [configs/NAME.py, ...]}`` of the config files under configs/."""
  out = {}
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))):
    if os.path.basename(path).startswith("_"):
      continue
    try:
      name = load_module(path).get_config(None).get("experiment")
    except Exception:  # pylint: disable=broad-except
      continue  # reported when that config is used
    out.setdefault(name, []).append(os.path.relpath(path, ROOT))
  return out


def _check_experiment(argv, module, config, path: str, arg: str) -> None:
  """Refuses a ``config.experiment`` other than the config file's own (set by a variant
  or ``--config.experiment``): an experiment reads its own config's fields, so another
  one's config fails somewhere in the middle of the run (or names no experiment at all,
  as ``run``, the command line module, does). Nothing is imported or written first."""
  try:
    own = module.get_config(None).get("experiment")
  except (ValueError, KeyError, TypeError):
    return
  given = [(f"--config={arg}", config.get("experiment"))]
  for i, a in enumerate(argv):
    if a.startswith("--config.experiment="):
      given.append((a, a.split("=", 1)[1]))
    elif a == "--config.experiment" and i + 1 < len(argv):
      given.append((f"{a} {argv[i + 1]}", argv[i + 1]))
  for where, name in given:
    if name == own:
      continue
    configs = _config_experiments()
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    if name in configs:
      fix = f"for {name!r} use {' or '.join(configs[name])}"
    else:
      fix = f"the configs' experiments are {sorted(k for k in configs if k)}"
    usage_error(f"{where}: {rel} is a config of the {own!r} experiment, whose fields "
                f"the {name!r} experiment does not read; {fix}")


def tuple_overrides(argv) -> list:
  """``argv`` with ``--config.a.b=(x,y)`` for a tuple field rewritten as
  ``--config.a.b=('x', 'y')``: the variant form (``:normalizations=(x,y)``) takes bare
  words in a tuple, ml_collections' flags would keep ``'(x,y)'`` as one string."""
  arg = config_argument(argv)
  if arg is None:
    return list(argv)
  try:
    from experiments import config_lib  # pylint: disable=g-import-not-at-top
    config = config_lib.load(arg)
  except Exception:  # pylint: disable=broad-except
    return list(argv)  # reported by the checks that follow
  out = []
  for a in argv:
    dotted, eq, text = a[len("--config."):].partition("=")
    text = text.strip()
    bracketed = text[:1] + text[-1:] in ("()", "[]")
    if (a.startswith("--config.") and eq and (bracketed or "," in text)
        and not _is_literal(text) and _is_tuple_field(config, dotted)):
      try:  # as the variant form parses it
        config_lib.set_typed(config, dotted, text if bracketed else f"({text})")
      except (ValueError, KeyError) as e:
        usage_error(f"{a}: {one_line(e)}")
      a = f"--config.{dotted}={tuple(_get(config, dotted))!r}"
    out.append(a)
  return out


def _is_literal(text: str) -> bool:
  try:
    ast.literal_eval(text)
    return True
  except (ValueError, SyntaxError):
    return False


def _get(config, dotted: str):
  node = config
  for name in dotted.split("."):
    node = node[name]
  return node


def _is_tuple_field(config, dotted: str) -> bool:
  try:
    return isinstance(_get(config, dotted), (tuple, list))
  except (KeyError, TypeError, AttributeError):
    return False


def check_arguments(rest, workdir: Optional[str]) -> None:
  """Usage errors absl lets through: an extra positional argument (``rest`` is what the
  flags left, the program first), an empty ``--workdir`` (it would fall back to
  workdirs/<config> in the checkout) or one that is an existing file."""
  if len(rest) > 1:
    usage_error(f"unexpected argument(s) {' '.join(rest[1:])!r}: every setting is a flag "
                "(--config.a.b=value) or in the variant (:key=value)")
  if workdir is not None:
    if not workdir.strip():
      usage_error("--workdir is empty: give a directory, or leave the flag out for "
                  "workdirs/<config>")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
      usage_error(f"--workdir={workdir} is a file, not a directory: choose another "
                  "--workdir (or move the file)")


def default_workdir(config_arg: str) -> str:
  """``workdirs/<config name>[_<variant>]`` of a ``--config`` value."""
  path, _, variant = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if variant:
    name += "_" + re.sub(r"[^A-Za-z0-9.=-]+", "_", variant)
  return os.path.join("workdirs", name)


def config_argument(argv):
  """The raw ``--config`` value, variant included (``configs/toy.py:smoke``), or None;
  a second ``--config`` is a usage error (one run, one config, one workdir)."""
  found = []
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      found.append(a.split("=", 1)[1])
    elif a == "--config" and i + 1 < len(argv):
      found.append(argv[i + 1])
  if len(found) > 1:
    usage_error(f"--config given {len(found)} times ({', '.join(found)}); give it once")
  return found[0] if found else None
