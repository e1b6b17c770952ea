"""The jitted computation of :func:`sdrift_jax.feature_drift` (:mod:`sdrift_jax.drift.loss`
states the formulas and checks the arguments): the feature scale ``S``, the per-location
problems at each temperature, the couplings (:mod:`sdrift_jax.drift.couplings`, the same
as :func:`sdrift_jax.drift_field`'s, batched over the ``L`` locations), the
per-temperature normalization, and the :class:`FeatureDrift` result.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax import solvers
from sdrift_jax.drift import couplings
from sdrift_jax.drift import warm
from sdrift_jax.solvers import problem as problem_lib
from sdrift_jax.solvers.problem import Problem

__all__ = ["FeatureDrift", "feature_drift", "uncond_weight"]

_MIN_SCALE = 1e-6          # floor of S
_MIN_UNIT_NORM = 1e-8      # floor of |y - x| in unit-vector drifts
_HI = costs_lib.HIGHEST
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
    state: a :class:`~sdrift_jax.drift.warm.DriftState` over the raw features (rows
      ``[L, N, C]``, potentials ``[K, 2, L, N]``), what ``init=`` takes at the next call;
      None unless asked for.
    half_steps: ``[K]`` int32, the most half-steps any location's coupling used (``T``
      without ``tol``).
  """
  drift: jax.Array
  scale: jax.Array
  theta: jax.Array
  marginal_error_pos: jax.Array
  marginal_error_neg: jax.Array
  state: Optional[warm.DriftState] = None
  half_steps: Optional[jax.Array] = None


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


def _summed(x, y, cost, mask_diagonal=False):
  """``[L, N, C], [L, M, C] -> [L]`` summed costs over row tiles (no ``N x M`` matrix)."""
  return jax.vmap(lambda a, b: costs_lib.summed_cost(a, b, cost, mask_diagonal))(x, y)


def _feature_scale(sum_pos, sum_gen, sum_unc, n_unc_pairs, w, shape, exclude_diagonal):
  """``S = mean distance / sqrt(C)`` over the pairs the reference code counts, from the
  summed costs of the positive, generated and unconditional pairs."""
  L, N, P = shape
  total = sum_pos + sum_gen
  count = float(L * N * P + L * N * N - (L * N if exclude_diagonal else 0))
  if sum_unc is not None:
    w_eff = jnp.maximum(w, 0.0)
    total = total + w_eff * sum_unc
    count = count + w_eff * n_unc_pairs
  return total / jnp.maximum(count, 1e-12)


def _unit_barycenter(W, x, y, dist):
  """``sum_j W_ij (y_j - x_i) / |y_j - x_i|`` ``[L, N, C]``.

  Expanded as ``sum_j (W_ij / |y_j - x_i|) y_j - x_i sum_j W_ij / |y_j - x_i|`` (no
  ``[N, M, C]`` array); a pair at distance exactly 0 (a self pair) has no direction and
  contributes nothing, as in the reference, instead of cancelling ``W_ij / 1e-8`` terms.
  """
  Wn = jnp.where(dist > 0, W / jnp.maximum(dist, _MIN_UNIT_NORM), 0.0)
  return (jnp.einsum("lnm,lmc->lnc", Wn, y, precision=_HI)
          - jnp.sum(Wn, axis=-1, keepdims=True) * x)


def _bary(W, y):
  return jnp.einsum("lnm,lmc->lnc", W, y, precision=_HI)


# -- the drift ---------------------------------------------------------------------------

def _log_uniform(n, dtype):
  return jnp.full((n,), -math.log(n), dtype)


def _log_weighted_cols(n_gen, n_uncond, w, dtype):
  weights = jnp.concatenate([jnp.ones((n_gen,), dtype),
                             jnp.full((n_uncond,), jnp.maximum(w, _MIN_COL_WEIGHT), dtype)])
  return jnp.log(weights / jnp.sum(weights))


@functools.partial(jax.jit, static_argnames=(
    "form", "normalization", "T", "cost", "feature_scale", "normalize", "mask_coupling",
    "exclude_diagonal", "unit_vectors", "uncond_marginal", "aggregate_kernels", "algorithm",
    "anneal", "with_state"))
def feature_drift(x, y_pos, y_unc, taus, omega, tol=None, init=None, *, form, normalization,
                  T, cost, feature_scale, normalize, mask_coupling, exclude_diagonal,
                  unit_vectors, uncond_marginal, aggregate_kernels, algorithm, anneal=(),
                  with_state=False):
  x, y_pos, taus, omega = jax.lax.stop_gradient((x, y_pos, taus, omega))
  dtype = x.dtype
  N, L, C = x.shape
  P = y_pos.shape[0]
  U = 0 if y_unc is None else y_unc.shape[0]
  M = N + U
  xl, ypl = jnp.swapaxes(x, 0, 1), jnp.swapaxes(y_pos, 0, 1)       # [L, N, C], [L, P, C]
  yul = None if U == 0 else jnp.swapaxes(jax.lax.stop_gradient(y_unc), 0, 1)
  ynl = xl if U == 0 else jnp.concatenate([xl, yul], axis=1)        # [L, M, C]
  w = uncond_weight(omega, N, U).astype(dtype) if U else None
  engine = solvers.ENGINES[algorithm]
  blocked = algorithm == "blocked"

  if blocked:  # summed over tiles: no N x M matrix
    d_pos = d_neg = None
    sums = (_summed(xl, ypl, cost), _summed(xl, xl, cost, True),
            None if U == 0 else _summed(xl, yul, cost))
  else:
    d_pos = _distances(xl, ypl, cost)
    # Self distances are zero; the matmul expansion (C > 16) would leave rounding there.
    d_gen = jnp.where(jnp.eye(N, dtype=bool), 0.0, _distances(xl, xl, cost))
    d_unc = None if U == 0 else _distances(xl, yul, cost)
    d_neg = d_gen if U == 0 else jnp.concatenate([d_gen, d_unc], axis=-1)
    sums = (jnp.sum(d_pos), jnp.sum(d_gen), None if U == 0 else jnp.sum(d_unc))
  if feature_scale:
    mean = _feature_scale(*[None if v is None else jnp.sum(v) for v in sums], L * N * U, w,
                          (L, N, P), exclude_diagonal)
    S = jnp.maximum(mean / math.sqrt(C), _MIN_SCALE).astype(dtype)
  else:
    S = jnp.ones((), dtype)
  xn, yn_pos, yn_neg = xl / S, ypl / S, ynl / S

  # Marginals (log): rows uniform; Sinkhorn's columns uniform or CFG-weighted.
  log_r = _log_uniform(N, dtype)
  log_c_pos = _log_uniform(P, dtype)
  weighted = uncond_marginal == "weighted_cols" and U > 0
  log_c_neg = _log_weighted_cols(N, U, w, dtype) if weighted else _log_uniform(M, dtype)
  log_c_joint = (_log_weighted_cols(P + N, U, w, dtype) if weighted
                 else _log_uniform(P + M, dtype))
  col_bias = None  # log w on the unconditional columns, for the couplings that add it
  if U and (normalization != "sinkhorn" or uncond_marginal == "none"):
    log_w = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
    col_bias = jnp.concatenate([jnp.zeros((N,), dtype), jnp.full((U,), log_w, dtype)])
  post_omega = omega.astype(dtype) if (uncond_marginal == "post_guidance" and U) else None
  sinkhorn = normalization == "sinkhorn"
  # Sinkhorn starts from the raw kernel (the reference's zero potentials): its problem's
  # logits are ``L - log c`` against the marginal ``c``. The one- and two-sided couplings
  # see no marginal (zeros: they only normalize) and are measured against ``c``.
  zeros = lambda n: jnp.zeros((n,), dtype)

  def problems(lp, ln):
    if sinkhorn:
      return (Problem.dense(lp - log_c_pos, log_r, log_c_pos),
              Problem.dense(ln - log_c_neg, log_r, log_c_neg), None, None)
    return (Problem.dense(lp, zeros(N), zeros(P)), Problem.dense(ln, zeros(N), zeros(M)),
            None, log_c_neg if weighted else None)

  def split_dense(lp, ln):
    """The split form through the couplings themselves (unit vectors, post-guidance)."""
    pos, neg, _, tgt_neg = problems(lp, ln)
    side = functools.partial(couplings.split_coupling, normalization=normalization, T=T,
                             engine=engine, reference_rows=True)
    W_pos, W_neg = side(pos), side(neg)
    if post_omega is not None:
      boost = jnp.concatenate([jnp.ones((N,), dtype), jnp.full((U,), post_omega, dtype)])
      W_neg = couplings.row_normalize(W_neg * boost)
    e_pos = problem_lib.column_error(W_pos, pos.log_a, log_c_pos)
    e_neg = problem_lib.column_error(W_neg, neg.log_a,
                                     neg.log_b if tgt_neg is None else tgt_neg)
    return _side_drift(W_pos, W_neg), e_pos, e_neg

  # Warm starts and the exported state (Sinkhorn), in raw feature units, where the
  # temperature is t = S tau sqrt(C) and the kernel's log column weights are ``bias``.
  bias_pos = -log_c_pos
  bias_neg = -log_c_neg if col_bias is None else col_bias - log_c_neg
  bcast = lambda v, n: jnp.broadcast_to(v, (L, n))
  bias_joint = -log_c_joint + jnp.concatenate(
      [jnp.zeros((P,), dtype), jnp.zeros((M,), dtype) if col_bias is None else col_bias])
  new_cols = ((ypl, bcast(log_c_pos, P), bcast(bias_pos, P)),
              (ynl, bcast(log_c_neg, M), bcast(bias_neg, M)))
  joint_cols = ((ypl, bcast(log_c_joint[:P], P), bcast(bias_joint[:P], P)),
                (ynl, bcast(log_c_joint[P:], M), bcast(bias_joint[P:], M)))

  def start(k, t, joint=False):
    if init is None:
      return None, None
    return warm.starts(init, k, joint_cols if joint else new_cols, t, cost, joint)

  def split(lp, ln, t, k):
    pos, neg, tgt_pos, tgt_neg = problems(lp, ln)
    if sinkhorn:
      g_pos, g_neg = start(k, t)
      pos, neg = pos.starting_from(g_pos), neg.starting_from(g_neg)
    side = functools.partial(couplings.split_barycenter, normalization=normalization, T=T,
                             engine=engine, with_error=True, reference_rows=True, tol=tol,
                             anneal=anneal)
    rp, rn = side(pos, yn_pos, log_target=tgt_pos), side(neg, yn_neg, log_target=tgt_neg)
    h = (rp.g + bias_pos, rn.g + bias_neg) if with_state else None
    return (rp.barycenter - rn.barycenter, rp.col_error, rn.col_error, h,
            jnp.maximum(jnp.max(rp.half_steps), jnp.max(rn.half_steps)))

  def joint(lp, ln, t, k):
    logits = jnp.concatenate([lp, ln], axis=-1)
    problem = (Problem.dense(logits - log_c_joint, log_r, log_c_joint) if sinkhorn
               else Problem.dense(logits, zeros(N), zeros(P + M)))
    if sinkhorn:
      problem = problem.starting_from(start(k, t, joint=True)[0])
    W_pos, W_neg, A, half, g = couplings.joint_weights(
        problem, P, normalization=normalization, T=T, tol=tol, anneal=anneal)
    e_pos, e_neg = couplings.joint_column_errors(A, P, log_c_joint)
    h = None
    if with_state:
      hj = g + bias_joint
      h = (hj[..., :P], hj[..., P:])
    return _side_drift(W_pos, W_neg), e_pos, e_neg, h, jnp.max(half)

  def _side_drift(W_pos, W_neg):
    if unit_vectors:
      return (_unit_barycenter(W_pos, xn, yn_pos, d_pos)
              - _unit_barycenter(W_neg, xn, yn_neg, d_neg))
    return _bary(W_pos, yn_pos) - _bary(W_neg, yn_neg)

  def mask(ln):
    if not mask_coupling:
      return ln
    return jnp.where(jnp.eye(N, M, dtype=bool), -jnp.inf, ln)

  def dense_logits_at(tau):
    temp = tau * math.sqrt(C)
    ln = -d_neg / (S * temp)
    if col_bias is not None:
      ln = ln + col_bias
    return -d_pos / (S * temp), mask(ln)

  def drift_of(lp, ln, t=None, k=None):
    if form == "joint":
      v, e_pos, e_neg, h, half = joint(lp, ln, t, k)
    elif unit_vectors or post_omega is not None:
      (v, e_pos, e_neg), h, half = split_dense(lp, ln), None, jnp.int32(T)
    else:
      v, e_pos, e_neg, h, half = split(lp, ln, t, k)
    return v, jnp.mean(e_pos), jnp.mean(e_neg), h, half

  def blocked_drift_at(tau, k):
    # The point problems of the split Sinkhorn: raw points at tau_eff = S tau sqrt(C).
    t = S * tau * math.sqrt(C)
    g_pos, g_neg = start(k, t)
    pos = Problem.points(xl, ypl, t, cost, log_r, log_c_pos, col_bias=bcast(bias_pos, P))
    neg = Problem.points(xl, ynl, t, cost, log_r, log_c_neg, mask_diagonal=mask_coupling,
                         col_bias=bcast(bias_neg, M))
    pos, neg = pos.starting_from(g_pos), neg.starting_from(g_neg)
    side = functools.partial(couplings.split_barycenter, normalization=normalization, T=T,
                             engine=engine, with_error=True, tol=tol, anneal=anneal)
    rp, rn = side(pos, yn_pos), side(neg, yn_neg)
    h = (rp.g + bias_pos, rn.g + bias_neg) if with_state else None
    return (rp.barycenter - rn.barycenter, jnp.mean(rp.col_error), jnp.mean(rn.col_error),
            h, jnp.maximum(jnp.max(rp.half_steps), jnp.max(rn.half_steps)))

  K = taus.shape[0]
  if aggregate_kernels:
    # One coupling from the kernel averaged over temperatures, shared by all of them.
    lps, lns = jax.vmap(dense_logits_at)(taus)
    avg = lambda l: jnp.maximum(logsumexp(l, axis=0) - math.log(K), _LOG_MIN_KERNEL)
    v, e_pos, e_neg, _, half = drift_of(avg(lps), avg(lns))
    theta = jnp.sqrt(jnp.maximum(jnp.mean(v * v), _MIN_THETA_SQ))
    V = K * (v / theta if normalize else v)
    rep = lambda a: jnp.full((K,), a)
    return FeatureDrift(jnp.swapaxes(V, 0, 1), S, rep(theta), rep(e_pos), rep(e_neg), None,
                        rep(half))

  def drift_at(args):
    tau, k = args
    if blocked:
      return blocked_drift_at(tau, k)
    return drift_of(*dense_logits_at(tau), S * tau * math.sqrt(C), k)

  if init is not None:
    init = jax.tree.map(lambda v: v if v.dtype == bool else v.astype(dtype), init)
  taus = taus.astype(dtype)
  V, thetas, (e_pos, e_neg, h, half) = couplings.rms_normalized_sum(
      drift_at, (taus, None if init is None else (init.h_pos, init.h_neg, init.tau)),
      normalize=normalize, min_mean_square=_MIN_THETA_SQ)
  state = None
  if h is not None:
    state = warm.DriftState(xl, log_r, ypl, ynl, h[0], h[1], S * taus * math.sqrt(C),
                            jnp.array(True))
  return FeatureDrift(jnp.swapaxes(V, 0, 1), S, thetas, e_pos, e_neg, state, half)
