"""The jitted computation of :func:`sdrift_jax.feature_drift` (:mod:`sdrift_jax.drift.loss`
states the formulas and checks the arguments): the feature scale ``S``, the per-location
logits at each temperature, the couplings (:mod:`sdrift_jax.drift.feature_couplings`), the
per-temperature normalization, and the :class:`FeatureDrift` result.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax.drift import feature_couplings

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
def feature_drift(x, y_pos, y_unc, taus, omega, *, form, normalization, T, cost,
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
