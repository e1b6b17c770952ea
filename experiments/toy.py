"""2-D toy generators (paper Sec. 5.2, Fig. 2, App. J): a grid of targets x costs x
temperatures x normalizations, each setting ``num_seeds`` generators trained together.

Per setting (``<workdir>/<target>/<cost>/tau<tau>/<normalization>``): the run's files,
``summary.json``, ``samples.png`` and ``w2.png``. At the top: ``summary.md`` /
``summary.json`` (the table, rewritten after every setting) and, for a grid of more than
one setting, ``figures/`` (samples per target and kernel, W2^2 curves per temperature).
"""
from __future__ import annotations

import itertools
import logging
import os

import jax
import numpy as np

import experiments
from experiments import sweep
from experiments import tables
from sdrift_jax.evaluation import metrics as metrics_lib
from experiments import plotting
from sdrift_jax import training
from sdrift_jax.training import workdir as workdir_lib
from experiments.data import toy as toy_data
from sdrift_jax.training import mesh as mesh_lib
from sdrift_jax.training import writers

log = logging.getLogger("sdrift_jax")

AXES = (sweep.field_axis("target", "targets", "data.target"),
        sweep.field_axis("cost", "costs", "drift.cost"),
        sweep.tau_axis(),
        sweep.field_axis("normalization", "normalizations", "drift.normalization"))

COLUMNS = (tables.axis_column("target", "target"),
           tables.Column("kernel", lambda row: tables.kernel_name(row["cost"]), "---"),
           tables.axis_column("tau", "tau", "{:g}", "---:"),
           tables.axis_column("normalization", "normalization"),
           tables.metric_column("final W2^2", "final_w2"),
           tables.metric_column("last-10 W2^2", "last10_w2"),
           tables.metric_column("seconds", "seconds", "{:.0f}"))


def make_problem(config) -> training.Problem:
  """The target of ``config.data.target``, with a held-out draw of ``eval.num_samples``
  from a key no training step uses."""
  sampler = toy_data.get_target(config.data.target)
  eval_key = jax.random.fold_in(jax.random.key(int(config.seed)), 2**31 - 2)
  eval_data = np.asarray(sampler(eval_key, int(config.eval.num_samples)))
  return training.Problem(dim=2, sample_positives=sampler, eval_data=eval_data,
                          name=config.data.target)


def w2_floor(config, target: str) -> float:
  """W2^2 between two independent draws of the target at the eval size: the noise floor."""
  sampler = toy_data.get_target(target)
  n = int(config.eval.num_samples)
  return metrics_lib.w2_squared(np.asarray(sampler(jax.random.key(10_001), n)),
                                np.asarray(sampler(jax.random.key(10_002), n)))


def _tail_mean(history, key="w2", last=10):
  evals = [r[key] for r in history if key in r]
  return np.mean(np.asarray(evals[-last:], np.float64), axis=0)  # [S]


def prepare(config, workdir):
  """The problems (one per target, shared by that target's settings) and noise floors."""
  del workdir
  problems = {t: make_problem(_with_target(config, t)) for t in config.sweep.targets}
  return dict(problems=problems,
              floors={t: w2_floor(config, t) for t in config.sweep.targets})


def _with_target(config, target):
  sub = config.copy_and_resolve_references()
  sub.data.target = target
  return sub


def run_setting(config, run_dir: str, context) -> dict:
  """Trains one setting; writes its summary and figures."""
  problem = context["problems"][config.data.target]
  result = training.train_generator(config, run_dir, problem)
  history = training.read_metrics(run_dir)
  seconds = training.run_seconds(history, int(config.train.log_every))
  final = result["last_eval"].get("w2") or history[-1]["w2"]
  summary = dict(final_w2=list(map(float, final)), last10_w2=_tail_mean(history).tolist(),
                 seconds=seconds)
  if jax.process_index() == 0:
    workdir_lib.atomic_write_json(os.path.join(run_dir, "summary.json"), summary, indent=1)
    samples_png = os.path.join(run_dir, "samples.png")
    plotting.samples_vs_target(
        result["samples"], [f"seed {s}: W2^2={w:.3f}" for s, w in enumerate(final)],
        problem.eval_data, samples_png)
    writers.write_figure(run_dir, config, int(config.train.steps), "samples", samples_png)
    steps = [r["step"] for r in history if "w2" in r]
    w2 = np.asarray([r["w2"] for r in history if "w2" in r]).T
    plotting.w2_curves({config.drift.normalization: (steps, w2)},
                       os.path.join(run_dir, "w2.png"), title=config.data.target)
  log.info("toy %s done in %.0fs: final W2^2 %s; figures in %s", config.data.target, seconds,
           np.round(final, 4).tolist(), run_dir)
  return dict(summary, samples=result["samples"])


def write_table(config, workdir, results, context, seconds, planned):
  """``summary.md`` and ``summary.json`` for the settings done so far."""
  floors = context["floors"]
  lines = [
      f"Toy sweep: {len(results)} of {planned} settings done, x {config.train.num_seeds} "
      f"seeds, {config.train.steps} steps, batch {config.train.batch_size}; wall time "
      f"{seconds / 60:.1f} min.", "",
      f"W2^2 on {config.eval.num_samples} generated vs {config.eval.num_samples} held-out "
      "target samples (exact OT). 'final' is the last evaluation; 'last 10' averages the "
      "last 10 evaluations per seed. Mean ± std over seeds.", "",
      f"Noise floor (W2^2 between two independent {config.eval.num_samples}-sample draws "
      "of the target): " + ", ".join(f"{t} {v:.3f}" for t, v in floors.items()), ""]
  lines += tables.markdown(COLUMNS, tables.group_rows(results, [a.name for a in AXES]))
  workdir_lib.atomic_write(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")
  workdir_lib.atomic_write_json(os.path.join(workdir, "summary.json"),
                                [{k: v for k, v in r.items() if k != "samples"}
                                 for r in results], indent=1)


def write_figures(config, workdir, results, context):
  """Final samples per (target, kernel) and W2^2 curves per (target, kernel, tau)."""
  s = config.sweep
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  for target, cost in itertools.product(s.targets, s.costs):
    rows = [r for r in results if r["target"] == target and r["cost"] == cost]
    plotting.samples_vs_target(
        [r["samples"][0] for r in rows],
        [f"tau={r['tau']:g} {r['normalization']}\nW2^2={r['final_w2'][0]:.3f}" for r in rows],
        context["problems"][target].eval_data,
        os.path.join(fig_dir, f"samples_{target}_{cost}.png"), ncols=len(s.normalizations))
    for tau in s.taus:
      curves = {}
      for r in rows:
        if r["tau"] != tau:
          continue
        setting = {a.name: r[a.name] for a in AXES}
        hist = [h for h in training.read_metrics(sweep.setting_dir(workdir, setting, AXES))
                if "w2" in h]
        curves[r["normalization"]] = ([h["step"] for h in hist],
                                      np.asarray([h["w2"] for h in hist]).T)
      plotting.w2_curves(curves, os.path.join(fig_dir, f"w2_{target}_{cost}_tau{tau:g}.png"),
                         title=f"{target}, {cost}, tau={tau:g}")


@experiments.register("toy")
def run(config, workdir: str) -> list[dict]:
  """Runs the grid of ``config.sweep``; returns one result per setting."""
  for target in config.sweep.targets:
    toy_data.get_target(target)  # an unknown target fails before anything runs
  mesh_lib.make_mesh(config.get("parallel"), 1, int(config.train.batch_size))
  context = {}

  def prepare_and_keep(config, workdir):
    context.update(prepare(config, workdir))
    return context

  results = sweep.run_sweep(config, workdir, axes=AXES, run_setting=run_setting,
                            write_table=write_table, dim=2, conditional=False,
                            prepare=prepare_and_keep)
  if jax.process_index() == 0 and len(results) > 1:
    write_figures(config, workdir, results, context)
  return results
