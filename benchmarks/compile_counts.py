"""How many XLA compilations a run makes, and its wall time.

    python -m benchmarks.compile_counts --config=configs/toy.py:smoke [--workdir=DIR]

Runs ``experiments.run`` in this process (same flags) with a listener on JAX's
backend-compile event, then prints one JSON line: the config, the number of backend
compilations, the seconds spent compiling, and the wall time of the run. Every XLA
program counts (the training chunk, samplers, evaluation helpers, initialization), so the
number is what a sweep pays, not only the training step's share. The workdir defaults to
a fresh temporary directory, so that nothing is resumed.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import jax

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def main(argv: list[str]) -> dict:
  compiles = []

  def listener(event, duration, **_):
    if event == _BACKEND_COMPILE:
      compiles.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  args = list(argv)
  if not any(a.startswith("--workdir") for a in args):
    args.append("--workdir=" + os.path.join(tempfile.mkdtemp(prefix="compile_counts_"), "run"))
  from absl import app  # pylint: disable=g-import-not-at-top
  from experiments import run  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  try:
    app.run(run.main, argv=["experiments.run"] + args, flags_parser=run.parse_flags)
  except SystemExit as e:
    if e.code not in (0, None):
      raise
  wall = time.perf_counter() - t0
  config = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), "?")
  out = dict(config=config, compiles=len(compiles), compile_seconds=round(sum(compiles), 2),
             wall_seconds=round(wall, 1))
  print(json.dumps(out), flush=True)
  return out


if __name__ == "__main__":
  main(sys.argv[1:])
