"""sdrift_jax.training.checkpoint: verified saves, and damaged checkpoints set aside in one line
(docs/reliability.md)."""
import logging
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import flip, truncate
from sdrift_jax.training import checkpoint as checkpoint_lib


def _saved(tmp_path, steps=(1, 2)):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  like = {"a": jnp.arange(2000.0), "s": jnp.int32(0)}
  for s in steps:
    ckpt.save(s, {"a": jnp.arange(2000.0) * s, "s": jnp.int32(s)})
  ckpt.close()
  return like


def _empty(d):
  shutil.rmtree(d)
  os.makedirs(d)


def _no_metadata(d):
  os.remove(os.path.join(d, "_CHECKPOINT_METADATA"))


def _no_array_metadata(d):
  os.remove(os.path.join(d, "default", "_METADATA"))


def _no_checksum_and_truncated(d):
  os.remove(os.path.join(d, checkpoint_lib.CHECKSUM_NAME))
  truncate(d)


@pytest.mark.parametrize("damage", [truncate, flip, _empty, _no_metadata,
                                    _no_array_metadata, _no_checksum_and_truncated])
def test_damaged_latest_checkpoint_falls_back_in_one_line(tmp_path, caplog, damage):
  like = _saved(tmp_path)
  damage(str(tmp_path / "ck" / "2"))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    step, state = ckpt.restore_latest(like)
  assert step == 1 and int(state["s"]) == 1
  np.testing.assert_array_equal(state["a"], np.arange(2000.0))
  ours = [r for r in caplog.records if r.name == "sdrift_jax"]
  assert len(ours) == 1 and "step 2" in ours[0].message and "trying step 1" in ours[0].message
  assert "\n" not in ours[0].getMessage()
  assert ckpt.all_steps() == [1]  # set aside, so the run can save step 2 again
  assert os.listdir(str(tmp_path / "ck.damaged"))[0].startswith("2-")
  ckpt.close()


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(tmp_path):
  like = _saved(tmp_path)
  flip(str(tmp_path / "ck" / "1"))
  flip(str(tmp_path / "ck" / "2"))
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  with pytest.raises(checkpoint_lib.CheckpointError, match="no usable checkpoint"):
    ckpt.restore_latest(like)


def test_checkpoint_without_checksum_restores_with_a_warning(tmp_path, caplog):
  like = _saved(tmp_path)
  os.remove(tmp_path / "ck" / "2" / checkpoint_lib.CHECKSUM_NAME)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    step, _ = ckpt.restore_latest(like)
  assert step == 2 and "restored unchecked" in caplog.text
  assert ckpt.latest_checked_step() == 1


def test_empty_directory_restores_nothing(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "ck"))
  like = {"a": jnp.zeros(3)}
  assert ckpt.restore_latest(like)[0] is None
  assert ckpt.latest_step() is None and ckpt.latest_checked_step() is None
  ckpt.close()
