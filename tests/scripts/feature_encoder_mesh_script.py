"""Run by tests/training/test_mesh.py in a fresh process with 2 fake CPU devices: a
problem with a feature encoder whose weights live on one device trains on a 2-device
mesh (the trainer replicates them) and matches the same run on one device."""
import dataclasses
import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, sys.argv[1])
from tests.helpers import guided_config, table_problem  # noqa: E402
from sdrift_jax import training  # noqa: E402


def encoder(params, x):
  h = jnp.tanh(x @ params["w"])
  return {"a": h[:, None, :], "b": h.reshape(-1, 2, 2)}


def run(devices):
  params = {"w": jax.device_put(jnp.linspace(-1, 1, 12).reshape(3, 4), jax.devices()[0])}
  problem = dataclasses.replace(table_problem(counts=(30, 50)), features=encoder,
                                feature_params=params)
  config = guided_config()
  config.parallel.devices = devices
  trainer = training.Trainer(config, problem)
  state, ms = trainer.make_chunk(2)(trainer.init(), trainer.seed_keys(),
                                    trainer.objective.tau_array())
  return jax.tree.leaves(state.params), np.asarray(ms["loss"])


one, loss_one = run(1)
two, loss_two = run(2)
print(json.dumps(dict(
    max_param_diff=max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                       for a, b in zip(one, two)),
    loss_one=loss_one.tolist(), loss_two=loss_two.tolist())))
