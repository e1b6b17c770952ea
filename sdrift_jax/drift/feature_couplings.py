"""Couplings of the feature drift (:mod:`sdrift_jax.drift.loss`), per location.

Every function takes logits ``[L, N, M]`` (one problem per feature location) and builds
the weights ``W`` of the drift ``v = W_pos @ y_pos - W_neg @ y_neg``: row softmax, the
geometric mean of row and column softmax (Deng et al.), or Sinkhorn from the raw kernel,
in the split form or in Algorithm 2's joint form.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax.sinkhorn import scaling as stabilized
from sdrift_jax.sinkhorn.solver import sinkhorn_scaling

__all__ = ["couplings", "barycenter"]

_HI = jax.lax.Precision.HIGHEST
_MIN_ROW_MASS = 1e-12      # floor of a row sum before row normalization
_MIN_UNIT_NORM = 1e-8      # floor of |y - x| in unit-vector drifts


def geometric_mean(logits):
  """``sqrt(softmax_row * softmax_col)`` per location, zero where the logit is ``-inf``."""
  log_a = logits - 0.5 * (logsumexp(logits, axis=-1, keepdims=True)
                          + logsumexp(logits, axis=-2, keepdims=True))
  return jnp.where(jnp.isneginf(logits), 0.0, jnp.exp(log_a))


def row_normalize(A):
  return A / jnp.maximum(jnp.sum(A, axis=-1, keepdims=True), _MIN_ROW_MASS)


def split_sinkhorn(logits, log_c, T, algorithm):
  """Row-normalized coupling after ``T`` half-steps from the raw kernel ``exp(logits)``.

  Our Sinkhorn starts from the kernel of the reference measure, ``c_j exp(logits)``;
  passing ``logits - log c`` makes its start the raw kernel, as in the reference code
  (only the first row step sees the difference; after it, a column rescaling of the
  kernel leaves every iterate's coupling unchanged).
  """
  L, N, M = logits.shape
  log_r = jnp.full((N,), -math.log(N), logits.dtype)
  shifted = logits - log_c[None, None, :]
  if algorithm == "scaling":
    return stabilized.row_normalized_coupling(shifted, log_r, log_c, T)

  def one(l):
    _, g = sinkhorn_scaling(l, 2 * (T // 2), log_r, log_c)
    return jax.nn.softmax(l + g[None, :], axis=-1)
  return jax.vmap(one)(shifted)


def joint_sinkhorn(logits, log_c, T):
  """The plan after ``T`` half-steps from the raw kernel (not row-normalized)."""
  N = logits.shape[1]
  log_r = jnp.full((N,), -math.log(N), logits.dtype)
  shifted = logits - log_c[None, None, :]

  def one(l):
    f, g = sinkhorn_scaling(l, T, log_r, log_c)
    return jnp.exp(l + f[:, None] + g[None, :])
  return jax.vmap(one)(shifted)


def column_error(P, target):
  """Mean over locations of ``sum_j |mean_i P[l, i, j] - target_j|``."""
  return jnp.mean(jnp.sum(jnp.abs(jnp.mean(P, axis=1) - target[None, :]), axis=-1))


def barycenter(W, x, y, unit_vectors, dist):
  """``W @ y``, or with ``unit_vectors`` ``sum_j W_ij (y_j - x_i) / |y_j - x_i|``."""
  if not unit_vectors:
    return jnp.einsum("lnm,lmc->lnc", W, y, precision=_HI)
  # Expanded as sum_j (W_ij / |y_j - x_i|) y_j - x_i sum_j W_ij / |y_j - x_i| (no
  # [N, M, C] array); a pair at distance exactly 0 (a self pair) has no direction and
  # contributes nothing, as in the reference, instead of cancelling W_ij / 1e-8 terms.
  Wn = jnp.where(dist > 0, W / jnp.maximum(dist, _MIN_UNIT_NORM), 0.0)
  return (jnp.einsum("lnm,lmc->lnc", Wn, y, precision=_HI)
          - jnp.sum(Wn, axis=-1, keepdims=True) * x)


def couplings(lp, ln, *, form, normalization, T, algorithm, log_c_pos, log_c_neg,
               log_c_joint, post_guidance_omega, n_uncond):
  """``(W_pos, W_neg, err_pos, err_neg)`` for logits ``lp [L, N, P]``, ``ln [L, N, M]``."""
  P = lp.shape[-1]
  if form == "split":
    if normalization == "one_sided":
      W_pos, W_neg = jax.nn.softmax(lp, axis=-1), jax.nn.softmax(ln, axis=-1)
    elif normalization == "two_sided":
      W_pos = row_normalize(geometric_mean(lp))
      W_neg = row_normalize(geometric_mean(ln))
    else:
      W_pos = split_sinkhorn(lp, log_c_pos, T, algorithm)
      W_neg = split_sinkhorn(ln, log_c_neg, T, algorithm)
      if post_guidance_omega is not None:
        boost = jnp.concatenate([jnp.ones((ln.shape[-1] - n_uncond,), ln.dtype),
                                 jnp.full((n_uncond,), post_guidance_omega, ln.dtype)])
        W_neg = row_normalize(W_neg * boost)
    return (W_pos, W_neg, column_error(W_pos, jnp.exp(log_c_pos)),
            column_error(W_neg, jnp.exp(log_c_neg)))
  logits = jnp.concatenate([lp, ln], axis=-1)
  if normalization == "one_sided":
    A = jax.nn.softmax(logits, axis=-1)
  elif normalization == "two_sided":
    A = geometric_mean(logits)
  else:
    A = joint_sinkhorn(logits, log_c_joint, T)
  a_pos, a_neg = A[..., :P], A[..., P:]
  W_pos = a_pos * jnp.sum(a_neg, axis=-1, keepdims=True)
  W_neg = a_neg * jnp.sum(a_pos, axis=-1, keepdims=True)
  # Diagnostics: columns of the plan rescaled to unit mass per location against c.
  mass = jnp.sum(A, axis=(-2, -1), keepdims=True)
  cols = jnp.sum(A / jnp.maximum(mass, _MIN_ROW_MASS), axis=1)  # [L, P + M]
  err = jnp.abs(cols - jnp.exp(log_c_joint)[None, :])
  return (W_pos, W_neg, jnp.mean(jnp.sum(err[:, :P], -1)),
          jnp.mean(jnp.sum(err[:, P:], -1)))
