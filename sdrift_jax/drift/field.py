"""``drift_field``: the drift ``V = P_pos @ y_pos - P_neg @ y_neg`` of point clouds.

One location, data units: the front of :mod:`sdrift_jax.drift.couplings` for particles
and latent vectors (the feature drift of the reference codes is
:func:`sdrift_jax.feature_drift`). Normalizations and forms: that module's docstring.
``T`` half-iterations of Sinkhorn scaling start from the kernel of the reference
measure, ``a_i b_j exp(-C[i, j] / tau)``, so uniform weights change nothing; ``T = 1``
is exactly one-sided, and ``T = 2k`` and ``2k + 1`` give the same drift.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from sdrift_jax import costs as costs_lib
from sdrift_jax import solvers
from sdrift_jax import validation
from sdrift_jax.drift import checks
from sdrift_jax.drift import couplings
from sdrift_jax.drift import warm
from sdrift_jax.solvers import problem as problem_lib
from sdrift_jax.solvers import select
from sdrift_jax.solvers.problem import Problem

__all__ = ["DriftInfo", "DriftState", "NORMALIZATIONS",
           "compute", "drift_field", "drift_field_with_info"]

DriftState = warm.DriftState

#: Accepted ``normalization`` names (``'two_sided_joint'``: the two-sided joint form).
NORMALIZATIONS = couplings.NORMALIZATIONS + tuple(couplings.ALIASES)

_HI = costs_lib.HIGHEST


class DriftInfo(NamedTuple):
  """Drift and diagnostics returned by :func:`drift_field_with_info`.

  Attributes:
    drift: array of shape ``[N, d]``, the drift ``V``.
    marginal_error_pos: L1 error of the column marginal of the positive coupling
      ``a_i P_pos[i, j]`` against ``b_pos`` (its rows are exact after the final row
      normalization). Shape ``[]``, or ``[K]`` for ``K`` temperatures.
    marginal_error_neg: the same for the negative coupling.
    state: a :class:`~sdrift_jax.drift.warm.DriftState`, what ``init=`` takes at the
      next call (new points of the same dimension; Sinkhorn normalization, else None).
    half_steps: int32, the half-steps used (the larger of the two couplings'; ``T``
      without ``tol``). Shape ``[]``, or ``[K]``.
  """
  drift: jax.Array
  marginal_error_pos: jax.Array
  marginal_error_neg: jax.Array
  state: Optional[warm.DriftState] = None
  half_steps: Optional[jax.Array] = None


def _logits(x, y, tau, cost, normalization, form):
  """``-C / tau``; for the split Sinkhorn and one-sided couplings, which no row constant
  changes, without the row constant where that is cheaper (``costs.shifted_logits``)."""
  if form == "split" and normalization in ("sinkhorn", "one_sided"):
    return costs_lib.shifted_logits(x, y, tau, cost)
  return -costs_lib.pairwise_cost(x, y, cost) / tau


def _single_temperature(x, y_pos, y_neg, tau, log_a, log_bp, log_bn, *, T, normalization,
                        form, cost, mask_self, with_info, algorithm, tol=None, anneal=(),
                        init=None, init_k=None):
  """``(V, err_pos, err_neg, (h_pos, h_neg), half_steps [])`` at one temperature;
  ``init_k``: ``init``'s ``(h_pos, h_neg, tau)`` at this temperature."""
  engine = solvers.ENGINES[algorithm]
  starts = (None, None)
  if init is not None:
    starts = warm.starts(init, init_k, ((y_pos, log_bp, None), (y_neg, log_bn, None)), tau,
                         cost, joint=form == "joint")
  if algorithm == "blocked":
    pos = Problem.points(x, y_pos, tau, cost, log_a, log_bp)
    neg = Problem.points(x, y_neg, tau, cost, log_a, log_bn, mask_diagonal=mask_self)
  else:
    lp, ln = (_logits(x, y, tau, cost, normalization, form) for y in (y_pos, y_neg))
    if mask_self:
      ln = jnp.where(jnp.eye(x.shape[0], dtype=bool), -jnp.inf, ln)
    if form == "joint":
      m_pos = y_pos.shape[0]
      joint = Problem.dense(jnp.concatenate([lp, ln], axis=1), log_a,
                            jnp.concatenate([log_bp, log_bn])).starting_from(starts[0])
      W_pos, W_neg, _, half, g = couplings.joint_weights(
          joint, m_pos, normalization=normalization, T=T, tol=tol, anneal=anneal)
      V = jnp.matmul(W_pos, y_pos, precision=_HI) - jnp.matmul(W_neg, y_neg, precision=_HI)
      h = None if g is None else (g[:m_pos], g[m_pos:])
      if not with_info:
        return V, None, None, h, half
      # Each side's weights, row-normalized, against that side's marginal.
      err = lambda W, log_b: problem_lib.column_error(couplings.row_normalize(W), log_a, log_b)
      return V, err(W_pos, log_bp), err(W_neg, log_bn), h, half
    pos, neg = Problem.dense(lp, log_a, log_bp), Problem.dense(ln, log_a, log_bn)
  pos, neg = pos.starting_from(starts[0]), neg.starting_from(starts[1])
  side = functools.partial(couplings.split_barycenter, normalization=normalization, T=T,
                           engine=engine, with_error=with_info, tol=tol, anneal=anneal)
  rp, rn = side(pos, y_pos), side(neg, y_neg)
  return (rp.barycenter - rn.barycenter, rp.col_error, rn.col_error, (rp.g, rn.g),
          jnp.maximum(rp.half_steps, rn.half_steps))


def _log_weights(w, n, dtype, skip_uniform):
  """Log of the normalized weights; zeros (a constant) for uniform weights where the
  caller only row-normalizes (``skip_uniform``): an add fewer per entry at ``T = 1``."""
  if w is None:
    return jnp.zeros((n,), dtype) if skip_uniform else jnp.full((n,), -jnp.log(n), dtype)
  w = w.astype(dtype)  # the clouds' dtype, whatever the weights' (float64 under x64)
  return jnp.log(w / jnp.sum(w))


@functools.partial(jax.jit, static_argnames=("T", "normalization", "form", "cost",
                                             "mask_self", "multi_tau", "with_info",
                                             "algorithm", "relative_tau", "anneal",
                                             "with_state", "with_error"))
def _drift_impl(x, y_pos, y_neg, taus, a, bp, bn, tol, init, *, T, normalization, form,
                cost, mask_self, multi_tau, with_info, algorithm, relative_tau, anneal,
                with_state, with_error):
  dtype = x.dtype
  if relative_tau:
    # All points equal: every cost is 0 and any tau gives the same (uniform) coupling.
    unit = jax.lax.stop_gradient(costs_lib.mean_cost(x, y_pos, y_neg, cost, mask_self))
    taus = taus * jnp.where(unit > 0, unit, 1.0).astype(unit.dtype)
  one_step = form == "split" and (normalization == "one_sided" or T == 1)
  log_a = _log_weights(a, x.shape[0], dtype, False)
  log_bp = _log_weights(bp, y_pos.shape[0], dtype, one_step and init is None)
  log_bn = _log_weights(bn, y_neg.shape[0], dtype, one_step and init is None)
  if init is not None:
    init = jax.tree.map(lambda v: v.astype(dtype) if v.dtype != bool else v, init)
  one = functools.partial(_single_temperature, x, y_pos, y_neg, log_a=log_a, log_bp=log_bp,
                          log_bn=log_bn, T=T, normalization=normalization, form=form,
                          cost=cost, mask_self=mask_self, with_info=with_error,
                          algorithm=algorithm, tol=tol, anneal=anneal, init=init)
  taus = taus.astype(dtype)
  ks = None if init is None else (init.h_pos, init.h_neg, init.tau)
  if not multi_tau:
    V, err_pos, err_neg, h, half = one(taus[0], init_k=None if ks is None else
                                       jax.tree.map(lambda v: v[0], ks))
    h = None if h is None else jax.tree.map(lambda v: v[None], h)
  else:
    V, _, (err_pos, err_neg, h, half) = couplings.rms_normalized_sum(
        lambda args: one(args[0], init_k=args[1]), (taus, ks))
  if not with_info:
    return DriftInfo(V, None, None)
  if not with_error:
    err_pos = err_neg = None
  state = None
  if with_state and h is not None:
    state = warm.DriftState(x, log_a, y_pos, y_neg, h[0], h[1], taus, jnp.array(True))
  return DriftInfo(V, err_pos, err_neg, state, half)


def compute(x, y_pos, y_neg, tau, *, normalization="sinkhorn", form="split", T=41,
            cost="sqeuclidean", mask_self=False, algorithm="auto", relative_tau=False,
            copies=1, weights_x=None, weights_pos=None, weights_neg=None,
            check_finite=None, with_info=False, tol=None, init=None, anneal=None,
            with_state=None, with_error=None) -> DriftInfo:
  """The drift with every option (:func:`drift_field`; ``copies``: how many problems
  run at once, for ``'auto'``), checked at trace time: shapes, dtypes, ``tau``,
  weights, the self-mask; NaN or inf in concrete inputs with ``check_finite``.
  ``with_state`` (default: ``with_info``): return ``.state``; ``with_error`` (default: ``with_info``): the marginal errors (else
  None)."""
  normalization, form, T, cost = checks.check_options(normalization, form, T, cost,
                                                      mask_self, algorithm, relative_tau)
  tol, levels = warm.check_convergence(tol, anneal, T, normalization, init is not None)
  x = validation.as_point_cloud(x, "x")
  y_pos = validation.as_point_cloud(y_pos, "y_pos")
  y_neg = x if y_neg is None else validation.as_point_cloud(y_neg, "y_neg")
  validation.check_finite(check_finite, x=x, y_pos=y_pos,
                          y_neg=None if y_neg is x else y_neg)
  validation.check_same_dim(x=x, y_pos=y_pos, y_neg=y_neg)
  taus, multi_tau = validation.as_tau(tau)
  if mask_self and (y_neg.shape[0] != x.shape[0] or x.shape[0] < 2):
    raise ValueError(
        "mask_self=True masks the diagonal of the x-to-y_neg cost, so y_neg must be x "
        f"(same number of rows, at least 2); got x {tuple(x.shape)}, y_neg {tuple(y_neg.shape)}")
  if mask_self and not checks.same_points(x, y_neg):
    raise ValueError("mask_self=True masks each x[i] against y_neg[i], so y_neg must be x "
                     "(or None); got another array of x's shape")
  a = validation.as_weights(weights_x, x.shape[0], "weights_x")
  bp = validation.as_weights(weights_pos, y_pos.shape[0], "weights_pos")
  bn = validation.as_weights(weights_neg, y_neg.shape[0], "weights_neg")
  out_dtype = jnp.result_type(x.dtype, y_pos.dtype, y_neg.dtype)
  # float16 / bfloat16 run in float32: the scaling engine's bounds, exp(+-log(max) / 2),
  # and the kernel exp(-C / tau) at small tau overflow or vanish in 16 bits.
  dtype = jnp.float32 if jnp.dtype(out_dtype).itemsize < 4 else out_dtype
  positive = all(select.positive_weights(w) for w in (a, bp, bn))
  algorithm = select.resolve_algorithm(
      algorithm, x.shape[0], max(y_pos.shape[0], y_neg.shape[0]), jnp.dtype(dtype).itemsize,
      copies=copies, positive=positive, blocked_ok=checks.has_blocked_path(normalization, form))
  if init is not None:
    warm.check_state(init, 2, x.shape[1], taus.shape[0], "drift_field")
  with_state = with_info if with_state is None else bool(with_state)
  with_error = with_info if with_error is None else bool(with_error) and with_info
  info = _drift_impl(x.astype(dtype), y_pos.astype(dtype), y_neg.astype(dtype), taus, a,
                     bp, bn, tol, init, T=T, normalization=normalization, form=form,
                     cost=cost, mask_self=mask_self, multi_tau=multi_tau,
                     with_info=with_info, algorithm=algorithm, relative_tau=relative_tau,
                     anneal=levels, with_state=with_state and normalization == "sinkhorn",
                     with_error=with_error)
  return info if dtype == out_dtype else info._replace(drift=info.drift.astype(out_dtype))


def drift_field(x, y_pos, y_neg, tau, T: int = 41, *, normalization: str = "sinkhorn",
                form: str = "split", cost: str = "sqeuclidean", mask_self: bool = False,
                weights_x: Optional[jax.Array] = None,
                weights_pos: Optional[jax.Array] = None,
                weights_neg: Optional[jax.Array] = None, algorithm: str = "auto",
                relative_tau: bool = False, check_finite: Optional[bool] = None,
                tol=None, init: Optional[warm.DriftState] = None, anneal=None
                ) -> jax.Array:
  """The drift ``V = P_pos @ y_pos - P_neg @ y_neg`` at the particles ``x``.

  Pure and jitted (the static arguments are ``T``, ``normalization``, ``cost`` and
  ``mask_self``); usable inside ``jax.jit`` and ``jax.vmap``.

  Args:
    x: array of shape ``[N, d]``, the generated particles.
    y_pos: array of shape ``[M_pos, d]``, positive samples (data).
    y_neg: array of shape ``[M_neg, d]``, negative samples; ``None`` means ``x``.
    tau: temperature (> 0), in the units of the cost; with the default cost it equals
      ott-jax's ``epsilon``. A sequence of temperatures gives the sum of the drifts, each
      divided by its RMS (Deng et al.). With ``relative_tau`` it is in units of the
      batch's mean cost instead.
    T: Sinkhorn half-iterations (paper convention: ``T = 1`` is one-sided; the reference
      PyTorch code's ``k`` iterations are ``T = 2k + 1``). Used by ``'sinkhorn'`` only.
    normalization: ``'sinkhorn'``, ``'one_sided'`` or ``'two_sided'``
      (:mod:`sdrift_jax.drift.couplings`); ``'two_sided_joint'`` is
      ``normalization='two_sided', form='joint'`` (Deng et al.'s Algorithm 2).
    form: ``'split'`` (``P_pos @ y_pos - P_neg @ y_neg``) or ``'joint'`` (one coupling
      over ``[pos | neg]`` with Algorithm 2's cross weighting).
    cost: ``'sqeuclidean'`` (Gaussian kernel), ``'half_sqeuclidean'`` (the paper's
      theory) or ``'euclidean'`` (Laplacian kernel); ``'gaussian'`` and ``'laplacian'``
      are aliases.
    mask_self: set the diagonal of the negative cost to ``+inf`` (the baselines'
      heuristic when ``y_neg`` is ``x``; the Sinkhorn drift does not need it).
    weights_x: optional row marginal of shape ``[N]``; uniform if None.
    weights_pos: optional marginal of the positives, shape ``[M_pos]``.
    weights_neg: optional marginal of the negatives, shape ``[M_neg]``.
    algorithm: how the Sinkhorn half-steps run: ``'scaling'`` (scaling domain with
      log-domain absorption, :mod:`sdrift_jax.solvers.scaling`; one matrix-vector product per
      half-step), ``'log'`` (plain log domain), ``'blocked'`` (log domain over row
      tiles with costs recomputed from ``x`` and ``y``: memory ``O((N + M) d)``, no
      ``N x M`` matrix; the split form's ``'sinkhorn'`` and ``'one_sided'``) or
      ``'auto'`` (:func:`sdrift_jax.solvers.resolve_algorithm`: ``'blocked'`` when the
      dense matrices would exceed half the device memory; else ``'log'`` on a GPU, else
      ``'scaling'`` unless some weight is zero or traced). All give the same drift to
      float32 rounding.
    relative_tau: scale-free temperature (Deng et al.; the reference codes' feature
      normalization): the kernel is ``exp(-C / (tau * mean C))`` with the mean over the
      pairs ``(x, y_pos)`` and ``(x, y_neg)`` (self pairs left out when ``mask_self``),
      computed in the same call and not differentiated. The drift stays in data units
      (:func:`sdrift_jax.feature_drift` returns it in scaled units).
    check_finite: refuse NaN or inf in the inputs with a ValueError naming the argument
      and its first bad row. ``None`` (default): on when the inputs are concrete (a call
      outside ``jax.jit``; one fused reduction and one host sync), off when they are
      traced, where the values do not exist yet and a bad row silently makes every
      output row NaN. ``True`` with traced inputs raises; ``False`` skips.
    tol: stop each coupling's half-steps once its row-normalized coupling has an L1
      column-marginal error ``<= tol`` (checked once per full iteration; ``T`` stays
      the most). None (default): exactly ``T``.
    init: the ``.state`` of an earlier :func:`drift_field_with_info` call: each coupling
      starts from the previous potentials, carried to the new points as functions
      (:mod:`sdrift_jax.solvers.start`). None: from the reference kernel.
    anneal: ``(start, decay)``: first one full iteration at each temperature
      ``tau * start * decay**k`` above ``tau`` (epsilon scaling), then the rest of the
      ``T`` half-steps at ``tau``. None: off.

  ``tol``, ``init`` and ``anneal`` need ``normalization='sinkhorn'``; without them the
  drift is the fixed-``T`` one, bit for bit.

  Returns:
    Array of shape ``[N, d]``.

  Raises:
    ValueError: at trace time, on a bad shape, dtype, temperature, ``T`` or name; on
      NaN or inf in concrete inputs (``check_finite``).
  """
  return compute(x, y_pos, y_neg, tau, normalization=normalization, form=form, T=T,
                 cost=cost, mask_self=mask_self, algorithm=algorithm,
                 relative_tau=relative_tau, weights_x=weights_x, weights_pos=weights_pos,
                 weights_neg=weights_neg, check_finite=check_finite, tol=tol, init=init,
                 anneal=anneal).drift


def drift_field_with_info(x, y_pos, y_neg, tau, T: int = 41, *, tol=None,
                          init: Optional[warm.DriftState] = None, anneal=None,
                          normalization: str = "sinkhorn", form: str = "split",
                          cost: str = "sqeuclidean",
                          mask_self: bool = False, weights_x=None, weights_pos=None,
                          weights_neg=None, algorithm: str = "auto",
                          relative_tau: bool = False,
                          check_finite: Optional[bool] = None) -> DriftInfo:
  """:func:`drift_field` plus the couplings' marginal errors, the half-steps used and the
  state for a warm start of the next call, as a :class:`DriftInfo` (same arguments;
  ``T`` is the most half-steps). ``.state`` costs nothing here; a call given it as
  ``init`` pays two passes over the costs per coupling and temperature."""
  return compute(x, y_pos, y_neg, tau, normalization=normalization, form=form, T=T,
                 cost=cost, mask_self=mask_self, algorithm=algorithm,
                 relative_tau=relative_tau, weights_x=weights_x, weights_pos=weights_pos,
                 weights_neg=weights_neg, check_finite=check_finite, with_info=True,
                 tol=tol, init=init, anneal=anneal)
