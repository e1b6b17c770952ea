"""sdrift_jax.training.problem: Problem, the per-class data table and its samplers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tests.helpers import table_problem
from sdrift_jax import training
from sdrift_jax.training import problem as problem_lib


def _device_table(problem):
  return (jnp.asarray(problem.table.read((slice(None),) * 3, problem.table.shape())),
          jnp.asarray(problem.table.counts))


def test_unconditional_negatives_are_drawn_in_proportion_to_class_size():
  # Row r of class c holds the value 1000 c + r + 1 (padding rows are 0).
  per_class = [np.arange(1, 11, dtype=np.float32)[:, None],
               1000 + np.arange(1, 31, dtype=np.float32)[:, None]]
  problem = training.class_conditional_problem(per_class, [p[:2] for p in per_class])
  y = np.asarray(problem_lib.sample_unconditional(jax.random.key(0), 40000,
                                                  _device_table(problem)))[:, 0]
  assert np.all(y > 0)  # never a padding row
  second = y > 500
  assert np.mean(second) == pytest.approx(0.75, abs=0.01)  # 30 of 40 rows
  # Uniform within each class.
  _, counts = np.unique(y[second], return_counts=True)
  assert len(counts) == 30 and stats.chisquare(counts).pvalue > 1e-3
  _, counts = np.unique(y[~second], return_counts=True)
  assert len(counts) == 10 and stats.chisquare(counts).pvalue > 1e-3


def test_sample_from_table_draws_each_class_uniformly_and_never_padding():
  per_class = [np.arange(1, 4, dtype=np.float32)[:, None],
               100 + np.arange(1, 8, dtype=np.float32)[:, None]]
  problem = training.class_conditional_problem(per_class, [p[:2] for p in per_class])
  y = np.asarray(problem_lib.sample_from_table(jax.random.key(1), 7000,
                                               _device_table(problem)))[..., 0]
  assert y.shape == (2, 7000)
  assert set(np.unique(y[0])) == {1.0, 2.0, 3.0}  # class 0's rows only, no padding
  assert set(np.unique(y[1])) == set(100 + np.arange(1, 8.0))
  assert stats.chisquare(np.unique(y[1], return_counts=True)[1]).pvalue > 1e-3


def test_positive_table_reads_only_the_block_asked_for():
  rng = np.random.default_rng(6)
  per_class = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 9, 7)]
  table = training.PositiveTable(per_class)
  shape = table.shape(row_multiple=4)
  assert shape == (3, 12, 3)
  block = table.read((slice(1, 3), slice(4, 8), slice(None)), shape)
  np.testing.assert_array_equal(block[0], per_class[1][4:8])
  np.testing.assert_array_equal(block[1, :3], per_class[2][4:7])
  assert np.all(block[1, 3] == 0)  # padding
  assert table.rows_read == 4 + 3
  full = table.read((slice(None),) * 3, table.shape())
  assert full.shape == (3, 9, 3) and table.rows_read == 7 + 21
  with pytest.raises(ValueError, match="every class needs training samples"):
    training.PositiveTable([per_class[0], per_class[0][:0]])
  with pytest.raises(ValueError, match="ragged"):
    training.PositiveTable([per_class[0], np.zeros((4, 2), np.float32)])


def test_class_conditional_problem_fields():
  p = table_problem(counts=(4, 6), dim=5)
  assert (p.dim, p.num_classes, p.groups, p.name) == (5, 2, 2, "toy3")
  assert len(p.eval_sets()) == 2 and p.sample_positives is problem_lib.sample_from_table
  unconditional = training.Problem(dim=2, sample_positives=None, eval_data=np.zeros((3, 2)))
  assert unconditional.groups == 1 and len(unconditional.eval_sets()) == 1
