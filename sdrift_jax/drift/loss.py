"""Drifting losses over feature sets, as the reference codes train them.

A feature set is an array ``[N, L, C]``: ``L`` feature vectors of dimension ``C`` per
sample (one per spatial location of an encoder's feature map, say; a latent vector is
``L = 1``). The drift runs per location ``l`` (a batch over ``L``), with one feature
scale ``S`` and one drift normalization ``theta`` per temperature shared by all
locations (Deng et al., App. A.5-A.7; the Sinkhorn-drifting paper's reference code,
``core/drifting_loss.py``, function ``drifting_loss_for_feature_set``).

For one feature set, with ``d`` the cost (``|x - y|`` or ``|x - y|^2``):

1. Scale (``feature_scale=True``): ``S = max(mean(d) / sqrt(C), 1e-6)``, the mean taken
   over the positive pairs, the generated-negative pairs (the ``N`` self pairs left out
   of the count unless ``mask_self=False``) and the unconditional pairs weighted by
   ``max(w, 0)``. Features and costs are divided by ``S``, for either cost; so the logits
   ``-d / (S tau sqrt(C))`` equal ``-d / (tau mean(d))``: ``tau`` is relative to the
   batch's mean distance. ``feature_scale=False`` is ``S = 1`` (raw units).
2. Couplings from the logits over the positives ``y_pos`` and the negatives
   ``[x | y_uncond]``, by ``form`` and ``normalization`` (below), then
   ``v = W_pos @ (y_pos / S) - W_neg @ ([x | y_uncond] / S)``.
3. ``normalize=True``: each temperature's ``v`` is divided by
   ``theta = sqrt(max(mean(v^2), 1e-12))`` (mean over all of ``[N, L, C]``, also for a
   single temperature); the drift is the sum over temperatures.
4. Loss: ``mean((x / S - sg(x / S + V))^2)`` over ``N, L, C``; its value is ``mean(V^2)``.

Forms and normalizations:

* ``form='split'``: ``W_pos`` and ``W_neg`` are separate row-stochastic couplings:
  ``'one_sided'`` the row softmax, ``'two_sided'`` ``sqrt(softmax_row * softmax_col)``
  row-normalized, ``'sinkhorn'`` ``T`` half-steps of Sinkhorn scaling (rows first, from
  zero potentials, i.e. from the raw kernel; row marginal ``1/N``, column marginal
  uniform or CFG-weighted), then row-normalized: ``T = 2k`` and ``2k + 1`` agree and
  equal the reference's ``k`` iterations.
* ``form='joint'`` (Deng et al.'s Algorithm 2): one coupling ``A`` over the concatenated
  ``[pos | neg]`` logits (``'two_sided'``: the geometric mean, Deng's baseline;
  ``'one_sided'``: the row softmax; ``'sinkhorn'``: the plan after ``T`` half-steps with
  row marginal ``1/N`` and every column weighing the same, ``M+ + M-`` columns in all),
  used as it is (the reference's ``k`` iterations are ``T = 2k``), then
  ``W_pos = A_pos * rowsum(A_neg)``, ``W_neg = A_neg * rowsum(A_pos)``.

Classifier-free guidance (Deng et al. App. A.7): ``U`` unconditional real samples are
appended to the negatives with weight ``w = (N - 1)(omega - 1) / U``. One- and two-sided
couplings add ``log w`` to their logits (``-inf`` when ``w <= 0``). Sinkhorn instead
(``uncond_marginal``): ``'weighted_cols'`` gives them column marginals ``max(w, 1e-6)``
against 1 for the generated columns (normalized); ``'post_guidance'`` runs with uniform
marginals, then multiplies their columns of the row-normalized coupling by ``omega`` and
renormalizes the rows (split form only); ``'none'`` adds ``log w`` like the others, which
is infeasible for ``w <= 0`` (refused when ``omega`` is concrete; NaN under ``jit``).

Where the reference code and the papers' text differ, this module follows the reference
code: the masked self pairs get cost ``1e6`` in scaled units there (here: zero kernel,
the same coupling in float32), the diagonal is left out of the count of ``S`` even for
Sinkhorn, which it never masks, and its joint Sinkhorn weighs every column of
``[pos | neg]`` the same rather than each side by one half.
"""
from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sdrift_jax import costs as costs_lib
from sdrift_jax.drift import features as core
from sdrift_jax import solvers
from sdrift_jax import validation
from sdrift_jax.drift import checks
from sdrift_jax.drift import couplings
from sdrift_jax.solvers import select
from sdrift_jax.drift import warm
from sdrift_jax.drift.features import FeatureDrift, uncond_weight

__all__ = [
    "FORMS", "FEATURE_NORMALIZATIONS", "UNCOND_MARGINALS", "FeatureDrift",
    "feature_drift", "feature_drift_loss", "feature_sets_loss", "regression_loss",
    "uncond_weight",
]

FORMS = couplings.FORMS
FEATURE_NORMALIZATIONS = couplings.NORMALIZATIONS
UNCOND_MARGINALS = ("weighted_cols", "post_guidance", "none")
FEATURE_COSTS = ("euclidean", "sqeuclidean")

def _prepare(x, y_pos, y_uncond, tau, omega, normalization, form, T, cost, feature_scale,
             normalize, mask_self, unit_vectors, uncond_marginal, aggregate_kernels,
             algorithm, check_finite=None):
  x = checks.as_feature_set(x, "x")
  N, L, C = x.shape
  if N < 2:
    raise ValueError(f"x needs at least 2 samples (the generated negatives), got {N}")
  y_pos = checks.as_feature_set(y_pos, "y_pos", L, C)
  if y_pos.shape[0] == 0:
    raise ValueError("y_pos must hold at least one sample")
  if y_uncond is not None:
    y_uncond = checks.as_feature_set(y_uncond, "y_uncond", L, C)
    if y_uncond.shape[0] == 0:
      y_uncond = None
  validation.check_finite(check_finite, x=x, y_pos=y_pos, y_uncond=y_uncond)
  dtype = jnp.result_type(x.dtype, y_pos.dtype,
                          *([] if y_uncond is None else [y_uncond.dtype]))
  taus, _ = validation.as_tau(tau)
  omega = checks.check_omega(omega)
  normalization, form = couplings.canonical_form(normalization, form)
  T = validation.check_T(T)
  cost = costs_lib.COST_ALIASES.get(cost, cost) if isinstance(cost, str) else cost
  cost = validation.check_choice(cost, FEATURE_COSTS, "cost")
  uncond_marginal = validation.check_choice(uncond_marginal, UNCOND_MARGINALS,
                                            "uncond_marginal")
  validation.check_choice(algorithm, solvers.ALGORITHMS, "algorithm")
  for name, flag in (("feature_scale", feature_scale), ("normalize", normalize),
                     ("unit_vectors", unit_vectors), ("aggregate_kernels", aggregate_kernels)):
    if not isinstance(flag, (bool, np.bool_)):
      raise ValueError(f"{name} must be a bool, got {flag!r}")
  if mask_self is not None and not isinstance(mask_self, (bool, np.bool_)):
    raise ValueError(f"mask_self must be None or a bool, got {mask_self!r}")
  if unit_vectors and cost != "euclidean":
    raise ValueError("unit_vectors=True needs cost='euclidean' (the Laplacian kernel's "
                     f"gradient direction), got cost={cost!r}")
  if uncond_marginal == "post_guidance" and (normalization != "sinkhorn" or form != "split"):
    raise ValueError("uncond_marginal='post_guidance' needs normalization='sinkhorn' and "
                     f"form='split', got {normalization!r} and {form!r}")
  if aggregate_kernels and normalization != "sinkhorn":
    raise ValueError("aggregate_kernels=True needs normalization='sinkhorn'")
  if (uncond_marginal == "none" and normalization == "sinkhorn" and y_uncond is not None
      and not validation.is_traced(omega) and float(omega) <= 1.0):
    raise ValueError(
        f"omega={float(omega)} gives the unconditional negatives weight w <= 0, which "
        "uncond_marginal='none' turns into empty kernel columns: Sinkhorn's column "
        "marginals are then infeasible. Use uncond_marginal='weighted_cols' or omega > 1")
  mask_coupling = (normalization != "sinkhorn") if mask_self is None else bool(mask_self)
  # The marginals are strictly positive by construction (CFG weights are floored).
  blocked_ok = (form == "split" and normalization == "sinkhorn" and not unit_vectors
                and uncond_marginal != "post_guidance" and not aggregate_kernels)
  if algorithm == "blocked" and not blocked_ok:
    raise ValueError("algorithm='blocked' serves the split form's Sinkhorn coupling without "
                     "unit_vectors, post_guidance or aggregate_kernels (it never forms the "
                     "N x M coupling those read)")
  M = max(y_pos.shape[0], N + (0 if y_uncond is None else y_uncond.shape[0]))
  algorithm = select.resolve_algorithm(algorithm, N, M, jnp.dtype(dtype).itemsize, copies=L,
                                       blocked_ok=blocked_ok)
  args = (x.astype(dtype), y_pos.astype(dtype),
          None if y_uncond is None else y_uncond.astype(dtype), taus.astype(dtype), omega)
  static = dict(form=form, normalization=normalization, T=T, cost=cost,
                feature_scale=bool(feature_scale), normalize=bool(normalize),
                mask_coupling=mask_coupling, exclude_diagonal=mask_self is not False,
                unit_vectors=bool(unit_vectors), uncond_marginal=uncond_marginal,
                aggregate_kernels=bool(aggregate_kernels), algorithm=algorithm)
  return args, static


# -- public API --------------------------------------------------------------------------

def feature_drift(x, y_pos, y_uncond=None, *, tau, omega=1.0, normalization="sinkhorn",
                  form="split", T: int = 41, cost="euclidean", feature_scale: bool = True,
                  normalize: bool = True, mask_self: Optional[bool] = None,
                  unit_vectors: bool = False, uncond_marginal: str = "weighted_cols",
                  aggregate_kernels: bool = False, algorithm: str = "auto",
                  check_finite: Optional[bool] = None, tol=None, init=None, anneal=None,
                  with_state: Optional[bool] = None) -> FeatureDrift:
  """The drift of one feature set, as the reference codes' loss computes it.

  Pure and jitted (``tau`` and ``omega`` are traced; the rest is static); usable under
  ``jax.jit`` and ``jax.vmap`` (over classes, say). No gradient flows through it.

  Args:
    x: array ``[N, L, C]`` (or ``[N, C]``, read as ``L = 1``), generated features;
      also the generated negatives. ``N >= 2``.
    y_pos: array ``[P, L, C]`` (or ``[P, C]``), positive (data) features.
    y_uncond: optional ``[U, L, C]`` unconditional real features, the CFG negatives.
    tau: temperature ``rho`` (> 0) relative to the mean distance when
      ``feature_scale=True`` (in cost units times ``1 / sqrt(C)`` otherwise); a sequence
      gives the sum of the per-temperature drifts, each divided by its ``theta``.
    omega: CFG strength (scalar); ``w = (N - 1)(omega - 1) / U``. Ignored without
      ``y_uncond``.
    normalization: ``'one_sided'``, ``'two_sided'`` or ``'sinkhorn'``.
    form: ``'split'`` (``P_pos @ y_pos - P_neg @ y_neg``) or ``'joint'`` (Algorithm 2's
      cross weighting over ``[pos | neg]``; with ``'two_sided'`` Deng et al.'s baseline).
    T: Sinkhorn half-steps (``normalization='sinkhorn'``). Split form: ``T = 2k + 1``
      and ``2k`` equal the reference's ``k`` iterations; joint form: ``T = 2k``.
    cost: ``'euclidean'`` (``|x - y|``, the reference's ``l2``; alias ``'laplacian'``)
      or ``'sqeuclidean'`` (``|x - y|^2``, ``l2_sq``; alias ``'gaussian'``).
    feature_scale: divide features and costs by ``S`` (the reference's
      ``vanilla=False``); ``False`` keeps raw units (``S = 1``).
    normalize: divide each temperature's drift by its ``theta``.
    mask_self: ``None`` (the reference's default): the self pairs are removed from the
      one- and two-sided couplings, never from Sinkhorn, and left out of the count of
      ``S`` in both cases; ``True``: removed from every coupling and from the count;
      ``False``: kept in both.
    unit_vectors: drift ``sum_j W_ij (y_j - x_i) / |y_j - x_i|`` (needs the Euclidean
      cost) instead of ``W @ y``.
    uncond_marginal: how Sinkhorn sees the CFG weight: ``'weighted_cols'``,
      ``'post_guidance'`` (split form) or ``'none'`` (see the module docstring).
    aggregate_kernels: Sinkhorn once on the kernel averaged over the temperatures
      (floored at 1e-30), its coupling shared by all of them (the reference's
      ``sinkhorn_agg_kernel``).
    algorithm: the Sinkhorn engine (:data:`sdrift_jax.solvers.ENGINES`), chosen by
      the rule :func:`sdrift_jax.drift_field` uses (``'auto'``:
      :func:`sdrift_jax.solvers.resolve_algorithm`, with the ``L`` locations as copies):
      ``'scaling'``, ``'log'`` or ``'blocked'`` (the split form's Sinkhorn coupling
      without ``unit_vectors``, ``post_guidance`` or ``aggregate_kernels``; no ``N x M``
      matrix). The marginals are strictly positive by construction, so CFG weights
      computed inside ``jit`` keep the scaling domain.
    check_finite: refuse NaN or inf in the inputs with a ValueError naming the argument
      and its first bad row. ``None`` (default): on when the inputs are concrete (a call
      outside ``jax.jit``; one fused reduction and one host sync), off when they are
      traced, where the values do not exist yet and a bad row silently makes every
      output row NaN. ``True`` with traced inputs raises; ``False`` skips.
    tol, init, anneal: the Sinkhorn convergence controls of
      :func:`sdrift_jax.drift_field` (stopping tolerance on each location's L1 column
      error, a warm start from an earlier call's ``.state``, epsilon annealing);
      Sinkhorn without ``unit_vectors``, ``post_guidance`` or ``aggregate_kernels``.
    with_state: return ``.state`` (no extra pass here; a call given it as ``init`` pays
      two passes over the costs per coupling and temperature). None (default): when
      ``tol``, ``init`` or ``anneal`` is given (a plain call then compiles the program
      it compiled before the controls existed).

  Returns:
    A :class:`FeatureDrift`.

  Raises:
    ValueError: at trace time, on a bad shape, dtype, name, temperature, ``T`` or an
      invalid combination of options.
  """
  args, static = _prepare(x, y_pos, y_uncond, tau, omega, normalization, form, T, cost,
                          feature_scale, normalize, mask_self, unit_vectors,
                          uncond_marginal, aggregate_kernels, algorithm, check_finite)
  tol, levels = warm.check_convergence(tol, anneal, static["T"], static["normalization"],
                                        init is not None)
  iterative = static["normalization"] == "sinkhorn" and not (
      static["unit_vectors"] or static["uncond_marginal"] == "post_guidance"
      or static["aggregate_kernels"])
  if not iterative and (tol is not None or levels or init is not None or with_state):
    raise ValueError("tol, init, anneal and with_state need the Sinkhorn coupling without "
                     "unit_vectors, uncond_marginal='post_guidance' or aggregate_kernels")
  if init is not None:
    N, L, C = args[0].shape
    warm.check_state(init, 3, C, args[3].shape[0], "feature_drift")
    if init.x.shape[0] != L:
      raise ValueError(f"init holds {init.x.shape[0]} locations; this call has {L}")
  if with_state is None:
    with_state = iterative and (tol is not None or bool(levels) or init is not None)
  with_state = bool(with_state)
  return core.feature_drift(*args, tol, init, anneal=levels, with_state=with_state, **static)


def feature_drift_loss(x, y_pos, y_uncond=None, **kwargs) -> jax.Array:
  """The reference codes' loss for one feature set: ``mean((x/S - sg(x/S + V))^2)``.

  Takes the arguments of :func:`feature_drift`; ``x`` is differentiated (through
  ``x / S`` only: ``S`` and ``V`` are constants). Its value is ``mean(V^2)``.

  Returns:
    A scalar.
  """
  kwargs.setdefault("with_state", False)
  return regression_loss(x, feature_drift(x, y_pos, y_uncond, **kwargs))


def regression_loss(x, out: FeatureDrift) -> jax.Array:
  """``mean((x/S - sg(x/S + V))^2)`` for ``x`` ``[N, L, C]`` (or ``[N, C]``) and its
  :class:`FeatureDrift` ``out`` (``S`` and ``V`` are constants)."""
  x3 = x if x.ndim == 3 else x[:, None, :]
  xn = x3 / jax.lax.stop_gradient(out.scale)
  target = jax.lax.stop_gradient(xn + out.drift)
  return jnp.mean(jnp.square(xn - target))


def feature_sets_loss(x_sets: Mapping[str, jax.Array], y_pos_sets: Mapping[str, jax.Array],
                      y_uncond_sets: Optional[Mapping[str, jax.Array]] = None, **kwargs
                      ) -> tuple[jax.Array, dict]:
  """Sum of :func:`feature_drift_loss` over named feature sets (Deng et al. eq. 26).

  Args:
    x_sets: ``{name: [N, L_k, C_k]}`` generated features, one entry per feature set.
    y_pos_sets: the positives' features, same names.
    y_uncond_sets: optional unconditional negatives' features, same names.
    **kwargs: the options of :func:`feature_drift`, shared by all sets.

  Returns:
    ``(total, {name: loss})``.
  """
  if set(x_sets) != set(y_pos_sets) or (y_uncond_sets is not None
                                        and set(y_uncond_sets) != set(x_sets)):
    raise ValueError(f"feature sets must have the same names: x {sorted(x_sets)}, y_pos "
                     f"{sorted(y_pos_sets)}"
                     + ("" if y_uncond_sets is None else f", y_uncond {sorted(y_uncond_sets)}"))
  if not x_sets:
    raise ValueError("no feature sets given")
  losses = {name: feature_drift_loss(x_sets[name], y_pos_sets[name],
                                     None if y_uncond_sets is None else y_uncond_sets[name],
                                     **kwargs)
            for name in sorted(x_sets)}
  return sum(losses.values()), losses
