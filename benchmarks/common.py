"""Timing helpers shared by the benchmarks."""
from __future__ import annotations

import platform
import statistics
import time

import jax


def time_call(fn, *args, repeats: int = 5, min_total_s: float = 0.5) -> float:
  """Median wall time (seconds) of ``fn(*args)`` after one warm-up (compile) call.

  Repeats at least ``repeats`` times and until ``min_total_s`` has passed; every call is
  blocked on so that asynchronous dispatch does not hide work.
  """
  jax.block_until_ready(fn(*args))
  times = []
  start = time.perf_counter()
  while len(times) < repeats or (time.perf_counter() - start < min_total_s and len(times) < 50):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def interleaved_medians(fns, rounds: int) -> list[float]:
  """Median wall times (seconds) of the no-argument callables ``fns``, called in turn in
  each of ``rounds`` rounds (after one warm-up call each), so that load on the machine
  hits every contender alike."""
  for fn in fns:
    jax.block_until_ready(fn())
  times = [[] for _ in fns]
  for _ in range(rounds):
    for t, fn in zip(times, fns):
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      t.append(time.perf_counter() - t0)
  return [statistics.median(t) for t in times]


def machine_description() -> str:
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  import os
  return (f"{dev.platform} ({kind}), {len(jax.devices())} device(s), "
          f"{os.cpu_count()} host cores, jax {jax.__version__}, Python {platform.python_version()}")


def write_markdown_table(module: str, argv, header: list[str], rows: list[list[str]],
                         out: str | None) -> str:
  """Prints (and writes to ``out``) a table headed by the machine and the command."""
  import sys
  aligns = ["---"] + ["---:"] * (len(header) - 1)
  lines = [f"Machine: {machine_description()}", "",
           f"Command: `python -m {module} " + " ".join(argv or sys.argv[1:]) + "`", "",
           "| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  table = "\n".join(lines) + "\n"
  print(table)
  if out:
    with open(out, "w") as f:
      f.write(table)
  return table
