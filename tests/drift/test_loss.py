"""Tests of sdrift_jax.drift.loss: the drift over feature sets and the drifting loss.

The oracle is tests/references/feature_drift_numpy.py, a float64 NumPy statement of the reference
codes' loss that shares no code with the library (it was checked against the reference
PyTorch function itself on identical inputs; that check lives outside the project).
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.references.feature_drift_numpy import feature_drift_np
from sdrift_jax import drift_field, feature_drift, feature_drift_loss, feature_sets_loss
from sdrift_jax.drift import loss as loss_lib

# float32 against float64: the measured worst case over the grid below is 2.6e-6 (see
# test_matches_numpy_reference); 1e-5 leaves a 5x margin.
RTOL = 1e-5


def sets(seed, n=12, p=10, u=5, L=4, C=3, scale=1.0, shift=0.7):
  rng = np.random.default_rng(seed)
  x = (scale * rng.normal(size=(n, L, C))).astype(np.float32)
  y = (scale * (rng.normal(size=(p, L, C)) + shift)).astype(np.float32)
  yu = (scale * rng.normal(size=(u, L, C))).astype(np.float32) if u else None
  return x, y, yu


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _cfg_modes(form, normalization):
  """(omega, uncond_marginal, with_uncond) cases that the combination accepts."""
  modes = [(1.0, "weighted_cols", False), (2.5, "weighted_cols", True)]
  if normalization == "sinkhorn":
    modes.append((3.0, "none", True))
    if form == "split":
      modes.append((2.0, "post_guidance", True))
  return modes


def _grid(full: bool, offsets=(0, 13)):
  """Every form x normalization x cost x mask x CFG mode; the remaining options
  (feature_scale, temperatures, L, unit_vectors, T) are the full product when ``full``,
  else one setting of them per combination and offset, cycled through the product."""
  base = []
  for form, norm, cost, mask in itertools.product(
      ("split", "joint"), ("one_sided", "two_sided", "sinkhorn"),
      ("euclidean", "sqeuclidean"), (None, False, True)):
    for mode in _cfg_modes(form, norm):
      base.append((form, norm, cost, mask, mode))
  rest = list(itertools.product((True, False), ((0.05,), (0.02, 0.05, 0.2)), (1, 4),
                                (False, True), (8, 41)))
  cases = []
  for i, b in enumerate(base):
    chosen = rest if full else [rest[(7 * i + o) % len(rest)] for o in offsets]
    for fs, taus, L, unit, T in chosen:
      if unit and b[2] != "euclidean":
        if full:
          continue
        unit = False  # unit vectors need the Euclidean cost; keep the combination
      if b + (fs, taus, L, unit, T) not in cases:
        cases.append(b + (fs, taus, L, unit, T))
  return cases


def _check_case(form, norm, cost, mask, mode, fs, taus, L, unit, T, seed=0):
  omega, marginal, with_u = mode
  x, y, yu = sets(seed, L=L, u=5 if with_u else 0)
  kw = dict(tau=taus, omega=omega, normalization=norm, form=form, T=T, cost=cost,
            feature_scale=fs, mask_self=mask, unit_vectors=unit, uncond_marginal=marginal)
  got = feature_drift(x, y, yu, **kw)
  want = feature_drift_np(x, y, yu, **kw)
  assert got.drift.shape == (x.shape[0], L, x.shape[2])
  err = rel_err(got.drift, want["drift"])
  assert err < RTOL, (kw, err)
  assert rel_err(got.scale, want["scale"]) < 1e-6
  loss = feature_drift_loss(x, y, yu, **kw)
  assert abs(float(loss) - want["loss"]) <= 2 * RTOL * want["loss"]
  return err


#: One setting of the other options per combination (CI); a second setting of each is
#: ``GRID_SECOND`` (``-m slow``, with the full product).
GRID = _grid(full=False, offsets=(0,))
GRID_SECOND = [c for c in _grid(full=False) if c not in GRID]


def _case_id(case):
  form, norm, cost, mask, (omega, marginal, with_u), fs, taus, L, unit, T = case
  return "-".join([form, norm, cost, f"mask{mask}", f"w{omega}", marginal,
                   "u" if with_u else "nou", f"fs{fs}", f"K{len(taus)}", f"L{L}",
                   "unit" if unit else "raw", f"T{T}"])


def test_grid_covers_every_combination():
  """Each form x normalization x cost x mask x CFG mode appears, each case once."""
  assert {c[:5] for c in GRID} == {c[:5] for c in _grid(full=True)}
  assert len({_case_id(c) for c in GRID}) == len(GRID) == 90
  assert len({_case_id(c) for c in GRID + GRID_SECOND}) == 180


@pytest.mark.parametrize("case", GRID, ids=[_case_id(c) for c in GRID])
def test_matches_numpy_reference(case):
  _check_case(*case)


@pytest.mark.slow
@pytest.mark.parametrize("case", GRID_SECOND, ids=[_case_id(c) for c in GRID_SECOND])
def test_matches_numpy_reference_second_settings(case):
  _check_case(*case)


@pytest.mark.slow
def test_matches_numpy_reference_full_product():
  for case in _grid(full=True):
    _check_case(*case, seed=1)


@pytest.mark.parametrize("form,norm", [("split", "sinkhorn"), ("joint", "sinkhorn")])
@pytest.mark.parametrize("marginal", ["weighted_cols", "none"])
def test_aggregate_kernels_matches_reference(form, norm, marginal):
  x, y, yu = sets(2)
  kw = dict(tau=(0.02, 0.05, 0.2), omega=2.0, normalization=norm, form=form, T=9,
            aggregate_kernels=True, uncond_marginal=marginal)
  assert rel_err(feature_drift(x, y, yu, **kw).drift,
                 feature_drift_np(x, y, yu, **kw)["drift"]) < RTOL


def test_post_guidance_with_aggregate_kernels():
  x, y, yu = sets(3)
  kw = dict(tau=(0.05, 0.2), omega=2.0, T=9, aggregate_kernels=True,
            uncond_marginal="post_guidance")
  assert rel_err(feature_drift(x, y, yu, **kw).drift,
                 feature_drift_np(x, y, yu, **kw)["drift"]) < RTOL


@pytest.mark.long
def test_high_dimension_matmul_costs():
  """C > 16 takes the matmul expansion of the distances; self distances stay exactly 0."""
  x, y, yu = sets(4, C=40, L=2)
  for norm, form in (("sinkhorn", "split"), ("two_sided", "joint")):
    kw = dict(tau=(0.02, 0.05, 0.2), omega=2.0, normalization=norm, form=form, T=41)
    assert rel_err(feature_drift(x, y, yu, **kw).drift,
                   feature_drift_np(x, y, yu, **kw)["drift"]) < RTOL


# -- invariances ------------------------------------------------------------------------

@pytest.mark.parametrize("cost,normalize", [("euclidean", True), ("euclidean", False),
                                            ("sqeuclidean", True)])
@pytest.mark.parametrize("norm,form", [("sinkhorn", "split"), ("two_sided", "joint"),
                                       ("one_sided", "split")])
def test_scale_free(cost, normalize, norm, form):
  x, y, yu = sets(5)
  kw = dict(tau=(0.05, 0.2), omega=2.0, normalization=norm, form=form, cost=cost,
            normalize=normalize, T=21)
  base = feature_drift(x, y, yu, **kw)
  for c in (0.01, 37.0):
    scaled = feature_drift(c * x, c * y, c * yu, **kw)
    assert rel_err(scaled.drift, base.drift) < 2e-5, c
    assert rel_err(scaled.scale, base.scale * (c if cost == "euclidean" else c * c)) < 1e-5


def test_squared_cost_without_normalization_is_not_scale_free():
  """The counterpart of the test above: only theta makes the squared cost scale-free."""
  x, y, yu = sets(5)
  kw = dict(tau=0.05, cost="sqeuclidean", normalize=False)
  base = feature_drift(x, y, yu, **kw).drift
  assert rel_err(10 * feature_drift(10 * x, 10 * y, 10 * yu, **kw).drift, base) < 2e-5


@pytest.mark.parametrize("norm,form,unit", [("sinkhorn", "split", False),
                                            ("two_sided", "joint", True),
                                            ("sinkhorn", "joint", False)])
def test_translation_invariant(norm, form, unit):
  x, y, yu = sets(6)
  shift = np.array([3.0, -2.0, 5.0], np.float32)
  kw = dict(tau=(0.05, 0.2), omega=2.0, normalization=norm, form=form, unit_vectors=unit)
  a = feature_drift(x, y, yu, **kw).drift
  b = feature_drift(x + shift, y + shift, yu + shift, **kw).drift
  assert rel_err(b, a) < 1e-5


# -- CFG --------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["split", "joint"])
@pytest.mark.parametrize("norm", ["one_sided", "two_sided"])
def test_omega_one_equals_no_unconditional_negatives(form, norm):
  x, y, yu = sets(7)
  kw = dict(tau=(0.05, 0.2), normalization=norm, form=form)
  with_u = feature_drift(x, y, yu, omega=1.0, **kw)
  without = feature_drift(x, y, None, **kw)
  # Measured 4.7e-7 (float32 rounding of the extra zero-mass columns' sums).
  assert rel_err(with_u.drift, without.drift) < 2e-6
  assert float(with_u.scale) == pytest.approx(float(without.scale), rel=1e-6)


def test_guidance_moves_the_drift_away_from_unconditional_samples():
  """omega > 1 repels from the unconditional negatives: the drift's component towards
  their mean shrinks as omega grows."""
  x, y, _ = sets(8, u=0)
  yu = sets(9, u=0, shift=-3.0)[1]  # unconditional samples far on the other side
  toward = []
  for omega in (1.0, 2.0, 4.0):
    V = np.asarray(feature_drift(x, y, yu, tau=0.2, omega=omega, normalize=False).drift)
    direction = yu.mean(0) - x.mean(0)
    toward.append(float(np.mean(np.sum(V * direction, -1))))
  assert toward[0] > toward[1] > toward[2]


@pytest.mark.long
def test_weighted_cols_never_infeasible_and_none_is_refused():
  x, y, yu = sets(10)
  for omega in (1.0, 0.5):
    out = feature_drift(x, y, yu, tau=0.05, omega=omega, uncond_marginal="weighted_cols")
    assert np.all(np.isfinite(out.drift))
    with pytest.raises(ValueError, match=rf"^omega={omega} gives the unconditional negatives "
                       r"weight w <= 0, which uncond_marginal='none' turns into empty kernel "
                       r"columns: Sinkhorn's column marginals are then infeasible\. Use "
                       r"uncond_marginal='weighted_cols' or omega > 1$"):
      feature_drift(x, y, yu, tau=0.05, omega=omega, uncond_marginal="none")
  # A traced omega cannot be checked, so 'none' is accepted under jit (omega > 1 here).
  fn = jax.jit(lambda o: feature_drift(x, y, yu, tau=0.05, omega=o,
                                       uncond_marginal="none").drift)
  np.testing.assert_allclose(fn(2.0), feature_drift(x, y, yu, tau=0.05, omega=2.0,
                                                    uncond_marginal="none").drift,
                             rtol=1e-5, atol=1e-6)


def test_weighted_cols_marginal_is_met():
  x, y, yu = sets(11)
  out = feature_drift(x, y, yu, tau=0.2, omega=3.0, T=401, algorithm="log")
  assert float(jnp.max(out.marginal_error_neg)) < 1e-4
  assert float(jnp.max(out.marginal_error_pos)) < 1e-4


def test_uncond_weight_formula():
  assert float(loss_lib.uncond_weight(3.0, 64, 16)) == pytest.approx(63 * 2 / 16)
  assert float(loss_lib.uncond_weight(1.0, 64, 16)) == 0.0


# -- paths, transforms, gradients -------------------------------------------------------

@pytest.mark.parametrize("tau,tol", [(0.002, 5e-5), (0.05, RTOL), (1.0, RTOL)])
@pytest.mark.long
def test_scaling_path_and_log_domain_match_float64(tau, tol):
  """The scaling-domain Sinkhorn (default) and the plain log domain against float64, CFG
  weights traced inside jit included. At tau = 0.002 of the mean distance the logits
  reach ~500 and float32 rounds them to ~3e-5: measured errors 1.2e-5 (scaling) and
  2.5e-5 (log); tol 5e-5 there."""
  x, y, yu = sets(12, n=32, p=24, u=8, L=2, C=5)

  @jax.jit
  def both(omega):
    kw = dict(tau=tau, omega=omega, T=41)
    return (feature_drift(x, y, yu, algorithm="scaling", **kw).drift,
            feature_drift(x, y, yu, algorithm="log", **kw).drift)

  fast, plain = both(jnp.float32(2.5))
  want = feature_drift_np(x, y, yu, tau=tau, omega=2.5, T=41)["drift"]
  assert rel_err(fast, want) < tol
  assert rel_err(plain, want) < tol


def test_vmap_over_classes_and_traced_omega():
  xs, ys, us = zip(*(sets(20 + c) for c in range(3)))
  xs, ys, us = map(np.stack, (xs, ys, us))
  omegas = jnp.array([1.0, 2.0, 3.5])
  fn = jax.jit(jax.vmap(lambda x, y, u, o: feature_drift(x, y, u, tau=(0.05, 0.2), omega=o,
                                                         form="joint").drift))
  got = fn(xs, ys, us, omegas)
  for c in range(3):
    want = feature_drift_np(xs[c], ys[c], us[c], tau=(0.05, 0.2), omega=float(omegas[c]),
                            form="joint")["drift"]
    assert rel_err(got[c], want) < RTOL


@pytest.mark.long
def test_loss_gradient_is_the_drift():
  """d loss / d x = -2 V / (N L C S): gradients flow through x / S only."""
  x, y, yu = sets(13)
  kw = dict(tau=(0.02, 0.05, 0.2), omega=2.0)
  g = jax.grad(lambda x: feature_drift_loss(x, y, yu, **kw))(jnp.asarray(x))
  out = feature_drift(x, y, yu, **kw)
  np.testing.assert_allclose(g, -2 * out.drift / (x.size * out.scale), rtol=1e-5, atol=1e-9)


@pytest.mark.long
def test_loss_of_2d_input_and_feature_sets_sum():
  x, y, yu = sets(14, L=1)
  x2, y2 = x[:, 0], y[:, 0]
  a = feature_drift_loss(x2, y2, tau=0.05)
  assert float(a) == pytest.approx(float(feature_drift_loss(x, y, tau=0.05)), rel=1e-6)
  # [N, C] is [N, 1, C] for the gradient too (a broadcast [N, C] + [N, 1, C] would keep
  # the value and average the gradient over rows).
  g2 = jax.grad(lambda v: feature_drift_loss(v, y2, tau=0.05))(jnp.asarray(x2))
  g3 = jax.grad(lambda v: feature_drift_loss(v, y, tau=0.05))(jnp.asarray(x))
  np.testing.assert_allclose(g2, g3[:, 0], rtol=1e-6, atol=1e-9)
  xb, yb, _ = sets(15, L=3, C=2)
  total, parts = feature_sets_loss({"a": x, "b": xb}, {"a": y, "b": yb}, tau=0.05)
  assert set(parts) == {"a", "b"}
  assert float(total) == pytest.approx(float(parts["a"] + parts["b"]), rel=1e-6)
  with pytest.raises(ValueError, match=r"^feature sets must have the same names: "
                                       r"x \['a'\], y_pos \['b'\]$"):
    feature_sets_loss({"a": x}, {"b": y}, tau=0.05)


@pytest.mark.long
def test_feature_sets_loss_passes_each_sets_unconditional_negatives():
  x, y, yu = sets(19, L=4, C=3)
  xb, yb, yub = sets(20, L=1, C=2)
  kw = dict(tau=0.05, omega=2.5)
  total, parts = feature_sets_loss({"a": x, "b": xb}, {"a": y, "b": yb},
                                   {"a": yu, "b": yub}, **kw)
  assert float(total) == pytest.approx(float(parts["a"] + parts["b"]), rel=1e-6)
  # The loss is mean(V^2) ~ 1 with or without them; its gradient -2 V / (N L C S) shows
  # that each set got its own unconditional negatives.
  grads = jax.grad(lambda xs: feature_sets_loss(xs, {"a": y, "b": yb}, {"a": yu, "b": yub},
                                                **kw)[0])({"a": jnp.asarray(x),
                                                           "b": jnp.asarray(xb)})
  for name, args in (("a", (x, y, yu)), ("b", (xb, yb, yub))):
    with_u, without_u = feature_drift(*args, **kw), feature_drift(*args[:2], **kw)
    want = -2 * with_u.drift / (args[0].size * with_u.scale)
    np.testing.assert_allclose(grads[name], want, rtol=1e-5, atol=1e-9)
    assert rel_err(with_u.drift, without_u.drift) > 0.05
  with pytest.raises(ValueError, match=r"same names: x \['a', 'b'\], y_pos \['a', 'b'\], "
                                       r"y_uncond \['a'\]"):
    feature_sets_loss({"a": x, "b": xb}, {"a": y, "b": yb}, {"a": yu}, **kw)
  with pytest.raises(ValueError, match="^no feature sets given$"):
    feature_sets_loss({}, {}, tau=0.05)


def test_feature_inputs_are_checked_and_lists_accepted():
  x, y, _ = sets(21)
  with pytest.raises(ValueError, match=r"^x must be an array of shape \[n, L, C\] or "
                                       r"\[n, C\], got None$"):
    feature_drift(None, y, tau=0.05)
  with pytest.raises(ValueError, match="^y_pos must have a floating dtype, got int32$"):
    feature_drift(x, y.astype(np.int32), tau=0.05)
  from_lists = feature_drift(x.tolist(), y.tolist(), tau=0.05)
  np.testing.assert_array_equal(from_lists.drift, feature_drift(x, y, tau=0.05).drift)


@pytest.mark.long
def test_omega_must_be_a_real_scalar_defaults_to_one_and_integers_are_accepted():
  x, y, yu = sets(22)
  for bad in (np.array([2.0]), 2j, True):
    with pytest.raises(ValueError, match="^omega must be a real scalar"):
      feature_drift(x, y, yu, tau=0.05, omega=bad)
  np.testing.assert_array_equal(feature_drift(x, y, yu, tau=0.05).drift,  # default 1.0
                                feature_drift(x, y, yu, tau=0.05, omega=1.0).drift)
  as_int = feature_drift(x, y, yu, tau=0.05, omega=2)
  np.testing.assert_array_equal(as_int.drift, feature_drift(x, y, yu, tau=0.05, omega=2.0).drift)


@pytest.mark.parametrize("form", ["split", "joint"])
@pytest.mark.long
def test_marginal_errors_are_means_over_locations(form):
  """L identical locations give each location the one-location coupling, so the
  marginal errors (a mean over locations of per-location L1 errors) equal the L = 1
  ones; a sum over locations, or over the wrong axis, would not."""
  x, y, yu = sets(27, L=1, C=3)
  kw = dict(tau=(0.05, 0.2), omega=2.5, T=5, form=form)
  one = feature_drift(x, y, yu, **kw)
  four = feature_drift(*(np.repeat(v, 4, axis=1) for v in (x, y, yu)), **kw)
  assert float(jnp.min(one.marginal_error_pos)) > 1e-3
  for name in ("marginal_error_pos", "marginal_error_neg"):
    # float32 sums in another order per batch layout: 1.1e-5 relative measured.
    np.testing.assert_allclose(getattr(four, name), getattr(one, name), rtol=1e-4)


def test_joint_sinkhorn_marginal_errors_vanish_when_converged():
  x, y, yu = sets(28)
  out = feature_drift(x, y, yu, tau=0.2, omega=2.5, form="joint", T=400)
  for err in (out.marginal_error_pos, out.marginal_error_neg):  # L1 errors: >= 0
    assert 0.0 <= float(jnp.min(err)) and float(jnp.max(err)) < 1e-4
  short = feature_drift(x, y, yu, tau=0.2, omega=2.5, form="joint", T=1)
  assert float(jnp.max(short.marginal_error_pos)) > 1e-2


@pytest.mark.parametrize("form", ["split", "joint"])
@pytest.mark.parametrize("T", [4, 5])
def test_unnormalized_drift_matches_float64(form, T):
  """normalize=False keeps each temperature's drift at its own scale, so the joint plan's
  total mass shows (an odd T ends on a row step, whose mass is the row marginal's)."""
  x, y, yu = sets(30)
  kw = dict(tau=(0.05, 0.2), omega=2.0, form=form, T=T, normalize=False)
  got = feature_drift(x, y, yu, **kw)
  want = feature_drift_np(x, y, yu, **kw)
  assert rel_err(got.drift, want["drift"]) < RTOL


@pytest.mark.parametrize("norm", ["one_sided", "two_sided"])
@pytest.mark.parametrize("mask", [False, True])
def test_joint_marginal_errors_match_float64(norm, mask):
  """The joint form's diagnostics for the one- and two-sided couplings, whose plans do
  not have unit mass: the column sums of the plan divided by its mass, against the
  uniform target, L1 over each block and mean over locations (float64 NumPy)."""
  x, y, _ = sets(29, u=0)
  tau = 0.3
  out = feature_drift(x, y, tau=tau, normalization=norm, form="joint", feature_scale=False,
                      mask_self=mask)
  x64, y64 = (np.swapaxes(v, 0, 1).astype(np.float64) for v in (x, y))  # [L, n, C]
  dist = lambda a, b: np.sqrt(np.sum((a[:, :, None] - b[:, None]) ** 2, axis=-1))
  n, P, C = x.shape[0], y.shape[0], x.shape[2]
  logits = -np.concatenate([dist(x64, y64), dist(x64, x64)], axis=-1) / (tau * np.sqrt(C))
  if mask:
    logits[:, np.arange(n), P + np.arange(n)] = -np.inf
  row = np.exp(logits - np.max(logits, -1, keepdims=True))
  row /= row.sum(-1, keepdims=True)
  if norm == "one_sided":
    A = row
  else:
    col = np.exp(logits - np.max(logits, 1, keepdims=True))
    A = np.sqrt(row * col / col.sum(1, keepdims=True))
  err = np.abs(A.sum(1) / A.sum((1, 2))[:, None] - 1.0 / (P + n))   # [L, P + n]
  want_pos, want_neg = err[:, :P].sum(-1).mean(), err[:, P:].sum(-1).mean()
  assert want_pos > 1e-2 and want_neg > 1e-2
  np.testing.assert_allclose(out.marginal_error_pos, [want_pos], rtol=1e-5)
  np.testing.assert_allclose(out.marginal_error_neg, [want_neg], rtol=1e-5)


def test_cost_aliases_are_the_canonical_costs():
  x, y, _ = sets(26)
  for alias, name in (("laplacian", "euclidean"), ("gaussian", "sqeuclidean")):
    np.testing.assert_array_equal(feature_drift(x, y, tau=0.05, cost=alias).drift,
                                  feature_drift(x, y, tau=0.05, cost=name).drift)


def test_smallest_accepted_sets_and_empty_unconditional_negatives():
  """Two generated samples and one positive are enough; zero unconditional negatives are
  none at all (float64 reference for the first)."""
  x, y, yu = sets(24)
  got = feature_drift(x[:2], y[:1], tau=0.05, normalization="two_sided")
  want = feature_drift_np(x[:2], y[:1], None, tau=(0.05,), normalization="two_sided")
  assert rel_err(got.drift, want["drift"]) < RTOL
  one = feature_drift(x, y, yu[:1], tau=0.05, omega=2.0)
  want = feature_drift_np(x, y, yu[:1], tau=(0.05,), omega=2.0)
  assert rel_err(one.drift, want["drift"]) < RTOL
  np.testing.assert_array_equal(feature_drift(x, y, yu[:0], tau=0.05, omega=2.0).drift,
                                feature_drift(x, y, None, tau=0.05, omega=2.0).drift)
  with pytest.raises(ValueError, match="^y_pos must hold at least one sample$"):
    feature_drift(x, y[:0], tau=0.05)


@pytest.mark.long
def test_inputs_promote_to_a_common_dtype_under_x64():
  x, y, yu = sets(25)
  with jax.enable_x64(True):
    assert feature_drift(x, y.astype(np.float64), tau=0.05).drift.dtype == jnp.float64
    assert feature_drift(x.astype(np.float64), y, tau=0.05).drift.dtype == jnp.float64
    assert feature_drift(x, y, yu.astype(np.float64), tau=0.05,
                         omega=2.0).drift.dtype == jnp.float64
    assert feature_drift(x, y, yu, tau=0.05, omega=2.0).drift.dtype == jnp.float32
    # Python-float omegas are float64 under x64; no CFG mode may let that through.
    for marginal in ("weighted_cols", "post_guidance", "none"):
      for aggregate in (False, True):
        out = feature_drift(x, y, yu, tau=(0.05, 0.2), omega=2.0, uncond_marginal=marginal,
                            aggregate_kernels=aggregate)
        assert out.drift.dtype == jnp.float32, (marginal, aggregate)
        assert out.marginal_error_neg.dtype == jnp.float32, (marginal, aggregate)


@pytest.mark.parametrize("kw", [
    dict(omega=2.5), dict(omega=3, uncond_marginal="post_guidance", T=8),
    dict(omega=2.0, form="joint", aggregate_kernels=True),
    dict(omega=2.0, normalization="two_sided", cost="sqeuclidean")],
    ids=["weighted_cols", "post_guidance-int_omega", "joint-aggregate", "two_sided"])
def test_float64_inputs_match_the_float64_reference_closely(kw):
  """With x64 and float64 features every step runs in float64 (omega and the
  temperatures included), so the drift meets the float64 NumPy reference to 1e-12
  (measured 3e-16 to 1e-15; an integer omega once cast to float32 gave 2.5e-10)."""
  x, y, yu = (v.astype(np.float64) for v in sets(31))
  kw = dict(tau=(0.05, 0.2), **kw)
  with jax.enable_x64(True):
    got = feature_drift(x, y, yu, **kw)
  want = feature_drift_np(x, y, yu, **kw)
  assert got.drift.dtype == jnp.float64
  assert rel_err(got.drift, want["drift"]) < 1e-12


@pytest.mark.long
def test_relative_tau_drift_field_equals_feature_drift():
  """drift_field(relative_tau=True) is the scale-free drift with L = 1, in data units."""
  rng = np.random.default_rng(16)
  x = (5 * rng.normal(size=(40, 3))).astype(np.float32)
  y = (5 * rng.normal(size=(30, 3)) + 3).astype(np.float32)
  for cost in ("euclidean", "sqeuclidean"):
    for algorithm in ("auto", "blocked"):
      V = drift_field(x, y, x, 0.05, T=41, cost=cost, relative_tau=True, algorithm=algorithm)
      out = feature_drift(x, y, tau=0.05, cost=cost, mask_self=False, normalize=False, T=41)
      assert rel_err(V, out.scale * out.drift[:, 0]) < RTOL
  # Masked: self pairs leave the mean too.
  V = drift_field(x, y, x, 0.05, cost="euclidean", normalization="one_sided",
                  mask_self=True, relative_tau=True)
  out = feature_drift(x, y, tau=0.05, normalization="one_sided", mask_self=True,
                      normalize=False)
  assert rel_err(V, out.scale * out.drift[:, 0]) < RTOL


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(normalization="two_sided_jointly"), "^unknown normalization 'two_sided_jointly'"),
    (dict(form="both"), "^unknown form 'both'"),
    (dict(cost="half_sqeuclidean"), "^unknown cost 'half_sqeuclidean'"),
    (dict(cost=["euclidean"]), r"^unknown cost \['euclidean'\]"),
    (dict(uncond_marginal="cols"), "^unknown uncond_marginal 'cols'"),
    (dict(algorithm="fused"), "^unknown algorithm 'fused'"),
    (dict(algorithm="blocked", form="joint"), "^algorithm='blocked' serves"),
    (dict(algorithm="blocked", unit_vectors=True), "^algorithm='blocked' serves"),
    (dict(unit_vectors=True, cost="sqeuclidean"), "^unit_vectors=True needs cost='euclidean'"),
    (dict(uncond_marginal="post_guidance", form="joint"), "^uncond_marginal='post_guidance'"),
    (dict(uncond_marginal="post_guidance", normalization="one_sided"),
     "^uncond_marginal='post_guidance'"),
    (dict(aggregate_kernels=True, normalization="two_sided"), "^aggregate_kernels=True needs"),
    (dict(T=2.5), "T must be an int"),
    (dict(tau=-0.1), "tau"),
    (dict(tau="abc"), "tau"),
    (dict(omega="2"), "^omega must be a real number"),
    (dict(omega=float("nan")), "^omega must be finite"),
    (dict(mask_self="yes"), "^mask_self must be None or a bool"),
    (dict(feature_scale=1), "^feature_scale must be a bool"),
    (dict(normalize="no"), "^normalize must be a bool"),
    (dict(unit_vectors=0), "^unit_vectors must be a bool"),
    (dict(aggregate_kernels=None), "^aggregate_kernels must be a bool"),
])
def test_bad_arguments_raise(kwargs, match):
  x, y, yu = sets(17)
  kw = dict(tau=0.05)
  kw.update(kwargs)
  with pytest.raises(ValueError, match=match):
    feature_drift(x, y, yu, **kw)


def test_bad_shapes_raise():
  x, y, yu = sets(18)
  with pytest.raises(ValueError, match="y_pos must have L=4"):
    feature_drift(x, y[:, :2], tau=0.05)
  with pytest.raises(ValueError, match="y_uncond must have"):
    feature_drift(x, y, yu[..., :2], tau=0.05)
  with pytest.raises(ValueError, match="at least 2"):
    feature_drift(x[:1], y, tau=0.05)
  with pytest.raises(ValueError, match=r"^x must have shape \[n, L, C\] or \[n, C\], got \(3,\)$"):
    feature_drift(x[0, 0], y, tau=0.05)


def test_two_sided_joint_is_the_two_sided_joint_form():
  """The vocabulary of drift_field: 'two_sided_joint' names normalization='two_sided'
  with form='joint' in feature_drift too."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(9, 2, 3)).astype(np.float32)
  y = rng.normal(size=(7, 2, 3)).astype(np.float32)
  alias = feature_drift(x, y, tau=0.1, normalization="two_sided_joint")
  full = feature_drift(x, y, tau=0.1, normalization="two_sided", form="joint")
  np.testing.assert_array_equal(np.asarray(alias.drift), np.asarray(full.drift))
  with pytest.raises(ValueError, match="^normalization='two_sided_joint' is form 'joint'"):
    feature_drift(x, y, tau=0.1, normalization="two_sided_joint", form="other")
