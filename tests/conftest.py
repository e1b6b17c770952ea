import os
import shutil
import tempfile
import warnings

# XLA's CPU backend without LLVM's optimization passes: the tests' programs are tiny and
# each runs a few times, so compiling them is most of the run (measured in
# docs/testing.md). The HLO passes, and so the arithmetic, are unchanged. Set before
# JAX starts its backend; the processes the tests start inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp
import numpy as np
import pytest

from tests.references import numpy_reference
from sdrift_jax import costs as costs_lib

# ott-jax imports jaxopt, which warns about its own deprecation on import.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="jaxopt")

# One persistent compilation cache for the run, shared through the environment with the
# processes the tests start (pytest-xdist workers, CLI runs, killed and resumed runs,
# multi-device scripts): a program that took more than 0.2 s to compile is read from
# disk when it comes again. Created by the first process (the xdist controller),
# removed by it at the end; a cache directory given by the caller is kept.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="sdrift_jax_tests_xla_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


#: The float64 grids (test function -> k): every k-th case stays in the quick subset, the
#: others are marked ``grid``. CI runs them all; the quick subset is
#: ``-m "not slow and not heavy and not grid and not long"``.
GRIDS = {
    "test_matches_numpy_reference": 6,
    "test_matches_float64_numpy": 6,
    "test_barycentric_map_equals_coupling_product": 4,
    "test_blocked_transposed_column_step": 4,
    "test_coupling_equals_log_domain_and_float64": 3,
    "test_default_drift_equals_log_domain_and_float64": 3,
    "test_blocked_equals_dense": 3,
    "test_tiny_tau_stays_finite_and_matches_float64": 3,
    "test_p_equals_q_gives_zero_drift": 3,
    "test_prop_3_1_drift_is_sinkhorn_divergence_gradient": 2,
}


def pytest_collection_modifyitems(config, items):
  seen = {}
  for item in items:
    name = getattr(item, "originalname", item.name)
    if name in GRIDS:
      index = seen.setdefault(name, 0)
      seen[name] = index + 1
      if index % GRIDS[name]:
        item.add_marker(pytest.mark.grid)
  # The longest tests first (whole pipelines, then single tests over ~3 s), each group in
  # its collected order: with two workers a pipeline of minutes that started last would
  # leave the other worker idle at the end.
  rank = lambda item: (0 if item.get_closest_marker("heavy") else
                       1 if item.get_closest_marker("long") else 2)
  items.sort(key=rank)


def pytest_sessionfinish(session):
  if _OWN_CACHE and not hasattr(session.config, "workerinput"):
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


def clouds(seed, n=40, m=30, d=3, shift=0.5, scale=1.0):
  """Three random float32 clouds (x, y_pos, y_neg) with distinct sizes."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y_pos = (scale * rng.normal(size=(m, d)) + shift).astype(np.float32)
  y_neg = rng.normal(size=(m + 7, d)).astype(np.float32)
  return x, y_pos, y_neg


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def logit_problem(seed, n, m, d, tau_rel, cost="sqeuclidean"):
  """Clouds, a temperature ``tau_rel`` times the median float64 cost, the float32 logits
  ``-C / tau`` and uniform log marginals: ``(x, y, tau, logits, log_a, log_b)``."""
  x, y, _ = clouds(seed, n=n, m=m, d=d, scale=1.5)
  tau = tau_rel * float(np.median(numpy_reference.cost(x, y, cost)))
  logits = -costs_lib.pairwise_cost(jnp.asarray(x), jnp.asarray(y), cost) / tau
  log_a = jnp.full((n,), -np.log(n), jnp.float32)
  log_b = jnp.full((m,), -np.log(m), jnp.float32)
  return x, y, tau, logits, log_a, log_b


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's compiled programs after each test module. One pytest process compiles
  thousands of XLA programs; kept alive together they once aborted XLA's CPU compiler
  late in the run (a process that ran each module alone passed)."""
  yield
  from sdrift_jax.training import shared  # pylint: disable=g-import-not-at-top
  shared.clear_shared_trainers()
  jax.clear_caches()


def log_coupling(logits, log_a, log_b, T):
  """The plain log-domain engine's row-normalized coupling: the reference the other
  engines are compared with."""
  from sdrift_jax.solvers import log as log_engine  # pylint: disable=g-import-not-at-top
  from sdrift_jax.solvers.problem import Problem  # pylint: disable=g-import-not-at-top
  return log_engine.coupling(Problem.dense(logits, log_a, log_b), T)
