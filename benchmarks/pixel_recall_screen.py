"""Screens the causes of the Sinkhorn pixel generator's low recall (issue: images).

Runs ``configs/mnist_pixels.py`` with one factor changed at a time, Sinkhorn only (or the
baseline, as the ``baseline`` factor), one seed, ``--steps`` steps, and prints one table
row per factor: pooled FD, FD/class, accuracy, precision, recall (the experiment's own
evaluation) and the training rate. Factors (``--factors``, comma-separated, in order):

    default       the reference code's Sinkhorn setting: unmasked, T = 21, 32 generated /
                  32 positives per class
    baseline      the config's baseline (joint two-sided, self-masked)
    mask_self     Sinkhorn with its self-coupling masked (``sinkhorn.mask_self``: no
                  generated sample is its own negative; every other factor is unmasked)
    positives128  128 positives per class per step, from a memory bank of 128 (32 new
                  per step): 4 positives per generated sample
    batch64       64 generated and 64 positives per class per step
    converged     drift.tol = 0.01 with at most T = 201 half-steps
    tau_high      Sinkhorn at the single relative temperature 0.2 (the sweep's largest)

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

#: The screen varies one factor of the unmasked Sinkhorn drift (the reference code's),
#: so every factor but ``mask_self`` turns the config's self-mask off.
_UNMASKED = {"sinkhorn.mask_self": False}
FACTORS = {
    "default": ("methods=(sinkhorn,)", _UNMASKED),
    "baseline": ("methods=(baseline,)", {}),
    "mask_self": ("methods=(sinkhorn,)", {"sinkhorn.mask_self": True}),
    "positives128": ("methods=(sinkhorn,)",
                     {**_UNMASKED, "train.bank_size": 128, "train.bank_push": 32,
                      "train.num_positives": 128}),
    "batch64": ("methods=(sinkhorn,)", {**_UNMASKED, "train.batch_size": 64}),
    "converged": ("methods=(sinkhorn,),T=201", {**_UNMASKED, "drift.tol": 0.01}),
    "tau_high": ("methods=(sinkhorn,),taus=(0.2,)", _UNMASKED),
}

def _config(factor: str, steps: int, seed: int, cache: str):
  from experiments import config_lib  # pylint: disable=g-import-not-at-top
  variant, overrides = FACTORS[factor]
  c = config_lib.load(f"configs/mnist_pixels.py:{variant},steps={steps}")
  c.seed = seed
  c.mnist.cache_dir = cache
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
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
  unknown = [f for f in factors if f not in FACTORS]
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
    run_dir = os.path.join(args.workdir, factor)
    (r,) = experiments.run_experiment(_config(factor, args.steps, args.seed, args.cache),
                                      run_dir)
    r = {k: v[0] if isinstance(v, list) else v for k, v in r.items()}  # one seed
    err = _last_marginal_error(run_dir)
    row = (f"| {factor} | {args.steps} | {args.seed} | {r['fd']:.2f} | "
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
