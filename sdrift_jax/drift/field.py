"""Drift fields ``V = P_pos @ y_pos - P_neg @ y_neg`` with every normalization.

Normalizations (how the coupling ``P`` is made from the Gibbs logits ``-C / tau``):

* ``'sinkhorn'``: ``T`` half-iterations of Sinkhorn scaling (rows, columns, rows, ...)
  from the kernel, then row normalization (paper eq. 11, Algorithm 1). ``T = 1`` is
  exactly one-sided; ``T = 2k`` and ``T = 2k + 1`` give the same drift, since the final
  row normalization repeats a row step.
* ``'one_sided'``: row softmax (Deng et al., paper eq. 3).
* ``'two_sided'``: geometric mean of the row and column softmax, row-normalized; positives
  and negatives separately.
* ``'two_sided_joint'``: Deng et al.'s Algorithm 2: one geometric-mean coupling over the
  concatenated ``[pos | neg]`` logits, with each side weighted by the other's row mass.

Marginal weights enter as the reference measure of the kernel: the coupling starts from
``a_i b_j exp(-C[i, j] / tau)``. Uniform weights change nothing.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax.sinkhorn import blocked
from sdrift_jax import costs as costs_lib
from sdrift_jax.drift import spec as drift_spec
from sdrift_jax.sinkhorn import solver as sinkhorn_lib
from sdrift_jax.sinkhorn import scaling as stabilized
from sdrift_jax import validation

# Names kept here for callers that import them from this module.
NORMALIZATIONS = drift_spec.NORMALIZATIONS
ALGORITHMS = drift_spec.ALGORITHMS
DriftSpec = drift_spec.DriftSpec

_HI = jax.lax.Precision.HIGHEST


class DriftInfo(NamedTuple):
  """Drift and diagnostics returned by :func:`drift_field_with_info`.

  Attributes:
    drift: array of shape ``[N, d]``, the drift ``V``.
    marginal_error_pos: L1 error of the column marginal of the positive coupling
      ``a_i P_pos[i, j]`` against ``b_pos`` (its rows are exact after the final row
      normalization). Shape ``[]``, or ``[K]`` for ``K`` temperatures.
    marginal_error_neg: the same for the negative coupling.
  """
  drift: jax.Array
  marginal_error_pos: jax.Array
  marginal_error_neg: jax.Array


def _row_softmax(logits):
  # One exp pass (jax.nn.softmax), not logsumexp followed by a second exp.
  return jax.nn.softmax(logits, axis=1)


def sinkhorn_coupling(logits, log_a, log_b, T):
  """The row-normalized Sinkhorn coupling ``[N, M]`` after ``T`` half-steps from the
  logits ``[N, M]`` and log marginals, in the log domain (the scaling domain's drift
  never forms the coupling: :func:`_scaling_barycenters`)."""
  if T == 1:
    return _row_softmax(logits + log_b[None, :])
  # Only the column scaling survives the final row normalization, so the last row step
  # of an odd T is folded into the softmax.
  _, g = sinkhorn_lib.sinkhorn_scaling(logits, 2 * (T // 2), log_a, log_b)
  return _row_softmax(logits + g[None, :])


def _geometric_mean_log(logits, log_a, log_b):
  """Log of ``sqrt(softmax_row * softmax_col)`` (weighted by the other side's marginal)."""
  lr = logits + log_b[None, :]
  lc = logits + log_a[:, None]
  return 0.5 * ((lr - logsumexp(lr, axis=1, keepdims=True))
                + (lc - logsumexp(lc, axis=0, keepdims=True)))


def _couplings(logits_pos, logits_neg, log_a, log_bp, log_bn, normalization, T):
  """Returns ``(W_pos, W_neg)`` with ``V = W_pos @ y_pos - W_neg @ y_neg``."""
  if normalization in ("sinkhorn", "one_sided"):
    T = T if normalization == "sinkhorn" else 1
    return (sinkhorn_coupling(logits_pos, log_a, log_bp, T),
            sinkhorn_coupling(logits_neg, log_a, log_bn, T))
  if normalization == "two_sided":
    return (_row_softmax(_geometric_mean_log(logits_pos, log_a, log_bp)),
            _row_softmax(_geometric_mean_log(logits_neg, log_a, log_bn)))
  # two_sided_joint
  m_pos = logits_pos.shape[1]
  joint = jnp.concatenate([logits_pos, logits_neg], axis=1)
  log_b = jnp.concatenate([log_bp, log_bn])
  A = jnp.exp(_geometric_mean_log(joint, log_a, log_b))
  a_pos, a_neg = A[:, :m_pos], A[:, m_pos:]
  return (a_pos * jnp.sum(a_neg, axis=1, keepdims=True),
          a_neg * jnp.sum(a_pos, axis=1, keepdims=True))


def _column_error(W, a, b):
  P = W / jnp.sum(W, axis=1, keepdims=True)
  return jnp.sum(jnp.abs(jnp.matmul(a, P, precision=_HI) - b))


def _blocked_temperature(x, y_pos, y_neg, tau, a, bp, bn, *, T, normalization, cost,
                         mask_self, with_info):
  T = T if normalization == "sinkhorn" else 1
  block = blocked.block_rows(x.shape[0], max(y_pos.shape[0], y_neg.shape[0]))
  parts = [blocked.barycentric_map(x, y, jnp.log(a), jnp.log(b), tau, T, cost, mask, block,
                                   with_col_error=with_info)
           for y, b, mask in ((y_pos, bp, False), (y_neg, bn, mask_self))]
  V = parts[0][0] - parts[1][0]
  if not with_info:
    return V, None, None
  return V, parts[0][1], parts[1][1]


def _one_sided(logits, log_b):
  # With uniform weights (log_b None) the constant shift is left out: softmax ignores it,
  # and the extra add measured 15-30 % of the one-sided drift at N = M = 1024 on CPU.
  return _row_softmax(logits if log_b is None else logits + log_b[None, :])


def _scaling_barycenters(logits_pos, logits_neg, y_pos, y_neg, a, bp, bn, *, T, uniform,
                         with_info):
  """``V`` from the scaling domain without forming the Sinkhorn couplings (two fewer
  passes over each ``N x M`` matrix than coupling-then-product), with the column errors
  if asked. ``uniform``: ``(uniform b_pos, uniform b_neg)``, static."""
  if T == 1:
    W_pos = _one_sided(logits_pos, None if uniform[0] else jnp.log(bp))
    W_neg = _one_sided(logits_neg, None if uniform[1] else jnp.log(bn))
    V = jnp.matmul(W_pos, y_pos, precision=_HI) - jnp.matmul(W_neg, y_neg, precision=_HI)
    if not with_info:
      return V, None, None
    return V, _column_error(W_pos, a, bp), _column_error(W_neg, a, bn)
  log_a = jnp.log(a)
  Py_pos, col_pos = stabilized.barycentric_map(logits_pos, log_a, jnp.log(bp), y_pos, T,
                                               with_col_mass=with_info)
  Py_neg, col_neg = stabilized.barycentric_map(logits_neg, log_a, jnp.log(bn), y_neg, T,
                                               with_col_mass=with_info)
  if not with_info:
    return Py_pos - Py_neg, None, None
  return (Py_pos - Py_neg, jnp.sum(jnp.abs(col_pos - bp)), jnp.sum(jnp.abs(col_neg - bn)))


def _logits(x, y, tau, cost, normalization):
  """``-C / tau``; for the Sinkhorn and one-sided couplings, which no row constant
  changes, without the row constant where that is cheaper (``costs.shifted_logits``)."""
  if normalization in ("sinkhorn", "one_sided"):
    return costs_lib.shifted_logits(x, y, tau, cost)
  return -costs_lib.pairwise_cost(x, y, cost) / tau


def _single_temperature(x, y_pos, y_neg, tau, a, bp, bn, *, T, normalization, cost,
                        mask_self, with_info, algorithm, uniform=(False, False)):
  if algorithm == "blocked":
    return _blocked_temperature(x, y_pos, y_neg, tau, a, bp, bn, T=T,
                                normalization=normalization, cost=cost,
                                mask_self=mask_self, with_info=with_info)
  logits_pos, logits_neg = (_logits(x, y, tau, cost, normalization) for y in (y_pos, y_neg))
  if mask_self:
    n = x.shape[0]
    logits_neg = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits_neg)
  if algorithm == "scaling" and normalization in ("sinkhorn", "one_sided"):
    return _scaling_barycenters(logits_pos, logits_neg, y_pos, y_neg, a, bp, bn,
                                T=T if normalization == "sinkhorn" else 1,
                                uniform=uniform, with_info=with_info)
  W_pos, W_neg = _couplings(logits_pos, logits_neg, jnp.log(a), jnp.log(bp), jnp.log(bn),
                            normalization, T)
  V = jnp.matmul(W_pos, y_pos, precision=_HI) - jnp.matmul(W_neg, y_neg, precision=_HI)
  if not with_info:
    return V, None, None
  return V, _column_error(W_pos, a, bp), _column_error(W_neg, a, bn)


def _uniform_or_normalized(w, n, dtype):
  if w is None:
    return jnp.full((n,), 1.0 / n, dtype)
  w = w.astype(dtype)  # the clouds' dtype, whatever the weights' (float64 under x64)
  return w / jnp.sum(w)


@functools.partial(jax.jit, static_argnames=("T", "normalization", "cost", "mask_self",
                                             "multi_tau", "with_info", "algorithm",
                                             "relative_tau"))
def _drift_impl(x, y_pos, y_neg, taus, a, bp, bn, *, T, normalization, cost, mask_self,
                multi_tau, with_info, algorithm="log", relative_tau=False):
  dtype = x.dtype
  if relative_tau:
    taus = taus * jax.lax.stop_gradient(costs_lib.mean_cost(x, y_pos, y_neg, cost, mask_self))
  uniform = (bp is None, bn is None)
  a = _uniform_or_normalized(a, x.shape[0], dtype)
  bp = _uniform_or_normalized(bp, y_pos.shape[0], dtype)
  bn = _uniform_or_normalized(bn, y_neg.shape[0], dtype)
  one = functools.partial(_single_temperature, x, y_pos, y_neg, a=a, bp=bp, bn=bn, T=T,
                          normalization=normalization, cost=cost, mask_self=mask_self,
                          with_info=with_info, algorithm=algorithm, uniform=uniform)
  taus = taus.astype(dtype)
  if not multi_tau:
    V, err_pos, err_neg = one(taus[0])
    return DriftInfo(V, err_pos, err_neg)

  # Deng et al.: one drift per temperature, each divided by its RMS, summed. A sequential
  # map keeps one N x M matrix alive at a time.
  def normalized(tau):
    V, err_pos, err_neg = one(tau)
    rms = jnp.sqrt(jnp.mean(V * V))
    return jnp.where(rms > 0, V / jnp.where(rms > 0, rms, 1.0), 0.0), err_pos, err_neg

  Vs, err_pos, err_neg = jax.lax.map(normalized, taus)
  return DriftInfo(jnp.sum(Vs, axis=0), err_pos, err_neg)


def apply_spec(spec: DriftSpec, x, y_pos, y_neg, tau, weights_x=None, weights_pos=None,
               weights_neg=None, check_finite=None, *, with_info: bool) -> DriftInfo:
  """The drift of ``spec`` (checked at trace time: shapes, dtypes, ``tau``, weights,
  the self-mask; NaN or inf in concrete inputs with ``check_finite``)."""
  x = validation.as_point_cloud(x, "x")
  y_pos = validation.as_point_cloud(y_pos, "y_pos")
  y_neg = x if y_neg is None else validation.as_point_cloud(y_neg, "y_neg")
  validation.check_finite(check_finite, x=x, y_pos=y_pos,
                          y_neg=None if y_neg is x else y_neg)
  validation.check_same_dim(x=x, y_pos=y_pos, y_neg=y_neg)
  taus, multi_tau = validation.as_tau(tau)
  if spec.mask_self and (y_neg.shape[0] != x.shape[0] or x.shape[0] < 2):
    raise ValueError(
        "mask_self=True masks the diagonal of the x-to-y_neg cost, so y_neg must be x "
        f"(same number of rows, at least 2); got x {tuple(x.shape)}, y_neg {tuple(y_neg.shape)}")
  a = validation.as_weights(weights_x, x.shape[0], "weights_x")
  bp = validation.as_weights(weights_pos, y_pos.shape[0], "weights_pos")
  bn = validation.as_weights(weights_neg, y_neg.shape[0], "weights_neg")
  dtype = jnp.result_type(x.dtype, y_pos.dtype, y_neg.dtype)
  algorithm = spec.resolve_algorithm(x.shape[0], max(y_pos.shape[0], y_neg.shape[0]),
                                     jnp.dtype(dtype).itemsize, (a, bp, bn))
  return _drift_impl(x.astype(dtype), y_pos.astype(dtype), y_neg.astype(dtype), taus, a,
                     bp, bn, T=spec.T, normalization=spec.normalization, cost=spec.cost,
                     mask_self=spec.mask_self, multi_tau=multi_tau, with_info=with_info,
                     algorithm=algorithm, relative_tau=spec.relative_tau)


def drift_field(x, y_pos, y_neg, tau, T: int = 41, *, normalization: str = "sinkhorn",
                cost: str = "sqeuclidean", mask_self: bool = False,
                weights_x: Optional[jax.Array] = None,
                weights_pos: Optional[jax.Array] = None,
                weights_neg: Optional[jax.Array] = None, algorithm: str = "auto",
                relative_tau: bool = False, check_finite: Optional[bool] = None
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
    normalization: ``'sinkhorn'``, ``'one_sided'``, ``'two_sided'`` or
      ``'two_sided_joint'``.
    cost: ``'sqeuclidean'`` (Gaussian kernel), ``'half_sqeuclidean'`` (the paper's
      theory) or ``'euclidean'`` (Laplacian kernel); ``'gaussian'`` and ``'laplacian'``
      are aliases.
    mask_self: set the diagonal of the negative cost to ``+inf`` (the baselines'
      heuristic when ``y_neg`` is ``x``; the Sinkhorn drift does not need it).
    weights_x: optional row marginal of shape ``[N]``; uniform if None.
    weights_pos: optional marginal of the positives, shape ``[M_pos]``.
    weights_neg: optional marginal of the negatives, shape ``[M_neg]``.
    algorithm: how the Sinkhorn half-steps run: ``'scaling'`` (scaling domain with
      log-domain absorption, :mod:`sdrift_jax.sinkhorn.scaling`; one matrix-vector product per
      half-step), ``'log'`` (plain log domain), ``'blocked'`` (log domain over row
      tiles with costs recomputed from ``x`` and ``y``: memory ``O((N + M) d)``, no
      ``N x M`` matrix; ``'sinkhorn'`` and ``'one_sided'`` only) or ``'auto'``
      (``'blocked'`` when the dense matrices would exceed half the device memory; else
      ``'log'`` on a GPU, where it measured faster; else ``'scaling'`` unless some
      weight is zero or traced). All give the same drift to float32 rounding.
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

  Returns:
    Array of shape ``[N, d]``.

  Raises:
    ValueError: at trace time, on a bad shape, dtype, temperature, ``T`` or name; on
      NaN or inf in concrete inputs (``check_finite``).
  """
  spec = DriftSpec(normalization=normalization, T=T, cost=cost, mask_self=mask_self,
                   algorithm=algorithm, relative_tau=relative_tau)
  return apply_spec(spec, x, y_pos, y_neg, tau, weights_x, weights_pos, weights_neg,
                    check_finite, with_info=False).drift


def drift_field_with_info(x, y_pos, y_neg, tau, T: int = 41, *,
                          normalization: str = "sinkhorn", cost: str = "sqeuclidean",
                          mask_self: bool = False, weights_x=None, weights_pos=None,
                          weights_neg=None, algorithm: str = "auto",
                          relative_tau: bool = False,
                          check_finite: Optional[bool] = None) -> DriftInfo:
  """:func:`drift_field` plus the couplings' marginal errors, as a :class:`DriftInfo`
  (same arguments, ``check_finite`` included)."""
  spec = DriftSpec(normalization=normalization, T=T, cost=cost, mask_self=mask_self,
                   algorithm=algorithm, relative_tau=relative_tau)
  return apply_spec(spec, x, y_pos, y_neg, tau, weights_x, weights_pos, weights_neg,
                    check_finite, with_info=True)
