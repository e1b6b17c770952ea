"""Mean +- std over seeds of the pixel runs' evaluations, per method and evaluated step.

Reads every ``metrics.jsonl`` under the given run directories (each one seed of
``configs/mnist_pixels.py``, or a ``benchmarks.pixel_recall_screen`` factor directory)
and prints one Markdown row per method and step at which every run of that method was
evaluated: pooled FD, FD/class, accuracy, precision, recall, as mean +- std (ddof 1)
over the runs, then the per-run values of FD and recall.

    python -m benchmarks.pixel_seeds_table /tmp/px_s0 /tmp/px_s1 /tmp/px_s2

The method is the name of the directory holding ``metrics.jsonl`` (``baseline``,
``sinkhorn``, ...). A run directory without metrics is an error, not a smaller mean.
"""
from __future__ import annotations

import argparse
import collections
import json
import os

import numpy as np

#: (column, metrics.jsonl key, format)
COLUMNS = (("FD", "fd_pooled", "{:.2f}"), ("FD/class", "fd", "{:.2f}"),
           ("Acc", "accuracy", "{:.1f}"), ("Prec", "precision", "{:.3f}"),
           ("Rec", "recall", "{:.3f}"))


def _evaluations(path: str) -> dict[int, dict[str, float]]:
  """step -> the first seed's metrics, of the evaluation rows of one metrics.jsonl."""
  out = {}
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if "recall" in row:
        out[int(row["step"])] = {k: (row[k][0] if isinstance(row[k], list) else row[k])
                                 for _, k, _ in COLUMNS}
  return out


def collect(run_dirs: list[str]) -> dict[str, list[dict[int, dict[str, float]]]]:
  """method -> one {step: metrics} per run directory."""
  runs = collections.defaultdict(list)
  for run_dir in run_dirs:
    found = [os.path.join(root, "metrics.jsonl") for root, _, files in
             sorted(os.walk(run_dir)) if "metrics.jsonl" in files]
    if not found:
      raise SystemExit(f"{run_dir}: no metrics.jsonl under it (not a pixel run?)")
    for path in found:
      runs[os.path.basename(os.path.dirname(path))].append(_evaluations(path))
  return runs


def table(runs) -> str:
  head = ("| method | step | runs | " + " | ".join(c for c, _, _ in COLUMNS)
          + " | FD per run | Rec per run |\n|---|---:|---:|"
          + "---:|" * len(COLUMNS) + "---|---|\n")
  rows = []
  for method, evals in sorted(runs.items()):
    for step in sorted(set.intersection(*(set(e) for e in evals))):
      vals = {k: np.array([e[step][k] for e in evals]) for _, k, _ in COLUMNS}
      cells = [(fmt + " ± " + fmt).format(v.mean(), v.std(ddof=1)) if len(v) > 1
               else fmt.format(v[0]) for (_, k, fmt) in COLUMNS for v in [vals[k]]]
      rows.append(f"| {method} | {step} | {len(evals)} | " + " | ".join(cells) + " | "
                  + " / ".join(f"{v:.2f}" for v in vals["fd_pooled"]) + " | "
                  + " / ".join(f"{v:.3f}" for v in vals["recall"]) + " |\n")
  return head + "".join(rows)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("run_dirs", nargs="+")
  print(table(collect(ap.parse_args().run_dirs)), end="")


if __name__ == "__main__":
  main()
