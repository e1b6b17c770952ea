"""Training generators by the drifting loss, one module per job:

* :mod:`~sdrift_jax.training.problem`: what a generator is trained to match
  (:class:`Problem`, the per-class data table and its samplers);
* :mod:`~sdrift_jax.training.objectives`: the loss of a step from ``config.loss`` /
  ``config.drift`` / ``config.guidance``;
* :mod:`~sdrift_jax.training.optim`: the optimizer and learning-rate schedule;
* :mod:`~sdrift_jax.training.mesh`: the device mesh and shardings;
* :mod:`~sdrift_jax.training.trainer`: the pure, compiled functions of a run;
* :mod:`~sdrift_jax.training.evaluators`: what an evaluation measures, as data;
* :mod:`~sdrift_jax.training.loop`: :func:`train_generator`, the resumable run;
* :mod:`~sdrift_jax.training.writers` and :mod:`~sdrift_jax.training.run_files`: the
  files a run writes (metrics, TensorBoard, ``config.json``, reports).
"""
from sdrift_jax.training.evaluators import EvalContext, Evaluator, Metric
from sdrift_jax.training.loop import (NonFiniteLossError, RunHistoryError, check_train_config,
                                      train_generator)
from sdrift_jax.training.problem import PositiveTable, Problem, class_conditional_problem
from sdrift_jax.training.run_files import read_metrics, run_seconds, write_report
from sdrift_jax.training.shared import shared_trainer
from sdrift_jax.training.trainer import Trainer, TrainState

__all__ = [
    "EvalContext",
    "Evaluator",
    "Metric",
    "NonFiniteLossError",
    "RunHistoryError",
    "PositiveTable",
    "Problem",
    "TrainState",
    "Trainer",
    "check_train_config",
    "class_conditional_problem",
    "read_metrics",
    "run_seconds",
    "shared_trainer",
    "train_generator",
    "write_report",
]
