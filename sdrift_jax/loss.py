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

import functools
import math
from typing import Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax import feature_couplings
from sdrift_jax import validation

__all__ = [
    "FORMS", "FEATURE_NORMALIZATIONS", "UNCOND_MARGINALS", "FeatureDrift",
    "feature_drift", "feature_drift_loss", "feature_sets_loss", "regression_loss",
    "uncond_weight",
]

FORMS = ("split", "joint")
FEATURE_NORMALIZATIONS = ("one_sided", "two_sided", "sinkhorn")
UNCOND_MARGINALS = ("weighted_cols", "post_guidance", "none")
FEATURE_COSTS = ("euclidean", "sqeuclidean")
FEATURE_ALGORITHMS = ("auto", "scaling", "log")

_MIN_SCALE = 1e-6          # floor of S
_MIN_THETA_SQ = 1e-12      # floor of mean(v^2)
_MIN_COL_WEIGHT = 1e-6     # floor of the unconditional column weight (weighted_cols)
_LOG_MIN_KERNEL = math.log(1e-30)  # floor of the kernel averaged over temperatures


class FeatureDrift(NamedTuple):
  """Result of :func:`feature_drift`.

  Attributes:
    drift: array ``[N, L, C]``, the drift ``V`` in scaled units (``x / S + V`` is the
      target of ``x / S``).
    scale: scalar ``S`` (1 when ``feature_scale=False``).
    theta: array ``[K]``, the RMS of each temperature's drift before normalization.
    marginal_error_pos: array ``[K]``, L1 error of the column marginal of the positive
      coupling (row weights ``1/N``) against uniform, mean over locations; for the joint
      form, that of the positive block of the unit-mass joint plan against its target.
    marginal_error_neg: the same for the negatives, against the Sinkhorn target
      (uniform, or the CFG column weights with ``weighted_cols``).
  """
  drift: jax.Array
  scale: jax.Array
  theta: jax.Array
  marginal_error_pos: jax.Array
  marginal_error_neg: jax.Array


def uncond_weight(omega, n_neg: int, n_uncond: int) -> jax.Array:
  """CFG weight of each unconditional negative, ``w = (N_neg - 1)(omega - 1) / N_uncond``
  (Deng et al., App. A.7); 0 when there are none."""
  if n_uncond == 0:
    return jnp.zeros_like(jnp.asarray(omega, jnp.float32))
  return (n_neg - 1) * (jnp.asarray(omega) - 1.0) / n_uncond


# -- costs and scale -------------------------------------------------------------------

def _distances(x, y, cost):
  """``[L, N, C], [L, M, C] -> [L, N, M]`` costs ``|x - y|`` or ``|x - y|^2``."""
  sq = jax.vmap(costs_lib.squared_distances)(x, y)
  return jnp.sqrt(sq) if cost == "euclidean" else sq


def _feature_scale(d_pos, d_gen, d_unc, w, exclude_diagonal):
  """``S = mean distance / sqrt(C)`` over the pairs the reference code counts."""
  L, N, P = d_pos.shape
  total = jnp.sum(d_pos) + jnp.sum(d_gen)
  count = float(L * N * P + L * N * N - (L * N if exclude_diagonal else 0))
  if d_unc is not None:
    w_eff = jnp.maximum(w, 0.0)
    total = total + w_eff * jnp.sum(d_unc)
    count = count + w_eff * d_unc.size
  return total / jnp.maximum(count, 1e-12)


# -- the drift ---------------------------------------------------------------------------

def _log_uniform(n, dtype):
  return jnp.full((n,), -math.log(n), dtype)


def _log_weighted_cols(n_gen, n_uncond, w, dtype):
  weights = jnp.concatenate([jnp.ones((n_gen,), dtype),
                             jnp.full((n_uncond,), jnp.maximum(w, _MIN_COL_WEIGHT), dtype)])
  return jnp.log(weights / jnp.sum(weights))


@functools.partial(jax.jit, static_argnames=(
    "form", "normalization", "T", "cost", "feature_scale", "normalize", "mask_coupling",
    "exclude_diagonal", "unit_vectors", "uncond_marginal", "aggregate_kernels", "algorithm"))
def _feature_drift(x, y_pos, y_unc, taus, omega, *, form, normalization, T, cost,
                   feature_scale, normalize, mask_coupling, exclude_diagonal, unit_vectors,
                   uncond_marginal, aggregate_kernels, algorithm):
  x, y_pos, taus, omega = jax.lax.stop_gradient((x, y_pos, taus, omega))
  dtype = x.dtype
  N, L, C = x.shape
  U = 0 if y_unc is None else y_unc.shape[0]
  xl, ypl = jnp.swapaxes(x, 0, 1), jnp.swapaxes(y_pos, 0, 1)       # [L, N, C], [L, P, C]
  yul = None if U == 0 else jnp.swapaxes(jax.lax.stop_gradient(y_unc), 0, 1)
  eye = jnp.eye(N, dtype=bool)

  d_pos = _distances(xl, ypl, cost)
  # Self distances are zero; the matmul expansion (C > 16) would leave rounding there.
  d_gen = jnp.where(eye, 0.0, _distances(xl, xl, cost))
  d_unc = None if U == 0 else _distances(xl, yul, cost)
  w = uncond_weight(omega, N, U).astype(dtype) if U else None

  if feature_scale:
    S = jnp.maximum(_feature_scale(d_pos, d_gen, d_unc, w, exclude_diagonal) / math.sqrt(C),
                    _MIN_SCALE).astype(dtype)
  else:
    S = jnp.ones((), dtype)
  d_neg = d_gen if U == 0 else jnp.concatenate([d_gen, d_unc], axis=-1)
  d_pos, d_neg = d_pos / S, d_neg / S
  yn_pos = ypl / S
  yn_neg = (xl if U == 0 else jnp.concatenate([xl, yul], axis=1)) / S
  xn = xl / S

  # Marginals (log) of the Sinkhorn couplings.
  P = y_pos.shape[0]
  M = N + U
  log_c_pos = _log_uniform(P, dtype)
  weighted = uncond_marginal == "weighted_cols" and U > 0
  log_c_neg = _log_weighted_cols(N, U, w, dtype) if weighted else _log_uniform(M, dtype)
  log_c_joint = (_log_weighted_cols(P + N, U, w, dtype) if weighted
                 else _log_uniform(P + M, dtype))
  log_bias = None
  if U and (normalization != "sinkhorn" or uncond_marginal == "none"):
    log_bias = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
  post_omega = omega.astype(dtype) if (uncond_marginal == "post_guidance" and U) else None
  neg_mask = jnp.zeros((N, M), bool).at[:, :N].set(eye) if mask_coupling else None

  def logits_at(tau):
    temp = tau * math.sqrt(C)
    lp, ln = -d_pos / temp, -d_neg / temp
    if log_bias is not None:
      ln = ln.at[..., N:].add(log_bias)
    return lp, ln

  def mask(ln):
    return ln if neg_mask is None else jnp.where(neg_mask, -jnp.inf, ln)

  def drift_of(lp, ln):
    W_pos, W_neg, e_pos, e_neg = feature_couplings.couplings(
        lp, mask(ln), form=form, normalization=normalization, T=T, algorithm=algorithm,
        log_c_pos=log_c_pos, log_c_neg=log_c_neg, log_c_joint=log_c_joint,
        post_guidance_omega=post_omega, n_uncond=U)
    v = (feature_couplings.barycenter(W_pos, xn, yn_pos, unit_vectors, d_pos)
         - feature_couplings.barycenter(W_neg, xn, yn_neg, unit_vectors, d_neg))
    theta = jnp.sqrt(jnp.maximum(jnp.mean(v * v), _MIN_THETA_SQ))
    return v, theta, e_pos, e_neg

  K = taus.shape[0]
  if aggregate_kernels:
    # One coupling from the kernel averaged over temperatures, shared by all of them.
    lps, lns = jax.vmap(logits_at)(taus)
    avg = lambda l: jnp.maximum(logsumexp(l, axis=0) - math.log(K), _LOG_MIN_KERNEL)
    v, theta, e_pos, e_neg = drift_of(avg(lps), avg(lns))
    V = K * (v / theta if normalize else v)
    rep = lambda a: jnp.full((K,), a)
    return FeatureDrift(jnp.swapaxes(V, 0, 1), S, rep(theta), rep(e_pos), rep(e_neg))

  def one(tau):
    v, theta, e_pos, e_neg = drift_of(*logits_at(tau))
    return (v / theta if normalize else v), theta, e_pos, e_neg

  vs, thetas, e_pos, e_neg = jax.lax.map(one, taus.astype(dtype))
  return FeatureDrift(jnp.swapaxes(jnp.sum(vs, axis=0), 0, 1), S, thetas, e_pos, e_neg)


# -- argument checks ---------------------------------------------------------------------

def _as_feature_set(v, name, L=None, C=None):
  if v is None:
    raise ValueError(f"{name} must be an array of shape [n, L, C] or [n, C], got None")
  if not hasattr(v, "dtype"):
    v = np.asarray(v)
  if v.ndim == 2:
    v = v[:, None, :]
  if v.ndim != 3:
    raise ValueError(f"{name} must have shape [n, L, C] or [n, C], got {tuple(v.shape)}")
  if not jnp.issubdtype(v.dtype, jnp.floating):
    raise ValueError(f"{name} must have a floating dtype, got {v.dtype}")
  if L is not None and tuple(v.shape[1:]) != (L, C):
    raise ValueError(f"{name} must have L={L}, C={C} like x, got shape {tuple(v.shape)}")
  return jnp.asarray(v)


def _check_omega(omega):
  if isinstance(omega, (str, bytes)) or omega is None:
    raise ValueError(f"omega must be a real number, got {omega!r}")
  arr = jnp.asarray(omega)
  if arr.ndim != 0 or not (jnp.issubdtype(arr.dtype, jnp.floating)
                           or jnp.issubdtype(arr.dtype, jnp.integer)):
    raise ValueError(f"omega must be a real scalar, got {omega!r}")
  if not validation.is_traced(arr) and not math.isfinite(float(arr)):
    raise ValueError(f"omega must be finite, got {float(arr)}")
  return arr.astype(jnp.float32) if jnp.issubdtype(arr.dtype, jnp.integer) else arr


def _prepare(x, y_pos, y_uncond, tau, omega, normalization, form, T, cost, feature_scale,
             normalize, mask_self, unit_vectors, uncond_marginal, aggregate_kernels,
             algorithm, check_finite=None):
  x = _as_feature_set(x, "x")
  N, L, C = x.shape
  if N < 2:
    raise ValueError(f"x needs at least 2 samples (the generated negatives), got {N}")
  y_pos = _as_feature_set(y_pos, "y_pos", L, C)
  if y_pos.shape[0] == 0:
    raise ValueError("y_pos must hold at least one sample")
  if y_uncond is not None:
    y_uncond = _as_feature_set(y_uncond, "y_uncond", L, C)
    if y_uncond.shape[0] == 0:
      y_uncond = None
  validation.check_finite(check_finite, x=x, y_pos=y_pos, y_uncond=y_uncond)
  dtype = jnp.result_type(x.dtype, y_pos.dtype,
                          *([] if y_uncond is None else [y_uncond.dtype]))
  taus, _ = validation.as_tau(tau)
  omega = _check_omega(omega)
  normalization = validation.check_choice(normalization, FEATURE_NORMALIZATIONS,
                                          "normalization")
  form = validation.check_choice(form, FORMS, "form")
  T = validation.check_T(T)
  cost = costs_lib.COST_ALIASES.get(cost, cost) if isinstance(cost, str) else cost
  cost = validation.check_choice(cost, FEATURE_COSTS, "cost")
  uncond_marginal = validation.check_choice(uncond_marginal, UNCOND_MARGINALS,
                                            "uncond_marginal")
  algorithm = validation.check_choice(algorithm, FEATURE_ALGORITHMS, "algorithm")
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
  if algorithm == "auto":
    algorithm = "scaling"
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
                  check_finite: Optional[bool] = None) -> FeatureDrift:
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
    algorithm: how the split form's Sinkhorn runs: ``'scaling'`` (default through
      ``'auto'``; :mod:`sdrift_jax.stabilized`) or ``'log'``. The marginals are strictly
      positive by construction, so CFG weights computed inside ``jit`` keep the fast path.
    check_finite: refuse NaN or inf in the inputs with a ValueError naming the argument
      and its first bad row. ``None`` (default): on when the inputs are concrete (a call
      outside ``jax.jit``; one fused reduction and one host sync), off when they are
      traced, where the values do not exist yet and a bad row silently makes every
      output row NaN. ``True`` with traced inputs raises; ``False`` skips.

  Returns:
    A :class:`FeatureDrift`.

  Raises:
    ValueError: at trace time, on a bad shape, dtype, name, temperature, ``T`` or an
      invalid combination of options.
  """
  args, static = _prepare(x, y_pos, y_uncond, tau, omega, normalization, form, T, cost,
                          feature_scale, normalize, mask_self, unit_vectors,
                          uncond_marginal, aggregate_kernels, algorithm, check_finite)
  return _feature_drift(*args, **static)


def feature_drift_loss(x, y_pos, y_uncond=None, **kwargs) -> jax.Array:
  """The reference codes' loss for one feature set: ``mean((x/S - sg(x/S + V))^2)``.

  Takes the arguments of :func:`feature_drift`; ``x`` is differentiated (through
  ``x / S`` only: ``S`` and ``V`` are constants). Its value is ``mean(V^2)``.

  Returns:
    A scalar.
  """
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
