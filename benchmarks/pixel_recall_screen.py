"""Screens the causes of the Sinkhorn pixel generator's low recall (issue: images).

Runs ``configs/mnist_pixels.py`` with one factor changed at a time, Sinkhorn only (or the
baseline, as the ``baseline`` factor), one seed, ``--steps`` steps, and prints one table
row per factor: pooled FD, FD/class, accuracy, precision, recall (the experiment's own
evaluation) and the training rate. Factors (``--factors``, comma-separated, in order):

    default       the reference code's Sinkhorn setting: unmasked, T = 21, 32 generated /
                  32 positives per class
    baseline      the config's baseline (joint two-sided, self-masked)
    mask_self     Sinkhorn with its self-coupling masked (``sinkhorn.mask_self``: no
                  generated sample is its own negative; without it the drift is unmasked)
    positives128  128 positives per class per step, from a memory bank of 128 (32 new
                  per step): 4 positives per generated sample
    batch16       16 generated and 16 positives per class per step
    batch64       64 generated and 64 positives per class per step
    converged     drift.tol = 0.01 with at most T = 201 half-steps
    tau_high      Sinkhorn at the single relative temperature 0.2 (the sweep's largest)
    tau_low       Sinkhorn at the single relative temperature 0.02 (the sweep's smallest)
    steps1000     1000 steps whatever ``--steps`` says
    steps2000     2000 steps (the config's default length; a finished ``steps1000`` run
                  copied to this factor's directory is extended, not rerun: the schedule
                  is constant after warm-up)

Factors combine with ``+``: ``mask_self+positives128`` is the masked drift against a bank.

    python -m benchmarks.pixel_recall_screen --cache /tmp/pxcache --workdir /tmp/pxscreen \\
        [--steps 500] [--factors default,mask_self,...] [--seed 0]

Each factor runs in ``<workdir>/<factor>`` (resumable; a finished one is read back, not
rerun) and its row is appended to ``<workdir>/screen.md``. The helper networks come from
``--cache`` (trained on first use).
"""
from __future__ import annotations

import argparse
import json
import os

#: Each factor: the variant assignments and the config overrides it makes. The screen
#: varies the unmasked Sinkhorn drift (the reference code's): the self-mask is off unless
#: a factor turns it on. Factors combine with ``+`` (``mask_self+positives128``).
FACTORS = {
    "default": ({}, {}),
    "baseline": ({"methods": "(baseline,)"}, {}),
    "mask_self": ({}, {"sinkhorn.mask_self": True}),
    "positives128": ({}, {"train.bank_size": 128, "train.bank_push": 32,
                          "train.num_positives": 128}),
    "batch16": ({}, {"train.batch_size": 16}),
    "batch64": ({}, {"train.batch_size": 64}),
    "converged": ({"T": "201"}, {"drift.tol": 0.01}),
    "tau_high": ({"taus": "(0.2,)"}, {}),
    "tau_low": ({"taus": "(0.02,)"}, {}),
    "steps1000": ({"steps": "1000"}, {}),
    "steps2000": ({"steps": "2000"}, {}),
}


def _parts(name: str) -> list[str]:
  return [p for p in name.split("+") if p]


def _config(name: str, steps: int, seed: int, cache: str):
  from experiments import config_lib  # pylint: disable=g-import-not-at-top
  variant = {"methods": "(sinkhorn,)", "steps": str(steps)}
  overrides = {"sinkhorn.mask_self": False}
  for part in _parts(name):
    variant.update(FACTORS[part][0])
    overrides.update(FACTORS[part][1])
  if variant["methods"] == "(baseline,)":
    overrides.pop("sinkhorn.mask_self")  # the baseline's own mask applies
  c = config_lib.load("configs/mnist_pixels.py:"
                      + ",".join(f"{k}={v}" for k, v in variant.items()))
  c.train.first_seed = seed  # seed k of `seeds=n`, as `--config.train.first_seed=k`
  c.mnist.cache_dir = cache
  for key, value in overrides.items():
    section, field = key.split(".")
    c[section][field] = value
  return c


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--cache", required=True)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--steps", type=int, default=500)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--factors", default=",".join(FACTORS))
  args = ap.parse_args()
  factors = [f for f in args.factors.split(",") if f]
  unknown = [p for f in factors for p in _parts(f) if p not in FACTORS]
  if unknown:
    ap.error(f"unknown factor(s) {unknown}; known: {list(FACTORS)}")
  import experiments  # pylint: disable=g-import-not-at-top
  from experiments import cli_faults  # pylint: disable=g-import-not-at-top
  cli_faults.setup_logging(debug=False)  # the runs' progress on stderr, as the CLI's
  out = os.path.join(args.workdir, "screen.md")
  os.makedirs(args.workdir, exist_ok=True)
  if not os.path.exists(out):
    with open(out, "w") as f:
      f.write("| factor | steps | seed | FD | FD/class | Acc | Prec | Rec | steps/s | "
              "marginal err pos / neg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
  for factor in factors:
    run_dir = os.path.join(args.workdir, factor.replace("+", "_"))
    config = _config(factor, args.steps, args.seed, args.cache)
    (r,) = experiments.run_experiment(config, run_dir)
    r = {k: v[0] if isinstance(v, list) else v for k, v in r.items()}  # one seed
    err = _last_marginal_error(run_dir)
    row = (f"| {factor} | {config.train.steps} | {args.seed} | {r['fd']:.2f} | "
           f"{r['fd_per_class_mean']:.2f} | {r['accuracy']:.1f} | {r['precision']:.3f} | "
           f"{r['recall']:.3f} | {r['steps_per_s']:.2f} | {err} |\n")
    with open(out, "a") as f:
      f.write(row)
    print(row, end="", flush=True)


def _last_marginal_error(workdir: str) -> str:
  """The positive coupling's marginal error at the last evaluation, from metrics.jsonl."""
  for root, _, files in os.walk(workdir):
    if "metrics.jsonl" in files:
      rows = [json.loads(l) for l in open(os.path.join(root, "metrics.jsonl"))]
      errs = [r for r in rows if any(k.startswith("marginal") for k in r)]
      if errs:
        last = {k: v[0] if isinstance(v, list) else v for k, v in errs[-1].items()}
        return " / ".join(f"{last[k]:.3g}" for k in ("marginal_error_pos",
                                                       "marginal_error_neg") if k in last)
  return "-"


if __name__ == "__main__":
  main()
