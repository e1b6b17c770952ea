"""DriftSpec: validation on construction, equality with drift_field, and what
``algorithm='auto'`` picks from the shapes (and copies) it will run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdrift_jax import DriftSpec, drift_field, drift_field_with_info
from sdrift_jax.solvers import select as spec_lib


@pytest.mark.parametrize("kwargs, match", [
    (dict(normalization="two-sided"), "normalization"),
    (dict(T=2.5), "T must be an int"),
    (dict(T=0), "T must be >= 1"),
    (dict(cost="cosine"), "unknown cost"),
    (dict(algorithm="fast"), "algorithm"),
    (dict(mask_self=1), "mask_self must be a bool"),
    (dict(relative_tau="yes"), "relative_tau must be a bool"),
    (dict(copies=0), "copies must be an int >= 1"),
    (dict(copies=2.0), "copies must be an int >= 1"),
    (dict(algorithm="blocked", normalization="two_sided"), "supports the split form"),
])
def test_bad_fields_are_refused_on_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    DriftSpec(**kwargs)


def test_cost_aliases_are_stored_canonical():
  assert DriftSpec(cost="laplacian").cost == "euclidean"
  assert DriftSpec(cost="gaussian") == DriftSpec(cost="sqeuclidean")


@pytest.mark.parametrize("normalization", ["sinkhorn", "one_sided", "two_sided",
                                           "two_sided_joint"])
@pytest.mark.long
def test_spec_call_is_drift_field_bit_for_bit(normalization):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  y = rng.normal(size=(30, 3)).astype(np.float32) + 1.0
  spec = DriftSpec(normalization=normalization, T=7, mask_self=True)
  expected = drift_field(x, y, None, 0.3, 7, normalization=normalization, mask_self=True)
  np.testing.assert_array_equal(np.asarray(spec(x, y, None, 0.3)), np.asarray(expected))
  info = spec.with_info(x, y, None, 0.3)
  ref = drift_field_with_info(x, y, None, 0.3, 7, normalization=normalization,
                              mask_self=True)
  np.testing.assert_array_equal(np.asarray(info.marginal_error_pos),
                                np.asarray(ref.marginal_error_pos))


def test_spec_takes_a_traced_temperature_and_compiles_once():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(20, 2)), jnp.float32)
  y = x + 0.5
  spec = DriftSpec(T=5)
  traces = []

  @jax.jit
  def f(tau):
    traces.append(1)
    return spec(x, y, None, tau)

  for tau in (0.1, 0.5, 2.0):
    np.testing.assert_allclose(np.asarray(f(jnp.float32(tau))),
                               np.asarray(drift_field(x, y, None, tau, 5)), rtol=1e-5,
                               atol=1e-6)
  assert len(traces) == 1


def test_auto_sizes_memory_for_all_copies(monkeypatch):
  """'auto' goes blocked once copies x 8 dense N x M float32 matrices pass the budget."""
  monkeypatch.setattr(spec_lib, "memory_budget_bytes", lambda: 8 * 100 * 100 * 4 * 10)
  one = DriftSpec()
  assert one.resolve_algorithm(100, 100, 4) == "scaling"
  assert one.replace(copies=10).resolve_algorithm(100, 100, 4) == "scaling"
  assert one.replace(copies=11).resolve_algorithm(100, 100, 4) == "blocked"
  # No blocked path for the two-sided normalizations: they stay dense.
  assert DriftSpec(normalization="two_sided", copies=11).resolve_algorithm(
      100, 100, 4) == "scaling"


def test_auto_falls_back_to_log_for_zero_or_traced_weights():
  spec = DriftSpec()
  assert spec.resolve_algorithm(4, 4, 4, (np.ones(4, np.float32),)) == "scaling"
  assert spec.resolve_algorithm(4, 4, 4, (np.array([1, 0, 1, 1], np.float32),)) == "log"
  seen = []
  jax.jit(lambda w: seen.append(spec.resolve_algorithm(4, 4, 4, (w,))) or w)(jnp.ones(4))
  assert seen == ["log"]
  with pytest.raises(ValueError, match="strictly positive"):
    DriftSpec(algorithm="scaling").resolve_algorithm(4, 4, 4, (np.zeros(4, np.float32),))


def test_auto_picks_the_log_domain_on_a_gpu(monkeypatch):
  # Measured on an H200: 'log' beat 'scaling' in every dense case (docs/performance.md).
  spec = DriftSpec()
  assert spec.resolve_algorithm(100, 100, 4) == ("log" if jax.default_backend() == "gpu"
                                                 else "scaling")
  monkeypatch.setattr(spec_lib.jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(spec_lib, "memory_budget_bytes", lambda: 8 * 100 * 100 * 4)
  assert spec.resolve_algorithm(100, 100, 4) == "log"
  assert spec.resolve_algorithm(100, 100, 4, (np.ones(100, np.float32),)) == "log"
  assert spec.resolve_algorithm(100, 101, 4) == "blocked"  # memory still decides first
  assert DriftSpec(algorithm="scaling").resolve_algorithm(100, 100, 4) == "scaling"


def test_from_config_reads_the_drift_block():
  import ml_collections
  block = ml_collections.ConfigDict(dict(normalization="one_sided", T=3, tau=0.1,
                                         cost="laplacian", mask_self=True))
  spec = DriftSpec.from_config(block, copies=4)
  assert spec == DriftSpec(normalization="one_sided", T=3, cost="euclidean", mask_self=True,
                           copies=4)


def test_from_config_reads_algorithm_and_relative_tau():
  import ml_collections
  block = ml_collections.ConfigDict(dict(normalization="sinkhorn", T=5, cost="sqeuclidean",
                                         mask_self=False, algorithm="log", relative_tau=True))
  spec = DriftSpec.from_config(block)
  assert (spec.algorithm, spec.relative_tau, spec.copies) == ("log", True, 1)


@pytest.mark.long
def test_every_argument_reaches_the_drift():
  """spec(...) and spec.with_info(...) pass y_neg, each weight and check_finite on: the
  same values as drift_field with them, which differ from the drift without each."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(12, 2)).astype(np.float32)
  y_pos = rng.normal(size=(9, 2)).astype(np.float32) + 1.0
  y_neg = rng.normal(size=(10, 2)).astype(np.float32) - 0.5
  w = {"weights_x": rng.uniform(0.2, 1.0, 12).astype(np.float32),
       "weights_pos": rng.uniform(0.2, 1.0, 9).astype(np.float32),
       "weights_neg": rng.uniform(0.2, 1.0, 10).astype(np.float32)}
  spec = DriftSpec(T=5)
  want = drift_field_with_info(x, y_pos, y_neg, 0.5, 5, **w)
  np.testing.assert_array_equal(spec(x, y_pos, y_neg, 0.5, **w), want.drift)
  info = spec.with_info(x, y_pos, y_neg, 0.5, **w)
  np.testing.assert_array_equal(info.drift, want.drift)
  np.testing.assert_array_equal(info.marginal_error_neg, want.marginal_error_neg)
  for name in w:
    others = {k: v for k, v in w.items() if k != name}
    assert not np.allclose(drift_field(x, y_pos, y_neg, 0.5, 5, **others), want.drift), name
  assert not np.allclose(drift_field(x, y_pos, None, 0.5, 5, weights_x=w["weights_x"],
                                    weights_pos=w["weights_pos"]), want.drift)
  bad = x.copy()
  bad[3, 0] = np.nan
  for call in (spec, spec.with_info):
    with pytest.raises(ValueError, match="x"):
      call(bad, y_pos, y_neg, 0.5)
    call(bad, y_pos, y_neg, 0.5, check_finite=False)  # not checked: NaN drift, no error


def test_blocked_accepts_its_two_normalizations_and_T_is_a_python_int():
  for normalization in ("sinkhorn", "one_sided"):
    assert DriftSpec(algorithm="blocked", normalization=normalization).algorithm == "blocked"
  spec = DriftSpec(T=np.int64(5))
  assert spec.T == 5 and type(spec.T) is int


def test_scaling_with_zero_weights_says_what_to_use():
  with pytest.raises(ValueError, match=(
      r"^algorithm='scaling' needs strictly positive, concrete weights; use "
      r"algorithm='log' \(or 'auto'\) with zero or traced weights$")):
    DriftSpec(algorithm="scaling").resolve_algorithm(4, 4, 4, (np.zeros(4, np.float32),))
