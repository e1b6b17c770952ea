"""Independent float64 NumPy implementations of the drift normalizations.

Written straight from the formulas of the paper and Deng et al., in the plain (kernel)
domain (`plain_*`) and, for temperatures where the kernel underflows, in the log domain
with SciPy's logsumexp (`log_*`). They share no code with the library.
"""
import numpy as np
from scipy.special import logsumexp


def cost(x, y, name):
  diff = x[:, None, :].astype(np.float64) - y[None, :, :].astype(np.float64)
  sq = np.sum(diff * diff, axis=-1)
  return {"sqeuclidean": sq, "half_sqeuclidean": 0.5 * sq, "euclidean": np.sqrt(sq)}[name]


def _weights(w, n):
  w = np.full(n, 1.0 / n) if w is None else np.asarray(w, np.float64)
  return w / w.sum()


def plain_sinkhorn_plan(K, a, b, T):
  """Paper eq. 11 literally: pi_0 = a b K, odd steps scale rows, even steps columns."""
  pi = a[:, None] * K * b[None, :]
  for ell in range(1, T + 1):
    if ell % 2 == 1:
      pi = pi * (a / pi.sum(axis=1))[:, None]
    else:
      pi = pi * (b / pi.sum(axis=0))[None, :]
  return pi


def reference_code_coupling(K, k):
  """The reference PyTorch code's counting: k full (row, column) iterations, then a final
  row normalization (uniform marginals)."""
  n, m = K.shape
  pi = K.copy()
  for _ in range(k):
    pi = pi / pi.sum(axis=1, keepdims=True) / n
    pi = pi / pi.sum(axis=0, keepdims=True) / m
  return pi / pi.sum(axis=1, keepdims=True)


def _log_row_softmax(L):
  return L - logsumexp(L, axis=1, keepdims=True)


def _log_col_softmax(L):
  return L - logsumexp(L, axis=0, keepdims=True)


def log_couplings(Lp, Ln, a, bp, bn, normalization, T):
  """Returns (W_pos, W_neg) from float64 logits, in the log domain."""
  la, lbp, lbn = np.log(a), np.log(bp), np.log(bn)
  if normalization in ("one_sided", "sinkhorn"):
    steps = T if normalization == "sinkhorn" else 1
    out = []
    for L, lb in ((Lp, lbp), (Ln, lbn)):
      u, v = la.copy(), lb.copy()
      for ell in range(1, steps + 1):
        if ell % 2 == 1:
          u = la - logsumexp(L + v[None, :], axis=1)
        else:
          v = lb - logsumexp(L + u[:, None], axis=0)
      out.append(np.exp(_log_row_softmax(L + v[None, :])))
    return tuple(out)
  if normalization == "two_sided":
    out = []
    for L, lb in ((Lp, lbp), (Ln, lbn)):
      logA = 0.5 * (_log_row_softmax(L + lb[None, :]) + _log_col_softmax(L + la[:, None]))
      out.append(np.exp(_log_row_softmax(logA)))
    return tuple(out)
  if normalization == "two_sided_joint":
    L = np.concatenate([Lp + lbp[None, :], Ln + lbn[None, :]], axis=1)
    Lc = np.concatenate([Lp, Ln], axis=1) + la[:, None]
    A = np.sqrt(np.exp(_log_row_softmax(L)) * np.exp(_log_col_softmax(Lc)))
    Ap, An = A[:, :Lp.shape[1]], A[:, Lp.shape[1]:]
    return Ap * An.sum(1, keepdims=True), An * Ap.sum(1, keepdims=True)
  raise ValueError(normalization)


def row_softmax_drift(x, y_pos, y_neg, tau, cost_name="sqeuclidean", weights_pos=None,
                      weights_neg=None):
  """One-sided drift straight from its definition, P[i, j] proportional to
  b_j exp(-C[i, j] / tau) (no Sinkhorn loop); float64, shifted by the row maximum."""
  out = []
  for y, w in ((y_pos, weights_pos), (y_neg, weights_neg)):
    y = np.asarray(y, np.float64)
    L = -cost(np.asarray(x, np.float64), y, cost_name) / tau + np.log(_weights(w, len(y)))
    K = np.exp(L - L.max(axis=1, keepdims=True))
    out.append((K / K.sum(axis=1, keepdims=True)) @ y)
  return out[0] - out[1]


def column_errors(x, y_pos, y_neg, tau, T=41, normalization="sinkhorn",
                  cost_name="sqeuclidean", mask_self=False, weights_x=None,
                  weights_pos=None, weights_neg=None):
  """L1 errors ``sum_j |sum_i a_i P[i, j] - b_j|`` of the row-normalized couplings
  ``P_pos`` and ``P_neg`` (single tau), in float64."""
  x, y_pos = np.asarray(x, np.float64), np.asarray(y_pos, np.float64)
  y_neg = x if y_neg is None else np.asarray(y_neg, np.float64)
  a = _weights(weights_x, len(x))
  bp, bn = _weights(weights_pos, len(y_pos)), _weights(weights_neg, len(y_neg))
  Lp = -cost(x, y_pos, cost_name) / tau
  Ln = -cost(x, y_neg, cost_name) / tau
  if mask_self:
    np.fill_diagonal(Ln, -np.inf)
  Wp, Wn = log_couplings(Lp, Ln, a, bp, bn, normalization, T)
  return tuple(np.abs(a @ (W / W.sum(1, keepdims=True)) - b).sum()
               for W, b in ((Wp, bp), (Wn, bn)))


def drift(x, y_pos, y_neg, tau, T=41, normalization="sinkhorn", cost_name="sqeuclidean",
          mask_self=False, weights_x=None, weights_pos=None, weights_neg=None):
  """float64 drift; tau a scalar or a sequence (RMS-normalized sum)."""
  x, y_pos = np.asarray(x, np.float64), np.asarray(y_pos, np.float64)
  y_neg = x if y_neg is None else np.asarray(y_neg, np.float64)
  a = _weights(weights_x, len(x))
  bp, bn = _weights(weights_pos, len(y_pos)), _weights(weights_neg, len(y_neg))
  taus = np.atleast_1d(np.asarray(tau, np.float64))
  total = 0.0
  for t in taus:
    Lp = -cost(x, y_pos, cost_name) / t
    Ln = -cost(x, y_neg, cost_name) / t
    if mask_self:
      np.fill_diagonal(Ln, -np.inf)
    Wp, Wn = log_couplings(Lp, Ln, a, bp, bn, normalization, T)
    V = Wp @ y_pos - Wn @ y_neg
    if np.ndim(tau) == 0:
      return V
    total = total + V / np.sqrt(np.mean(V * V))
  return total


def converged_column_scaling(L, la, lb, g0=None, tol=1e-12, max_iter=200000):
  """float64 log-domain Sinkhorn from ``g0`` (default ``log b``) until the row-normalized
  coupling's L1 column error is ``<= tol``: ``(g, half_steps)`` with ``half_steps`` the
  ``2k + 1`` of the ``k`` full iterations done before the check that met ``tol``."""
  g = lb.copy() if g0 is None else np.asarray(g0, np.float64).copy()
  b = np.exp(lb - logsumexp(lb))
  for k in range(max_iter):
    f = la - logsumexp(L + g[None, :], axis=1)
    log_sums = logsumexp(L + f[:, None], axis=0)
    col = np.exp(g + log_sums - logsumexp(la))
    if np.abs(col - b).sum() <= tol:
      return g, 2 * k + 1
    g = lb - log_sums
  raise RuntimeError("no convergence")


def c_transform_start(x_prev, la_prev, F_prev, y, lb, tau, cost_name="sqeuclidean"):
  """``g0_j = log b_j - logsumexp_i(log a_i + (F_i - C(x_i, y_j)) / tau)``."""
  C = cost(np.asarray(x_prev, np.float64), np.asarray(y, np.float64), cost_name)
  return lb - logsumexp(la_prev[:, None] + (F_prev[:, None] - C) / tau, axis=0)


def converged_drift(x, y_pos, y_neg, tau, cost_name="sqeuclidean", tol=1e-12):
  """float64 drift of the converged split Sinkhorn couplings (uniform weights)."""
  x, y_pos = np.asarray(x, np.float64), np.asarray(y_pos, np.float64)
  y_neg = x if y_neg is None else np.asarray(y_neg, np.float64)
  la = np.full(len(x), -np.log(len(x)))
  out = 0.0
  for y, sign in ((y_pos, 1.0), (y_neg, -1.0)):
    L = -cost(x, y, cost_name) / tau
    lb = np.full(len(y), -np.log(len(y)))
    g, _ = converged_column_scaling(L, la, lb, tol=tol)
    P = np.exp(_log_row_softmax(L + g[None, :]))
    out = out + sign * (P @ y)
  return out
