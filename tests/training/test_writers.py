"""sdrift_jax.training.writers: metrics.jsonl and TensorBoard event files, read back."""
import glob
import json
import os
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from tests.helpers import toy_config, toy_problem
from sdrift_jax import training
from sdrift_jax.training import writers


def read_events(logdir):
  """Every event of the TFRecord event files under ``logdir``: ``(tag, step, value)`` of
  the scalars, and the tags of the images. Parsed by hand (length, crc, record, crc), so
  neither TensorFlow nor TensorBoard is needed."""
  scalars, images = [], []
  files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
  assert files, f"no event files in {logdir}"
  for path in files:
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      record = data[pos + 12:pos + 12 + length]
      pos += 12 + length + 4
      event = event_pb2.Event()
      event.ParseFromString(record)
      for v in event.summary.value:
        if v.HasField("image"):
          images.append((v.tag, event.step, v.image.height, v.image.width))
        else:
          scalars.append((v.tag, event.step, v.simple_value))
  return scalars, images


def test_jsonl_writer_appends_and_a_resume_drops_later_records(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  w = writers.JsonlWriter(path)
  for step in (10, 20, 30):
    w.write_scalars(step, dict(loss=[0.5, 0.25], note="x"))
  w.close()
  assert [json.loads(l) for l in open(path)] == [
      dict(step=s, loss=[0.5, 0.25], note="x") for s in (10, 20, 30)]
  writers.JsonlWriter(path, resume_step=20)
  assert [r["step"] for r in training.read_metrics(str(tmp_path))] == [10, 20]


def test_tensorboard_scalars_read_back_with_their_values(tmp_path):
  w = writers.TensorBoardWriter(str(tmp_path / "tb"))
  w.write_scalars(10, dict(loss=[1.0, 3.0], w2=0.5, steps_per_s=7,
                           w2_per_class=[[1.0, 2.0]], eval_params="ema", flag=True))
  w.write_scalars(20, dict(loss=[0.5, 1.5]))
  w.write_images(20, dict(samples=np.linspace(0, 1, 12).reshape(3, 4)))
  w.close()
  scalars, images = read_events(str(tmp_path / "tb"))
  got = {(tag, step): value for tag, step, value in scalars}
  assert got == pytest.approx({
      ("loss", 10): 2.0, ("loss/seed0", 10): 1.0, ("loss/seed1", 10): 3.0,
      ("w2", 10): 0.5, ("steps_per_s", 10): 7.0,
      ("loss", 20): 1.0, ("loss/seed0", 20): 0.5, ("loss/seed1", 20): 1.5})
  # Nested lists, strings and bools go to the JSON record only.
  assert not any(t.startswith(("w2_per_class", "eval_params", "flag")) for t, _, _ in scalars)
  assert images == [("samples", 20, 3, 4)]


def test_non_finite_scalars_stay_out_of_tensorboard_quietly(tmp_path, caplog):
  w = writers.TensorBoardWriter(str(tmp_path / "tb"))
  with caplog.at_level("WARNING"):
    w.write_scalars(10, dict(marginal_error_neg=[float("nan"), 0.5], w2=float("inf"),
                             loss=[1.0, 3.0]))
  w.close()
  scalars, _ = read_events(str(tmp_path / "tb"))
  got = {(tag, step): value for tag, step, value in scalars}
  assert got == pytest.approx({("marginal_error_neg/seed1", 10): 0.5, ("loss", 10): 2.0,
                               ("loss/seed0", 10): 1.0, ("loss/seed1", 10): 3.0})
  assert "NaN or Inf" not in caplog.text


@pytest.mark.long
def test_a_run_writes_metrics_and_tensorboard_with_the_same_values(tmp_path):
  c = toy_config(steps=20)
  c.train.num_seeds = 2
  training.train_generator(c, str(tmp_path), toy_problem(c))
  records = training.read_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [10, 20]
  scalars, _ = read_events(str(tmp_path / writers.TENSORBOARD_DIR))
  got = {(tag, step): value for tag, step, value in scalars}
  for r in records:
    for key in ("loss", "drift_rms", "w2", "marginal_error_pos", "marginal_error_neg"):
      assert got[(key, r["step"])] == pytest.approx(float(np.mean(r[key])), rel=1e-6), key
      for s in range(2):
        assert got[(f"{key}/seed{s}", r["step"])] == pytest.approx(r[key][s], rel=1e-6)
    assert got[("seconds", r["step"])] == pytest.approx(r["seconds"], rel=1e-6)


def test_tensorboard_false_writes_no_tensorboard_dir(tmp_path):
  c = toy_config(steps=10)
  c.logging.tensorboard = False
  assert not writers.tensorboard_enabled(c)
  training.train_generator(c, str(tmp_path), toy_problem(c))
  assert os.path.exists(tmp_path / "metrics.jsonl")
  assert not os.path.exists(tmp_path / writers.TENSORBOARD_DIR)
  assert sorted(os.listdir(tmp_path)) == ["checkpoints", "config.json", "metrics.jsonl"]
  png = tmp_path / "x.png"
  png.write_bytes(b"")  # never read: the figure is not written without TensorBoard
  writers.write_figure(str(tmp_path), c, 10, "samples", str(png))
  assert not os.path.exists(tmp_path / writers.TENSORBOARD_DIR)


def test_tensorboard_defaults_on_without_a_logging_block():
  c = toy_config()
  assert writers.tensorboard_enabled(c)
  with c.unlocked():
    del c["logging"]
  assert writers.tensorboard_enabled(c)


def test_write_figure_adds_the_png_as_an_image(tmp_path):
  from experiments import plotting
  png = str(tmp_path / "grid.png")
  plotting.save_image(np.linspace(0, 1, 28 * 56).reshape(28, 56), png)
  writers.write_figure(str(tmp_path), toy_config(), 30, "samples", png)
  _, images = read_events(str(tmp_path / writers.TENSORBOARD_DIR))
  assert len(images) == 1 and images[0][:2] == ("samples", 30)
