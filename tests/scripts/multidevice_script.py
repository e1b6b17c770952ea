"""Run by tests/training/test_mesh.py in a fresh process with 8 fake CPU devices.

Trains a few steps on one device and on an 8-device mesh (both coupling scopes) and
prints the largest parameter and loss differences as JSON.
"""
import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 8)

import numpy as np  # noqa: E402

sys.path.insert(0, sys.argv[1])
from configs import latents as latents_config  # noqa: E402
from sdrift_jax import training as train  # noqa: E402
from sdrift_jax.training import problem as problem_lib  # noqa: E402


def problem(groups):
  rng = np.random.default_rng(0)
  per_class = [rng.normal(size=(100, 4)).astype(np.float32) + 3 * c for c in range(groups)]
  held = [rng.normal(size=(20, 4)).astype(np.float32) + 3 * c for c in range(groups)]
  return train.class_conditional_problem(per_class, held)


def run(groups, parallel, steps=3, **train_fields):
  config = latents_config.get_config("smoke")
  config.unlock()
  config.train.batch_size = 16
  config.train.update(train_fields)
  config.drift.T = 11
  config.drift.tau = 0.5
  if parallel:
    config.parallel = dict(parallel)
  trainer = train.Trainer(config, problem(groups))
  state = trainer.init()
  chunk = trainer.make_chunk(1)
  keys = trainer.seed_keys()
  tau = trainer.objective.tau_array()
  losses = []
  for _ in range(steps):  # one step per call, blocked on (2-core collective aborts otherwise)
    state, ms = chunk(state, keys, tau)
    jax.block_until_ready(state)
    losses.append(np.asarray(ms["loss"]))
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]
  return leaves, np.stack(losses), state


out = {"devices": jax.device_count()}
for name, groups, parallel in [("per_group", 8, {"coupling": "per_group"}),
                               ("global", 1, {"coupling": "global"})]:
  ref_leaves, ref_loss, _ = run(groups, None)
  leaves, loss, state = run(groups, parallel)
  out[name] = dict(
      max_param_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(ref_leaves, leaves)),
      max_param=max(float(np.max(np.abs(a))) for a in ref_leaves),
      max_loss_rel_diff=float(np.max(np.abs(loss - ref_loss) / np.abs(ref_loss))),
      param_devices=len(jax.tree_util.tree_leaves(state.params)[0].sharding.device_set))
# A memory bank is sharded like the batch (each device holds its groups' rows) and
# trains as on one device.
bank = dict(bank_size=32, bank_push=8)
ref_leaves, ref_loss, ref_state = run(8, None, **bank)
leaves, loss, state = run(8, {"coupling": "per_group"}, **bank)
out["bank"] = dict(
    max_param_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(ref_leaves, leaves)),
    max_param=max(float(np.max(np.abs(a))) for a in ref_leaves),
    banks_equal=bool(np.array_equal(np.asarray(ref_state.bank.items),
                                    np.asarray(state.bank.items))),
    shape=list(state.bank.items.shape),
    shard_shape=list(state.bank.items.addressable_shards[0].data.shape),
    devices=len(state.bank.items.sharding.device_set))
# Under global coupling the data table is sharded over its rows; drawing positives must
# not gather the table onto every device (only the [C, batch, D] draw is summed).
import re  # noqa: E402

trainer = train.Trainer(latents_config.get_config("smoke,coupling=global,devices=8"),
                        train.class_conditional_problem(
                            [np.zeros((4000, 4), np.float32)], [np.zeros((20, 4), np.float32)]))
table = trainer.device_table()
hlo = jax.jit(lambda k, t: problem_lib.sample_from_table(k, 16, t)).lower(
    jax.random.key(0), table).compile().as_text()
out["table_sampling"] = dict(
    shard_shape=list(table[0].addressable_shards[0].data.shape),
    all_gathers=re.findall(r"= (\S+) all-gather\(", hlo),
    all_reduces=re.findall(r"= (\S+) all-reduce\(", hlo))
# A sharded (replicated-on-8-devices) training state saves and restores through orbax.
import tempfile  # noqa: E402
from sdrift_jax.training import checkpoint  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
  ckpt = checkpoint.Checkpointer(tmp)
  ckpt.save(3, state)
  ckpt.wait()
  restored = ckpt.restore(3, state)
  ckpt.close()
  pairs = list(zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)))
  out["checkpoint"] = dict(
      equal=all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs),
      same_sharding=all(a.sharding == b.sharding for a, b in pairs))
print(json.dumps(out))
