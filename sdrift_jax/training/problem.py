"""What a generator is trained to match: :class:`Problem`, and the per-class training
data as a device table that the trainer samples inside its jitted step."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["class_conditional_problem", "PositiveTable", "Problem", "sample_from_table",
           "sample_unconditional"]


@dataclasses.dataclass(frozen=True)
class Problem:
  """What a generator is trained to match.

  Unconditional problems have one group; class-conditional ones have ``num_classes``
  groups, and every train step draws ``batch_size`` generated and positive samples per
  class and computes the drift within each class (vmapped over classes).

  Attributes:
    dim: data dimension.
    sample_positives: ``(key, n) -> [n, dim]`` (unconditional) or ``[C, n, dim]``
      (conditional): data samples for one train step.
    eval_data: held-out samples for W2^2: an array ``[M, dim]``, or a tuple of ``C``
      arrays ``[M_c, dim]``.
    name: label for logs and figures.
    num_classes: ``None`` for unconditional generators.
    evaluators: what each evaluation measures beyond the built-in W2^2 and marginal
      errors (:mod:`sdrift_jax.training.evaluators`): class accuracy for MNIST, the
      Frechet distance for latents, say.
    table: optional :class:`PositiveTable`, the training data as a device array that
      the trainer shards over its mesh; ``sample_positives`` then takes it as a third
      argument, ``(key, n, table_arrays)``.
    features: optional ``(feature_params, x [n, dim]) -> {name: [n, L, C]}``, a frozen
      feature encoder: the ``'feature_drift'`` objective then drifts these feature sets
      (generated, positive and unconditional samples alike) and sums their losses, with
      gradients reaching the generator through the encoder (pixels through an image
      encoder, say). ``None``: each sample is one feature set ``[n, 1, dim]``.
    feature_params: the encoder's parameters, an argument of the compiled step (not a
      constant baked into it); the objective stops their gradients.
  """
  dim: int
  sample_positives: Callable[..., jax.Array]
  eval_data: Any
  name: str = "data"
  num_classes: Optional[int] = None
  evaluators: Sequence[Any] = ()
  table: Optional["PositiveTable"] = None
  features: Optional[Callable[..., dict]] = None
  feature_params: Any = None

  @property
  def groups(self) -> int:
    return self.num_classes or 1

  def eval_sets(self) -> list:
    return list(self.eval_data) if self.num_classes else [self.eval_data]


class PositiveTable:
  """Per-class training data, padded to ``[C, rows, dim]``, read shard by shard.

  ``sources`` are ``C`` array-likes ``[N_c, dim]`` that support ``len`` and row slicing:
  NumPy arrays, memory maps, or :class:`experiments.data.latents.RowView` s. The trainer
  places the table on its mesh with ``jax.make_array_from_callback``, which asks each
  process only for the blocks its own devices hold, and :meth:`read` reads only those
  rows: per-group coupling shards the class axis (a process reads its classes), global
  coupling the row axis (a process reads its slice of every class). Sampling inside the
  step draws the same indices whatever the layout, so the batch does not depend on it.
  """

  def __init__(self, sources):
    self.sources = list(sources)
    self.counts = np.array([len(s) for s in self.sources], np.int32)
    if len(self.sources) == 0 or self.counts.min() < 1:
      raise ValueError(f"every class needs training samples; counts {self.counts.tolist()}")
    dims = {int(s.shape[1]) for s in self.sources}
    if len(dims) != 1:
      raise ValueError(f"ragged data dimensions over classes: {sorted(dims)}")
    self.dim = dims.pop()
    self.rows_read = 0  # how many data rows this process has read (tests, logs)
    self._placed = {}  # sharding (None: one device) -> (rows, counts), reused by a sweep

  def placed_on(self, sharding, build):
    """The table's device arrays ``(rows, counts)`` for ``sharding`` (None: one
    device): ``build()`` the first time, the same arrays afterwards, so that every run
    of a sweep shares one placement. The table's only state."""
    if sharding not in self._placed:
      self._placed[sharding] = build()
    return self._placed[sharding]

  def shape(self, row_multiple: int = 1) -> tuple[int, int, int]:
    rows = -(-int(self.counts.max()) // row_multiple) * row_multiple
    return (len(self.sources), rows, self.dim)

  def read(self, index, shape) -> np.ndarray:
    """The block ``index`` (a tuple of slices, as ``make_array_from_callback`` gives) of the
    padded table of ``shape``; padding rows are zeros and never sampled."""
    classes, rows, cols = (index + (slice(None),) * 3)[:3]
    c_ids = range(*classes.indices(shape[0]))
    r0, r1, _ = rows.indices(shape[1])
    out = np.zeros((len(c_ids), r1 - r0, shape[2]), np.float32)
    for i, c in enumerate(c_ids):
      hi = min(r1, int(self.counts[c]))
      if hi > r0:
        out[i, : hi - r0] = np.asarray(self.sources[c][r0:hi], np.float32)
        self.rows_read += hi - r0
    return out[:, :, cols]


def sample_unconditional(key, n: int, table) -> jax.Array:
  """``n`` rows from all classes together, uniformly with replacement: ``[n, dim]``
  (a class is drawn in proportion to its row count, then a row within it)."""
  rows, counts = table
  k_class, k_row = jax.random.split(key)
  c = jax.random.choice(k_class, counts.shape[0], (n,), p=counts / jnp.sum(counts))
  r = jnp.minimum((jax.random.uniform(k_row, (n,)) * counts[c]).astype(jnp.int32),
                  counts[c] - 1)
  return rows[c, r]


def sample_from_table(key, n: int, table) -> jax.Array:
  """``n`` rows per class, uniformly with replacement: ``[C, n, dim]``."""
  rows, counts = table
  u = jax.random.uniform(key, (rows.shape[0], n))
  idx = jnp.minimum((u * counts[:, None]).astype(jnp.int32), counts[:, None] - 1)
  return jnp.take_along_axis(rows, idx[..., None], axis=1)


def class_conditional_problem(per_class_train, eval_sets, name: str = "data",
                              evaluators=(), features=None, feature_params=None) -> Problem:
  """A :class:`Problem` with one group per class; positives drawn with replacement.

  Args:
    per_class_train: ``C`` array-likes ``[N_c, dim]`` (ragged ``N_c`` allowed; lazy row
      views are read only where a process's devices need them, see
      :class:`PositiveTable`).
    eval_sets: list of ``C`` held-out arrays ``[M_c, dim]``.
    name: label for logs.
    evaluators: see :class:`Problem`.
    features: see :class:`Problem`.
    feature_params: see :class:`Problem`.
  """
  table = PositiveTable(per_class_train)
  return Problem(dim=table.dim, sample_positives=sample_from_table,
                 eval_data=tuple(eval_sets), name=name, num_classes=len(table.counts),
                 evaluators=tuple(evaluators), table=table, features=features,
                 feature_params=feature_params)
