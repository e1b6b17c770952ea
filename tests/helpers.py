"""What the training and experiment tests share: the repository root, configs by name,
the command line, a child process holding a workdir lock, small problems, and checkpoint
damage."""
import functools
import os
import subprocess
import sys

import numpy as np

from experiments import config_lib

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
if ROOT not in sys.path:  # experiments/ and configs/ run from the checkout
  sys.path.insert(0, ROOT)


def load(name: str, variant=None):
  """``configs/<name>`` (``'toy.py'``) with ``variant`` (``'smoke,tau=0.05'``), as
  ``--config=configs/<name>:<variant>`` gives it."""
  path = os.path.join(ROOT, "configs", name)
  return config_lib.load(path + (f":{variant}" if variant else ""))


def cli(*args, env=None, timeout=180):
  """``python -m experiments.run ARGS`` from the repository root."""
  return subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, **(env or {})))


HOLD_SCRIPT = ("import sys, time\n"
               "from sdrift_jax.training import workdir\n"
               "with workdir.hold(sys.argv[1]):\n"
               "  print('held', flush=True)\n"
               "  time.sleep(600)\n")


def holder(path):
  """A child process holding ``path``'s lock (started, lock taken)."""
  proc = subprocess.Popen([sys.executable, "-c", HOLD_SCRIPT, str(path)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def toy_run_dir(workdir, config=None, target="8gaussians", cost="sqeuclidean", tau=0.1,
                normalization="sinkhorn"):
  """Where the toy experiment runs one setting: ``<workdir>/<target>/<cost>/tau<tau>/
  <normalization>`` (the setting of a one-setting ``config`` when given)."""
  if config is not None:
    (target,), (cost,), (tau,), (normalization,) = (
        tuple(config.sweep[k]) for k in ("targets", "costs", "taus", "normalizations"))
  return os.path.join(str(workdir), target, cost, f"tau{tau:g}", normalization)


def toy_setting(config):
  """The run config of a one-setting toy ``config`` (the grid's axes and mask rule
  applied), ready for :func:`sdrift_jax.training.train_generator`."""
  from experiments import sweep, toy  # pylint: disable=g-import-not-at-top
  (setting,) = sweep.settings(config, toy.AXES)
  return sweep.setting_config(config, setting, toy.AXES)


def toy_problem(config):
  """The toy problem of ``config``; one object per (target, seed, eval size), so that the
  tests' runs share trainers and their compiled programs as a sweep's settings do
  (:func:`sdrift_jax.training.shared_trainer`)."""
  return _toy_problem(config.data.target, int(config.seed), int(config.eval.num_samples))


@functools.lru_cache(maxsize=None)
def _toy_problem(target, seed, num_samples):
  from experiments import toy  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  return toy.make_problem(ml_collections.ConfigDict(dict(
      data=dict(target=target), seed=seed, eval=dict(num_samples=num_samples))))


def toy_config(ema_decay=0.0, steps=20, variant="smoke"):
  """The run config of the toy smoke setting, ``steps`` steps in chunks of 10."""
  c = toy_setting(load("toy.py", f"{variant},steps={steps}"))
  c.train.update(ema_decay=ema_decay, log_every=10, eval_every=10, checkpoint_every=10)
  return c


def table_problem(counts=(30, 50, 40), dim=3, seed=0, name="toy3"):
  """A class-conditional problem with a data table: class ``c`` around ``3 c``."""
  from sdrift_jax import training  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  per_class = [rng.normal(size=(n, dim)).astype(np.float32) + 3 * c
               for c, n in enumerate(counts)]
  held_out = [rng.normal(size=(20, dim)).astype(np.float32) + 3 * c
              for c in range(len(counts))]
  return training.class_conditional_problem(per_class, held_out, name=name)


def guided_config(**loss):
  """A tiny class-conditional config with the feature-drift objective and CFG."""
  c = load("mnist.py", "smoke,reference")
  c.loss.update(loss)
  c.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, checkpoint_every=4)
  c.guidance.num_uncond = 4
  return c


def with_method(config, method):
  """``config`` as the sweep runs it for ``method`` (the method axis, then the mask rule)."""
  from experiments import sweep  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  sub = ml_collections.ConfigDict(config.to_dict())
  sweep.method_axis().apply(sub, method)
  sweep.apply_mask_rule(sub)
  return sub


# Checkpoint damage ----------------------------------------------------------------------


def _largest(step_dir):
  from sdrift_jax.training import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  files = checkpoint_lib.step_files(step_dir)
  return os.path.join(step_dir, max(files, key=lambda k: files[k][0]))


def truncate(d):
  p = _largest(d)
  with open(p, "r+b") as f:
    f.truncate(os.path.getsize(p) // 2)


def flip(d):
  """Flips a byte in the middle of the largest file of checkpoint step dir ``d``."""
  p = _largest(d)
  b = bytearray(open(p, "rb").read())
  b[len(b) // 2] ^= 0xFF
  open(p, "wb").write(b)


def steps_on_disk(ckpt_dir):
  return ([int(p) for p in os.listdir(ckpt_dir) if p.isdigit()]
          if os.path.exists(ckpt_dir) else [])


BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


def compiles_of(fn):
  """``(fn(), number of XLA backend compilations while it ran)``, from empty caches (JAX's
  and the shared trainers')."""
  import jax  # pylint: disable=g-import-not-at-top
  from sdrift_jax.training import shared  # pylint: disable=g-import-not-at-top
  jax.clear_caches()
  shared.clear_shared_trainers()
  # A program read from the persistent cache is not a backend compilation: count with
  # it off.
  cached = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  counts = []

  def listener(event, duration, **_):
    if event == BACKEND_COMPILE:
      counts.append(duration)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    out = fn()
  finally:
    jax.config.update("jax_enable_compilation_cache", cached)
    jax.monitoring.unregister_event_duration_listener(listener)
  return out, len(counts)
