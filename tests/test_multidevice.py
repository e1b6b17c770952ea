"""Sharded training on 8 fake CPU devices equals one device (issue 5).

The fake devices must be configured before JAX starts, so the check runs in a fresh
process (tests/multidevice_script.py) that steps one at a time and blocks on each step.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def report():
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "multidevice_script.py"),
                         ROOT], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scope", ["per_group", "global"])
def test_eight_devices_train_like_one(report, scope):
  assert report["devices"] == 8
  r = report[scope]
  assert r["param_devices"] == 8  # parameters replicated on the whole mesh
  assert r["max_param_diff"] <= 1e-5 * max(r["max_param"], 1.0), r
  assert r["max_loss_rel_diff"] <= 1e-5, r


def test_sharded_checkpoint_round_trip(report):
  assert report["checkpoint"] == {"equal": True, "same_sharding": True}


def test_bad_parallel_configs_name_the_problem():
  import jax
  import ml_collections
  from sdrift_jax import train
  cfg = lambda **kw: ml_collections.ConfigDict(kw)
  with pytest.raises(ValueError, match="unknown config.parallel.coupling 'x'"):
    train.make_mesh(cfg(devices=0, coupling="x"), 2, 4)
  with pytest.raises(ValueError, match="device"):
    train.make_mesh(cfg(devices=jax.device_count() + 1, coupling="global"), 2, 4)
  assert train.make_mesh(cfg(devices=1, coupling="global"), 2, 4) == (None, None)
  assert train.make_mesh(None, 2, 4) == (None, None)
