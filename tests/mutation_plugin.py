"""Pytest plugin for mutation runs (benchmarks/mutation.sh): fresh JAX caches per test.

mutmut maps each test to the library functions it calls by recording calls during one
in-process run. Under ``jax.jit`` a function body runs only when it is traced, so a test
that hits a compilation cached by an earlier test would look as if it called nothing.
Clearing the caches before each test of that run makes every test trace what it uses.
Mutant runs are fresh processes and need nothing.
"""
import os

import jax
import pytest


@pytest.fixture(autouse=True)
def _trace_every_test():
  if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    jax.clear_caches()
  yield
