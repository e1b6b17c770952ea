"""The files of a run's workdir besides checkpoints: ``config.json`` (and the check that
a workdir holds a run of this config), ``metrics.jsonl`` records, and the report of an
experiment (``<name>.md`` and ``results.json``)."""
from __future__ import annotations

import json
import logging
import os

import jax

from sdrift_jax.training import workdir as workdir_lib
from sdrift_jax.models import generators
from sdrift_jax.training import objectives

__all__ = ["FIELDS_WITH_FORMER_DEFAULTS", "NOT_COMPARED", "read_metrics", "run_seconds",
           "write_config", "write_report"]

log = logging.getLogger("sdrift_jax")

#: Config keys added after runs were written without them, and the value that computes
#: what those runs computed: a ``config.json`` that lacks one compares as holding it.
FIELDS_WITH_FORMER_DEFAULTS = {"train.ema_decay": 0.0, "model.res_scale": 1.0,
                               "model.out_init_std": 0.0, "model.omega_dim": 0,
                               "drift.relative_tau": False,
                               "optim.decay_steps": 0, "train.bank_size": 0,
                               "train.bank_push": 0, "train.num_positives": 0, "train.first_seed": 0,
                               **objectives.FORMER_DEFAULTS}

#: Keys that do not change what a run computes: ``train.steps`` (a finished run may be
#: extended; the schedule is checked separately), ``sweep.*`` (a setting is the same run
#: in any sweep), ``drift.algorithm`` (every algorithm gives the same drift to rounding),
#: ``parallel.*`` (the device layout gives the same training to float tolerance) and
#: ``logging.*``.
NOT_COMPARED = ("train.steps", "sweep.", "drift.algorithm", "parallel.", "logging.")


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _with_horizon(flat: dict) -> dict:
  """``optim.decay_steps`` made explicit (0 means ``train.steps``) for a cosine run, so
  that a run extended with ``decay_steps`` set to its first ``train.steps`` compares equal
  to that first run."""
  if flat.get("optim.schedule") == "cosine" and not flat.get("optim.decay_steps"):
    flat = dict(flat, **{"optim.decay_steps": flat.get("train.steps")})
  return flat


def write_config(config, workdir: str) -> None:
  """Writes ``config.json``; refuses a workdir that holds a run of another config.

  Keys of :data:`NOT_COMPARED` are not compared, and a key of
  :data:`FIELDS_WITH_FORMER_DEFAULTS` missing from the old file takes its former default.
  A longer ``train.steps`` extends a run; with the cosine schedule, whose decay follows
  ``train.steps``, it is refused unless ``optim.decay_steps`` keeps the first horizon.
  """
  path = os.path.join(workdir, "config.json")
  text = config.to_json(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path) as f:
      try:
        written = json.load(f)
      except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); restore it or use another "
                         "--workdir") from None
    new = _flatten(json.loads(text))
    written_flat = _flatten(written)
    former = dict(FIELDS_WITH_FORMER_DEFAULTS)
    # model.init: a run written without it used its kind's default.
    kind_default = generators.DEFAULT_INIT.get(written_flat.get("model.kind"))
    if kind_default is not None:
      former["model.init"] = kind_default
    old = {**{k: v for k, v in former.items() if k in new}, **written_flat}
    if old.get("optim.schedule") == "cosine" and old.get("train.steps") != new.get(
        "train.steps") and not int(config.optim.get("decay_steps", 0)):
      raise ValueError(
          f"config.train.steps changed from {old.get('train.steps')} to "
          f"{new.get('train.steps')} in {workdir}: the cosine schedule decays over "
          "train.steps, so the resumed steps would follow another schedule; set "
          f"config.optim.decay_steps={old.get('optim.decay_steps') or old.get('train.steps')}"
          " to keep the first run's schedule, or use another --workdir")
    old, new = _with_horizon(old), _with_horizon(new)
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)
                  and not any(k == i or (i.endswith(".") and k.startswith(i))
                              for i in NOT_COMPARED))
    if diff:
      raise ValueError(f"workdir {workdir} holds a run of a different config "
                       f"(differs in {diff}); use another --workdir or delete it")
  if jax.process_index() == 0:
    workdir_lib.atomic_write(path, text)


def read_metrics(workdir: str) -> list[dict]:
  """The records of ``workdir/metrics.jsonl`` (see :func:`sdrift_jax.training.workdir.read_jsonl`:
  a partial last line is dropped with a warning, any other bad line raises)."""
  return workdir_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))


def run_seconds(history: list[dict], log_every: int) -> float:
  """Wall time of a run from its metric records (survives resumes); records written
  before ``seconds`` was logged count their training time only."""
  return float(sum(r.get("seconds", log_every / r["steps_per_s"]) for r in history))


def write_report(workdir: str, lines: list[str], payload, name: str = "table") -> str:
  """Writes ``<name>.md`` (the lines) and ``results.json`` (the payload) in ``workdir``;
  returns the markdown path."""
  path = os.path.join(workdir, f"{name}.md")
  workdir_lib.atomic_write(path, "\n".join(lines) + "\n")
  workdir_lib.atomic_write_json(os.path.join(workdir, "results.json"), payload, indent=1)
  return path
