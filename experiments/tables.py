"""Result tables in Markdown, driven by column specifications.

A table is a list of rows and a list of :class:`Column` s; each column renders one cell
of a row. Rows group the results of a sweep (:func:`group_rows`): one row per value of
the row axes, holding the results of each value of an optional pivot axis (``method``:
baseline against Sinkhorn side by side, as the paper's tables put them).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from sdrift_jax import costs as costs_lib


@dataclasses.dataclass(frozen=True)
class Column:
  """A header, how to render a row's cell, and the Markdown alignment."""
  header: str
  cell: Callable[[dict], str]
  align: str = "---:"


def mean_std(values, fmt: str = "{:.3f}") -> str:
  """``'m ± s'`` over seeds (population std), or the value alone for one seed."""
  v = np.atleast_1d(np.asarray(values, np.float64))
  if len(v) == 1:
    return fmt.format(v[0])
  return f"{fmt.format(v.mean())} ± {fmt.format(v.std())}"


def kernel_name(cost: str) -> str:
  """``'sqeuclidean'`` -> ``'Gaussian'``, ``'euclidean'`` -> ``'Laplacian'`` (the kernel
  ``exp(-cost / tau)``); other costs by their name."""
  for alias, name in costs_lib.COST_ALIASES.items():
    if name == cost:
      return alias.capitalize()
  return cost


def group_rows(results: Sequence[dict], row_axes: Sequence[str],
               pivot: Optional[str] = None) -> list[dict]:
  """One row per distinct value of ``row_axes`` (in first-seen order): the axis values,
  and ``by``, the results of the row keyed by their ``pivot`` value (by ``None``
  without a pivot)."""
  rows: dict = {}
  for r in results:
    key = tuple(r[a] for a in row_axes)
    row = rows.setdefault(key, dict(zip(row_axes, key), by={}))
    row["by"][r[pivot] if pivot else None] = r
  return list(rows.values())


def axis_column(header: str, axis: str, fmt: str = "{}", align: str = "---") -> Column:
  """The value of a row axis; a tuple (several temperatures of one setting) as its
  formatted items joined by ``+``: ``(0.02, 0.2)`` -> ``'0.02+0.2'``."""
  def cell(row):
    value = row[axis]
    if isinstance(value, (list, tuple)):
      return "+".join(fmt.format(v) for v in value)
    return fmt.format(value)
  return Column(header, cell, align)


def metric_column(header: str, key: str, fmt: str = "{:.3f}",
                  pivot_value=None) -> Column:
  """Mean ± std over seeds of ``result[key]`` for the row's result at ``pivot_value``;
  ``'-'`` when that result is missing (a sweep in progress)."""
  def cell(row):
    r = row["by"].get(pivot_value)
    return "-" if r is None or r.get(key) is None else mean_std(r[key], fmt)
  return Column(header, cell)


def markdown(columns: Sequence[Column], rows: Sequence[dict]) -> list[str]:
  """The header, alignment and body lines of the table."""
  lines = ["| " + " | ".join(c.header for c in columns) + " |",
           "|" + "|".join(c.align for c in columns) + "|"]
  lines += ["| " + " | ".join(c.cell(row) for c in columns) + " |" for row in rows]
  return lines
