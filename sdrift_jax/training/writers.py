"""Metric writers: ``metrics.jsonl`` (the record of a run) and TensorBoard event files
beside it, written by process 0 only.

The interface is the one of ``clu.metric_writers`` (``write_scalars``, ``write_images``,
``flush``, ``close``), which the Flax examples use. clu itself is not used: importing
``clu.metric_writers`` imports its TensorFlow summary writer, and TensorFlow is not a
dependency of this project. TensorBoard files are written with tensorboardX (protobuf
and NumPy only), under ``<workdir>/tensorboard``; ``config.logging.tensorboard = False``
turns them off.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from sdrift_jax.training import workdir as workdir_lib

__all__ = ["create_writer", "JsonlWriter", "MetricWriter", "MultiWriter",
           "TENSORBOARD_DIR", "tensorboard_enabled", "TensorBoardWriter", "write_figure"]

log = logging.getLogger("sdrift_jax")

TENSORBOARD_DIR = "tensorboard"


class MetricWriter:
  """What the training loop writes to: per-step scalars and images."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """``scalars``: name -> a number, or a list of per-seed numbers (nested lists, such
    as per-class values, go to the JSON record only)."""

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """``images``: name -> ``[H, W]`` or ``[H, W, C]`` array, floats in [0, 1] or uint8."""

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self.flush()


class JsonlWriter(MetricWriter):
  """Appends one JSON line ``{"step": step, **scalars}`` per call to ``path``.

  Opened at ``resume_step``, it drops the records after that step (they will be
  recomputed, identically) and a partial last line (dropped by
  :func:`sdrift_jax.training.workdir.read_jsonl` with a warning).
  """

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    if os.path.exists(path):
      kept = [r for r in workdir_lib.read_jsonl(path) if r.get("step", 0) <= resume_step]
      workdir_lib.write_jsonl(path, kept)

  def write_scalars(self, step, scalars):
    with open(self.path, "a") as f:
      f.write(json.dumps(dict(step=int(step), **scalars)) + "\n")


def _per_seed(value) -> list[float] | None:
  """A number or a flat list of numbers as floats; ``None`` for anything else."""
  if isinstance(value, bool) or value is None:
    return None
  if isinstance(value, (int, float, np.number)):
    return [float(value)]
  if isinstance(value, (list, tuple)) and value and all(
      isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value):
    return [float(v) for v in value]
  return None


class TensorBoardWriter(MetricWriter):
  """Event files under ``logdir`` (tensorboardX). A per-seed list is written as its mean
  under the metric's name and, with more than one seed, each seed under
  ``<name>/seed<s>``; strings and nested lists are skipped."""

  def __init__(self, logdir: str):
    try:
      import tensorboardX  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError("config.logging.tensorboard = True needs tensorboardX "
                        "(pip install tensorboardX, or the project's [experiments] extra); "
                        "or set config.logging.tensorboard = False") from None
    self._writer = tensorboardX.SummaryWriter(logdir, flush_secs=30)

  def write_scalars(self, step, scalars):
    # NaN and inf (a coupling's marginal error where its kernel underflows, say) go to
    # metrics.jsonl only: tensorboardX would log a warning for each.
    for name, value in scalars.items():
      values = _per_seed(value)
      if values is None:
        continue
      if np.all(np.isfinite(values)):
        self._writer.add_scalar(name, float(np.mean(values)), int(step))
      if len(values) > 1:
        for s, v in enumerate(values):
          if np.isfinite(v):
            self._writer.add_scalar(f"{name}/seed{s}", v, int(step))

  def write_images(self, step, images):
    for name, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
      self._writer.add_image(name, image, int(step),
                             dataformats="HW" if image.ndim == 2 else "HWC")

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


class MultiWriter(MetricWriter):
  """Writes to each of ``writers``."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self.writers = list(writers)

  def write_scalars(self, step, scalars):
    for w in self.writers:
      w.write_scalars(step, scalars)

  def write_images(self, step, images):
    for w in self.writers:
      w.write_images(step, images)

  def flush(self):
    for w in self.writers:
      w.flush()

  def close(self):
    for w in self.writers:
      w.close()


def tensorboard_enabled(config) -> bool:
  """``config.logging.tensorboard`` (``True`` when the config has no logging block)."""
  block = config.get("logging")
  return True if block is None else bool(block.get("tensorboard", True))


def create_writer(workdir: str, config, resume_step: int = 0) -> MetricWriter:
  """The writer of a run: ``metrics.jsonl`` and (with ``config.logging.tensorboard``)
  TensorBoard files on process 0; a writer that writes nothing on the others."""
  if jax.process_index() != 0:
    return MetricWriter()
  writers = [JsonlWriter(os.path.join(workdir, "metrics.jsonl"), resume_step)]
  if tensorboard_enabled(config):
    writers.append(TensorBoardWriter(os.path.join(workdir, TENSORBOARD_DIR)))
  return MultiWriter(writers)


def write_figure(workdir: str, config, step: int, name: str, png_path: str) -> None:
  """Adds the PNG at ``png_path`` (a sample figure) to the run's TensorBoard files as an
  image summary (process 0, when TensorBoard is on)."""
  if jax.process_index() != 0 or not tensorboard_enabled(config):
    return
  from matplotlib import image as mpimg  # pylint: disable=g-import-not-at-top
  writer = TensorBoardWriter(os.path.join(workdir, TENSORBOARD_DIR))
  image = mpimg.imread(png_path)
  writer.write_images(step, {name: image[..., :3] if image.ndim == 3 else image})
  writer.close()
