"""2-D toy generators (paper Sec. 5.2, Fig. 2, App. J): single runs and sweeps."""
from __future__ import annotations

import itertools
import logging
import os
import time

import jax
import ml_collections
import numpy as np

from sdrift_jax import metrics as metrics_lib
from sdrift_jax import plotting
from sdrift_jax import train as train_lib
from sdrift_jax import workdir as workdir_lib
from sdrift_jax.data import toy as toy_data

log = logging.getLogger("sdrift_jax")


def make_problem(config) -> train_lib.Problem:
  sampler = toy_data.get_target(config.data.target)
  # Held-out evaluation draw: a key no training step uses.
  eval_key = jax.random.fold_in(jax.random.key(int(config.seed)), 2**31 - 2)
  eval_data = np.asarray(sampler(eval_key, int(config.eval.num_samples)))
  return train_lib.Problem(dim=2, sample_positives=sampler, eval_data=eval_data,
                           name=config.data.target)


def w2_floor(config, draws: int = 2) -> float:
  """W2^2 between independent draws of the target at the eval size: the noise floor."""
  sampler = toy_data.get_target(config.data.target)
  n = int(config.eval.num_samples)
  a = np.asarray(sampler(jax.random.key(10_001), n))
  b = np.asarray(sampler(jax.random.key(10_002), n))
  return metrics_lib.w2_squared(a, b)


def _tail_mean(history, key="w2", last=10):
  evals = [r[key] for r in history if key in r]
  return np.mean(np.asarray(evals[-last:], np.float64), axis=0)  # [S]


def drift_mask(config) -> bool:
  """Whether a run masks the self-pair of its negatives: ``drift.mask_self`` applies to the
  one- and two-sided baselines only; the Sinkhorn drift is never masked, as in the
  reference code (``toy/Gen_Modeling.py``: ``pre_mask = repulsion_mask_diag and dtype !=
  'sinkhorn'``)."""
  return bool(config.drift.mask_self) and config.drift.normalization != "sinkhorn"


def run_config(config) -> ml_collections.ConfigDict:
  """``config`` with ``drift.mask_self`` set to what the run trains (:func:`drift_mask`)."""
  mask = drift_mask(config)
  if mask == bool(config.drift.mask_self):
    return config
  log.info("toy: drift.mask_self applies to the baselines only; the Sinkhorn drift is "
           "trained unmasked")
  sub = ml_collections.ConfigDict(config.to_dict())
  sub.drift.mask_self = mask
  return sub


def run_toy(config, workdir: str) -> dict:
  """One setting (``num_seeds`` seeds vmapped); writes samples and W2^2 figures."""
  config = run_config(config)
  problem = make_problem(config)
  result = train_lib.train_generator(config, workdir, problem)
  history = train_lib.read_metrics(workdir)
  seconds = train_lib.run_seconds(history, int(config.train.log_every))
  final = result["last_eval"].get("w2") or history[-1]["w2"]
  summary = dict(target=config.data.target, cost=config.drift.cost,
                 tau=config.drift.tau if np.ndim(config.drift.tau) == 0 else list(config.drift.tau),
                 normalization=config.drift.normalization, final_w2=list(map(float, final)),
                 last10_w2=_tail_mean(history).tolist(), seconds=seconds)
  if jax.process_index() == 0:
    workdir_lib.atomic_write_json(os.path.join(workdir, "summary.json"), summary, indent=1)
    plotting.samples_vs_target(
        result["samples"], [f"seed {s}: W2^2={w:.3f}" for s, w in enumerate(final)],
        problem.eval_data, os.path.join(workdir, "samples.png"))
    steps = [r["step"] for r in history if "w2" in r]
    w2 = np.asarray([r["w2"] for r in history if "w2" in r]).T
    plotting.w2_curves({config.drift.normalization: (steps, w2)},
                       os.path.join(workdir, "w2.png"), title=config.data.target)
  log.info("toy %s done in %.0fs: final W2^2 %s; figures in %s", config.data.target, seconds,
           np.round(final, 4).tolist(), workdir)
  summary["samples"] = result["samples"]
  return summary


def _setting_config(config, target, cost, tau, normalization):
  sub = ml_collections.ConfigDict(config.to_dict())
  sub.data.target = target
  sub.drift.cost = cost
  sub.drift.tau = tau
  sub.drift.normalization = normalization
  sub.drift.mask_self = drift_mask(sub)
  sub.sweep.enabled = False
  return sub


def run_sweep(config, workdir: str) -> list[dict]:
  """Runs the grid ``sweep.targets x costs x taus x normalizations`` (seeds vmapped in
  each), then writes ``summary.md``, ``summary.json`` and the figures."""
  s = config.sweep
  for target in s.targets:
    toy_data.get_target(target)
  grid = list(itertools.product(s.targets, s.costs, s.taus, s.normalizations))
  for target, cost, tau, norm in grid:  # fail before any training on a bad setting
    train_lib.check_drift_config(_setting_config(config, target, cost, tau, norm))
  train_lib.make_mesh(config.get("parallel"), 1, int(config.train.batch_size))
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    workdir_lib.atomic_write(os.path.join(workdir, "sweep_config.json"),
                             config.to_json(indent=2, sort_keys=True))
  floors = {t: w2_floor(_setting_config(config, t, s.costs[0], s.taus[0], "sinkhorn"))
            for t in s.targets}
  results = []
  t_start = time.perf_counter()
  for i, (target, cost, tau, norm) in enumerate(grid):
    sub = _setting_config(config, target, cost, tau, norm)
    run_dir = os.path.join(workdir, target, cost, f"tau{tau:g}", norm)
    log.info("sweep %d/%d: %s %s tau=%g %s", i + 1, len(grid), target, cost, tau, norm)
    results.append(run_toy(sub, run_dir))
    if jax.process_index() == 0:  # a table of what is done so far, after every setting
      write_sweep_table(config, workdir, results, floors, time.perf_counter() - t_start,
                        len(grid))
  if jax.process_index() == 0:
    write_sweep_figures(config, workdir, results)
  return results


def _ms(values):
  v = np.asarray(values, np.float64)
  return f"{v.mean():.3f} ± {v.std():.3f}"


def write_sweep_table(config, workdir, results, floors, total_seconds, planned):
  """``summary.md`` and ``summary.json`` for the settings done so far."""
  lines = [
      f"Sweep: {len(results)} of {planned} settings done, x {config.train.num_seeds} seeds, "
      f"{config.train.steps} steps, batch {config.train.batch_size}; wall time "
      f"{total_seconds / 60:.1f} min.", "",
      "W2^2 on 1000 generated vs 1000 held-out target samples (exact OT). 'final' is the "
      "last evaluation; 'last 10' averages the last 10 evaluations per seed. Mean ± std "
      "over seeds.", "",
      "Noise floor (W2^2 between two independent 1000-sample draws of the target): " +
      ", ".join(f"{t} {v:.3f}" for t, v in floors.items()), "",
      "| target | kernel | tau | normalization | final W2^2 | last-10 W2^2 | seconds |",
      "|---|---|---:|---|---:|---:|---:|"]
  for r in results:
    kernel = {"sqeuclidean": "Gaussian", "euclidean": "Laplacian"}.get(r["cost"], r["cost"])
    lines.append(f"| {r['target']} | {kernel} | {r['tau']:g} | {r['normalization']} | "
                 f"{_ms(r['final_w2'])} | {_ms(r['last10_w2'])} | {r['seconds']:.0f} |")
  workdir_lib.atomic_write(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")
  workdir_lib.atomic_write_json(os.path.join(workdir, "summary.json"),
                                [{k: v for k, v in r.items() if k != "samples"}
                                 for r in results], indent=1)


def write_sweep_figures(config, workdir, results):
  """Final samples per (target, kernel) and W2^2 curves per (target, kernel, tau)."""
  s = config.sweep
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  for target, cost in itertools.product(s.targets, s.costs):
    rows = [r for r in results if r["target"] == target and r["cost"] == cost]
    eval_data = make_problem(_setting_config(config, target, cost, s.taus[0], "sinkhorn")
                             ).eval_data
    plotting.samples_vs_target(
        [r["samples"][0] for r in rows],
        [f"tau={r['tau']:g} {r['normalization']}\nW2^2={r['final_w2'][0]:.3f}" for r in rows],
        eval_data, os.path.join(fig_dir, f"samples_{target}_{cost}.png"),
        ncols=len(s.normalizations))
    for tau in s.taus:
      curves = {}
      for r in rows:
        if r["tau"] != tau:
          continue
        run_dir = os.path.join(workdir, target, cost, f"tau{tau:g}", r["normalization"])
        hist = [h for h in train_lib.read_metrics(run_dir) if "w2" in h]
        curves[r["normalization"]] = ([h["step"] for h in hist],
                                      np.asarray([h["w2"] for h in hist]).T)
      plotting.w2_curves(curves, os.path.join(fig_dir, f"w2_{target}_{cost}_tau{tau:g}.png"),
                         title=f"{target}, {cost}, tau={tau:g}")
