"""sdrift_jax.training.mesh: the device mesh, shardings and the placed data table;
sharded training on 8 fake CPU devices and on two localhost processes equals one device.

The fake devices must be configured before JAX starts, so those checks run in fresh
processes (tests/scripts/multidevice_script.py, tests/scripts/multihost_script.py) that step one at a
time and block on each step.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, load, table_problem
from sdrift_jax import training
from sdrift_jax.training import mesh as mesh_lib


@pytest.fixture(scope="module")
def report():
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "scripts", "multidevice_script.py"),
                         ROOT], capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.heavy
@pytest.mark.parametrize("scope", ["per_group", "global"])
def test_eight_devices_train_like_one(report, scope):
  assert report["devices"] == 8
  r = report[scope]
  assert r["param_devices"] == 8  # parameters replicated on the whole mesh
  assert r["max_param_diff"] <= 1e-5 * max(r["max_param"], 1.0), r
  assert r["max_loss_rel_diff"] <= 1e-5, r


@pytest.mark.heavy
def test_a_memory_bank_is_sharded_like_the_batch_and_trains_like_one_device(report):
  r = report["bank"]
  assert r["shape"] == [1, 8, 32, 4] and r["devices"] == 8
  assert r["shard_shape"] == [1, 1, 32, 4], r  # one group's rows per device
  assert r["banks_equal"], r
  assert r["max_param_diff"] <= 1e-5 * max(r["max_param"], 1.0), r


@pytest.mark.heavy
def test_global_sampling_never_gathers_the_data_table(report):
  r = report["table_sampling"]
  assert r["shard_shape"] == [1, 500, 4]  # 4000 rows over 8 devices
  assert r["all_gathers"] == [], r  # each device gathers from its own rows ...
  assert r["all_reduces"] and all("4000" not in s for s in r["all_reduces"]), r  # ... then a sum


@pytest.mark.heavy
def test_sharded_checkpoint_round_trip(report):
  assert report["checkpoint"] == {"equal": True, "same_sharding": True}


def test_bad_parallel_configs_name_the_problem():
  import jax
  import ml_collections
  cfg = lambda **kw: ml_collections.ConfigDict(kw)
  with pytest.raises(ValueError, match="unknown config.parallel.coupling 'x'"):
    mesh_lib.make_mesh(cfg(devices=0, coupling="x"), 2, 4)
  with pytest.raises(ValueError, match="device"):
    mesh_lib.make_mesh(cfg(devices=jax.device_count() + 1, coupling="global"), 2, 4)
  assert mesh_lib.make_mesh(cfg(devices=1, coupling="global"), 2, 4) == (None, None)
  assert mesh_lib.make_mesh(None, 2, 4) == (None, None)


def test_one_device_needs_no_sharding():
  import jax.numpy as jnp
  x = jnp.ones((2, 3, 4))
  assert mesh_lib.constrain(x, None, None) is x
  assert mesh_lib.replicated(None) is None


@pytest.mark.parametrize("name", ["latents", "toy"])
def test_impossible_device_layout_fails_before_writing(tmp_path, name):
  import jax
  import experiments
  n = jax.device_count() + 1
  config = load(f"{name}.py", f"smoke,devices={n}")
  with pytest.raises(ValueError, match=rf"config.parallel.devices = {n} but only {n - 1} dev"):
    experiments.run_experiment(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def _free_port():
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.heavy
def test_two_localhost_processes_train_like_one(tmp_path):
  script = os.path.join(ROOT, "tests", "scripts", "multihost_script.py")
  single = subprocess.run([sys.executable, script, ROOT, str(tmp_path), "single"],
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]
  port = str(_free_port())
  workers = [subprocess.Popen([sys.executable, script, ROOT, str(tmp_path), "worker", str(i),
                               port], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
  try:
    outs = [w.communicate(timeout=300) for w in workers]
  finally:
    for w in workers:  # never leave a worker waiting on its peer
      if w.poll() is None:
        w.kill()
  for w, (_, err) in zip(workers, outs):
    assert w.returncode == 0, err[-3000:]
  assert all("2 process(es), 4 device(s)" in o for o, _ in outs), outs
  # One process reads all 400 training rows; each of two reads its half: its two classes
  # (per group) or its half of every class's rows (global).
  assert "single per_group: read 400 rows" in single.stdout, single.stdout
  for i, (o, _) in enumerate(outs):
    assert f"worker{i} per_group: read 200 rows" in o, o
    assert f"worker{i} global: read 200 rows" in o, o
  ref = np.load(tmp_path / "params_single_per_group.npz")
  ref_metrics = [json.loads(l) for l in open(tmp_path / "single_per_group" / "metrics.jsonl")]
  for scope in ("per_group", "global"):
    for i in range(2):
      got = np.load(tmp_path / f"params_worker{i}_{scope}.npz")
      assert list(got.keys()) == list(ref.keys())
      for k in ref.keys():
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6)
    # Process 0 alone wrote the metrics (one record per chunk, not one per process), with
    # the single process's losses and W2^2; orbax wrote the checkpoints of steps 2 and 4.
    run = tmp_path / f"worker_{scope}"
    metrics = [json.loads(l) for l in open(run / "metrics.jsonl")]
    assert [r["step"] for r in metrics] == [2, 4]
    for r, r_ref in zip(metrics, ref_metrics):
      np.testing.assert_allclose(r["loss"], r_ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(metrics[-1]["w2"], ref_metrics[-1]["w2"], rtol=1e-4)
    assert sorted(os.listdir(run / "checkpoints")) == ["2", "4"]


def test_trainers_of_one_problem_share_the_placed_table():
  config = load("latents.py", "smoke")
  rng = np.random.default_rng(8)
  problem = training.class_conditional_problem(
      [rng.normal(size=(30, 16)).astype(np.float32) for _ in range(3)],
      [rng.normal(size=(10, 16)).astype(np.float32) for _ in range(3)])
  first = training.Trainer(config, problem).device_table()
  assert problem.table.rows_read == 90
  second = training.Trainer(config, problem).device_table()  # the next setting of a sweep
  assert second is first and problem.table.rows_read == 90
  np.testing.assert_array_equal(np.asarray(first[0][1]), np.asarray(problem.table.sources[1]))
  assert mesh_lib.place_table(problem.table, None, None) is first


def test_problem_without_a_table_has_no_device_table():
  c = load("toy.py", "smoke")
  from tests.helpers import toy_problem  # pylint: disable=g-import-not-at-top
  assert training.Trainer(c, toy_problem(c)).device_table() is None
  assert training.Trainer(load("latents.py", "smoke"), table_problem(dim=16)).device_table()[
      0].shape == (3, 50, 16)


@pytest.mark.heavy
def test_feature_encoder_weights_are_replicated_on_the_mesh():
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "scripts",
                                                      "feature_encoder_mesh_script.py"), ROOT],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  assert r["max_param_diff"] <= 1e-5, r
  np.testing.assert_allclose(r["loss_one"], r["loss_two"], rtol=1e-5)
