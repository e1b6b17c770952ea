"""Independent float64 NumPy reference of the reference codes' *feature drift*.

This re-states, in plain and deliberately slow NumPy (explicit loops over
feature locations and temperatures), the drift that the public reference code
of the Sinkhorn-drifting paper builds inside its drifting loss for one feature
set ``[N, L, C]`` (its ``drifting_loss_for_feature_set``; see
``shared/REFERENCE.md`` section 4).  It is written from the formulas, not from
that code, and imports nothing from ``sdrift_jax``: tests use it as an
independent oracle.

Formulas, per feature set (``N`` generated ``x``, ``P`` positives, ``U``
unconditional negatives, ``C`` channels, ``L`` locations):

* distances ``D`` per location: ``|x_i - y_j|`` (``cost="euclidean"``) or
  ``|x_i - y_j|^2`` (``"sqeuclidean"``), computed in raw units from explicit
  differences (so self pairs are exactly 0);
* CFG weight ``w = (N - 1)(omega - 1) / U`` (``U > 0``), ``w+ = max(w, 0)``;
* scale ``S = max(mean_dist / sqrt(C), 1e-6)`` where ``mean_dist`` is the
  weighted mean of all raw distances x->pos (weight 1), x->x (weight 1, the
  ``L*N`` diagonal pairs left out of the count when self-masking is "on" for
  the count) and x->uncond (weight ``w+``); ``S = 1`` without feature scaling;
* logits for temperature ``rho``: ``-(D / S) / (rho * sqrt(C))``; masked self
  pairs get logit ``-inf``; for the one-/two-sided couplings (and Sinkhorn
  with ``uncond_marginal="none"``) ``log w`` is added to the unconditional
  columns (``-inf`` when ``w <= 0``);
* coupling, drift (split: ``P_pos @ y_pos - P_neg @ y_neg``; joint: Deng et
  al.'s Algorithm 2 cross weighting on ``[pos | neg]``), all in units ``y / S``;
* each temperature's drift is divided by ``theta = sqrt(max(mean(v^2),
  1e-12))`` (mean over L, N, C) when ``normalize``, and the results summed;
* ``loss = mean(V^2)`` over N, L, C.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["feature_drift_np"]

_NORMALIZATIONS = ("one_sided", "two_sided", "sinkhorn")
_FORMS = ("split", "joint")
_COSTS = ("euclidean", "sqeuclidean")
_UNCOND_MARGINALS = ("weighted_cols", "post_guidance", "none")


# ----------------------------------------------------------------------------
# small log-domain helpers (explicit, 1-D)
# ----------------------------------------------------------------------------


def _lse(values: np.ndarray) -> float:
    """log(sum(exp(values))) of a 1-D array; -inf when every entry is -inf."""
    values = np.asarray(values, dtype=np.float64)
    top = float(np.max(values))
    if top == -math.inf:
        return -math.inf
    return top + math.log(float(np.sum(np.exp(values - top))))


def _row_softmax(logits: np.ndarray) -> np.ndarray:
    """P_ij = exp(G_ij) / sum_k exp(G_ik)."""
    n, m = logits.shape
    out = np.zeros((n, m))
    for i in range(n):
        log_z = _lse(logits[i])
        for j in range(m):
            if logits[i, j] != -math.inf:
                out[i, j] = math.exp(logits[i, j] - log_z)
    return out


def _geometric_mean_coupling(logits: np.ndarray) -> np.ndarray:
    """A_ij = K_ij / sqrt(rowsum_i(K) * colsum_j(K)), K = exp(G), in log space.

    Equivalently sqrt(row_softmax * col_softmax). Entries whose logit is -inf
    (masked pairs, zero-weight columns) are exactly 0.
    """
    n, m = logits.shape
    log_row = np.array([_lse(logits[i, :]) for i in range(n)])
    log_col = np.array([_lse(logits[:, j]) for j in range(m)])
    out = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            if logits[i, j] != -math.inf:
                out[i, j] = math.exp(logits[i, j] - 0.5 * (log_row[i] + log_col[j]))
    return out


def _sinkhorn_plan(logits: np.ndarray, row_marg: np.ndarray, col_marg: np.ndarray,
                   half_steps: int) -> np.ndarray:
    """Plan exp(G_ij + f_i + g_j) after ``half_steps`` Sinkhorn half-iterations.

    Starts from zero potentials (the raw kernel exp(G)); odd half-steps fit the
    row marginals (f), even half-steps the column marginals (g).
    """
    n, m = logits.shape
    f = np.zeros(n)
    g = np.zeros(m)
    for t in range(1, half_steps + 1):
        if t % 2 == 1:
            for i in range(n):
                f[i] = math.log(row_marg[i]) - _lse(logits[i, :] + g)
        else:
            for j in range(m):
                g[j] = math.log(col_marg[j]) - _lse(logits[:, j] + f)
    plan = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            if logits[i, j] != -math.inf:
                plan[i, j] = math.exp(logits[i, j] + f[i] + g[j])
    return plan


def _normalize_rows(mat: np.ndarray) -> np.ndarray:
    out = np.empty_like(mat)
    for i in range(mat.shape[0]):
        out[i] = mat[i] / max(float(np.sum(mat[i])), 1e-12)
    return out


def _barycentric(weights: np.ndarray, x: np.ndarray, y: np.ndarray,
                 unit_vectors: bool) -> np.ndarray:
    """sum_j W_ij y_j, or sum_j W_ij (y_j - x_i) / |y_j - x_i| (0 for y_j == x_i)."""
    n, m = weights.shape
    out = np.zeros((n, x.shape[1]))
    for i in range(n):
        for j in range(m):
            if unit_vectors:
                delta = y[j] - x[i]
                length = math.sqrt(float(np.sum(delta * delta)))
                if length > 0.0:
                    out[i] += weights[i, j] * (delta / length)
            else:
                out[i] += weights[i, j] * y[j]
    return out


def _pairwise_cost(a: np.ndarray, b: np.ndarray, cost: str) -> np.ndarray:
    """Raw-unit distances from explicit differences (self pairs exactly 0)."""
    out = np.zeros((a.shape[0], b.shape[0]))
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            delta = a[i] - b[j]
            sq = float(np.sum(delta * delta))
            out[i, j] = math.sqrt(sq) if cost == "euclidean" else sq
    return out


def _as_nlc(arr, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape [N, L, C] or [N, C], got {arr.shape}")
    return arr


# ----------------------------------------------------------------------------
# the public function
# ----------------------------------------------------------------------------


def feature_drift_np(x, y_pos, y_uncond=None, *, tau, omega=1.0, normalization="sinkhorn",
                     form="split", T=41, cost="euclidean", feature_scale=True, normalize=True,
                     mask_self=None, unit_vectors=False, uncond_marginal="weighted_cols",
                     aggregate_kernels=False) -> dict:
    """Float64 feature drift of one feature set, as the reference drifting loss builds it.

    Args:
      x: ``[N, L, C]`` generated features (``[N, C]`` means ``L = 1``).
      y_pos: ``[P, L, C]`` positives. ``y_uncond``: ``[U, L, C]`` or None.
      tau: one temperature or a sequence (relative: the logits use
        ``rho * sqrt(C)`` on distances divided by ``S``).
      omega: CFG strength (scalar); ``w = (N - 1)(omega - 1) / U``.
      normalization: ``"one_sided"`` (row softmax), ``"two_sided"`` (geometric
        mean of row and column softmax), ``"sinkhorn"``.
      form: ``"split"`` (``P_pos y_pos - P_neg y_neg``, each row-normalized) or
        ``"joint"`` (Algorithm 2 cross weighting of one coupling on ``[pos|neg]``).
      T: Sinkhorn half-iterations from zero potentials (reference ``k`` full
        iterations = ``T = 2k``; split form row-normalizes at the end so
        ``2k`` and ``2k+1`` agree). ``T = 0`` uses the raw kernel.
      cost: ``"euclidean"`` (``|x-y|``) or ``"sqeuclidean"`` (``|x-y|^2``).
      feature_scale: divide by ``S`` (the reference's ``vanilla=False``).
      normalize: divide each temperature's drift by its RMS ``theta``.
      mask_self: None: the reference's ``mask_self_neg=True`` flag (coupling
        masked for one/two-sided, not for Sinkhorn; diagonal left out of the
        ``S`` count). False: no mask, diagonal counted. True: diagonal left out
        of the count and the coupling masked for every normalization (for
        Sinkhorn an extension: the self pairs get zero kernel).
      unit_vectors: drift from unit displacement vectors (euclidean only).
      uncond_marginal: Sinkhorn CFG handling, ``"weighted_cols"`` (column
        marginal 1 for gen./pos. columns, ``max(w, 1e-6)`` for uncond., no
        bias), ``"post_guidance"`` (uniform marginals, no bias; split form only:
        unconditional columns of the row-normalized plan times omega, then
        rows renormalized), ``"none"`` (``+log w`` bias, uniform marginals;
        needs ``w > 0`` when ``U > 0``). Ignored by one/two-sided.
      aggregate_kernels: Sinkhorn only: average the kernels ``exp(logits)``
        over the temperatures, floor at 1e-30, run Sinkhorn once, and use that
        coupling for every temperature (ignored by one/two-sided).

    Returns:
      dict(drift=[N, L, C] float64 V, scale=S, loss=mean(V^2)).
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost!r}")
    if uncond_marginal not in _UNCOND_MARGINALS:
        raise ValueError(f"uncond_marginal must be one of {_UNCOND_MARGINALS}, got {uncond_marginal!r}")
    if unit_vectors and cost != "euclidean":
        raise ValueError("unit_vectors requires cost='euclidean'")
    if int(T) != T or T < 0:
        raise ValueError(f"T must be a non-negative integer, got {T}")
    T = int(T)
    taus = tuple(float(t) for t in np.atleast_1d(np.asarray(tau, dtype=np.float64)))
    if not taus or any(not (t > 0) for t in taus):
        raise ValueError(f"tau must be positive, got {tau}")

    x = _as_nlc(x, "x")
    y_pos = _as_nlc(y_pos, "y_pos")
    n, n_loc, c = x.shape
    if y_uncond is None:
        y_uncond = np.zeros((0, n_loc, c))
    y_uncond = _as_nlc(y_uncond, "y_uncond")
    p, u = y_pos.shape[0], y_uncond.shape[0]
    if y_pos.shape[1:] != (n_loc, c) or y_uncond.shape[1:] != (n_loc, c):
        raise ValueError("x, y_pos and y_uncond must share [L, C]")
    if n < 2:
        raise ValueError("need at least 2 generated samples")

    omega = float(omega)
    w = (n - 1) * (omega - 1.0) / u if u > 0 else 0.0
    w_plus = max(w, 0.0)
    sinkhorn = normalization == "sinkhorn"
    # Which CFG mechanism is in force.
    use_log_w_bias = u > 0 and (not sinkhorn or uncond_marginal == "none")
    if sinkhorn and uncond_marginal == "none" and u > 0 and w <= 0:
        raise ValueError("sinkhorn with uncond_marginal='none' needs w > 0 (omega > 1): "
                         "the log(w) bias removes the unconditional columns")
    weighted_cols = sinkhorn and uncond_marginal == "weighted_cols" and u > 0
    post_guidance = sinkhorn and uncond_marginal == "post_guidance" and u > 0 and form == "split"
    use_aggregate = sinkhorn and bool(aggregate_kernels)

    # Masking semantics.
    leave_diag_out_of_count = mask_self is None or bool(mask_self)
    mask_coupling = bool(mask_self) if mask_self is not None else not sinkhorn

    # Raw distances per location.
    d_pos = [_pairwise_cost(x[:, l], y_pos[:, l], cost) for l in range(n_loc)]
    d_gen = [_pairwise_cost(x[:, l], x[:, l], cost) for l in range(n_loc)]
    d_unc = [_pairwise_cost(x[:, l], y_uncond[:, l], cost) for l in range(n_loc)]

    # Feature scale S.
    if feature_scale:
        total = sum(float(np.sum(d)) for d in d_pos) + sum(float(np.sum(d)) for d in d_gen)
        count = n_loc * n * p + n_loc * n * n - (n_loc * n if leave_diag_out_of_count else 0)
        if u > 0:
            total += w_plus * sum(float(np.sum(d)) for d in d_unc)
            count += w_plus * n_loc * n * u
        mean_dist = total / max(count, 1e-12)
        scale = max(mean_dist / math.sqrt(c), 1e-6)
    else:
        scale = 1.0

    # Column marginals for Sinkhorn (row marginals are uniform 1/N).
    row_marg = np.full(n, 1.0 / n)
    neg_cols = np.concatenate([np.ones(n), np.full(u, max(w_plus, 1e-6) if weighted_cols else 1.0)])
    joint_cols = np.concatenate([np.ones(p), neg_cols])

    def logits_for(l: int, rho: float):
        temp = rho * math.sqrt(c)
        g_pos = -(d_pos[l] / scale) / temp
        g_neg = -(np.concatenate([d_gen[l], d_unc[l]], axis=1) / scale) / temp
        if mask_coupling:
            for i in range(n):
                g_neg[i, i] = -math.inf
        if use_log_w_bias:
            g_neg[:, n:] += math.log(w) if w > 0 else -math.inf
        return g_pos, g_neg

    def aggregated_logits(l: int):
        pos_kernel, neg_kernel = 0.0, 0.0
        for rho in taus:
            g_pos, g_neg = logits_for(l, rho)
            pos_kernel = pos_kernel + np.exp(g_pos) / len(taus)
            neg_kernel = neg_kernel + np.exp(g_neg) / len(taus)
        g_pos = np.log(np.maximum(pos_kernel, 1e-30))
        g_neg = np.log(np.maximum(neg_kernel, 1e-30))
        if mask_coupling:  # masked pairs stay removed (not floored)
            for i in range(n):
                g_neg[i, i] = -math.inf
        return g_pos, g_neg

    def drift_at(l: int, rho: float) -> np.ndarray:
        g_pos, g_neg = aggregated_logits(l) if use_aggregate else logits_for(l, rho)
        xs = x[:, l] / scale
        ys_pos = y_pos[:, l] / scale
        ys_neg = np.concatenate([x[:, l], y_uncond[:, l]], axis=0) / scale

        if form == "split":
            if normalization == "one_sided":
                p_pos, p_neg = _row_softmax(g_pos), _row_softmax(g_neg)
            elif normalization == "two_sided":
                p_pos = _normalize_rows(_geometric_mean_coupling(g_pos))
                p_neg = _normalize_rows(_geometric_mean_coupling(g_neg))
            else:
                p_pos = _normalize_rows(_sinkhorn_plan(g_pos, row_marg, np.full(p, 1.0 / p), T))
                p_neg = _normalize_rows(_sinkhorn_plan(g_neg, row_marg, neg_cols / np.sum(neg_cols), T))
                if post_guidance:
                    p_neg[:, n:] *= omega
                    p_neg = _normalize_rows(p_neg)
            return (_barycentric(p_pos, xs, ys_pos, unit_vectors)
                    - _barycentric(p_neg, xs, ys_neg, unit_vectors))

        # Joint form (Algorithm 2): one coupling A on [pos | neg].
        g_all = np.concatenate([g_pos, g_neg], axis=1)
        if normalization == "one_sided":
            a_all = _row_softmax(g_all)
        elif normalization == "two_sided":
            a_all = _geometric_mean_coupling(g_all)
        else:
            a_all = _sinkhorn_plan(g_all, row_marg, joint_cols / np.sum(joint_cols), T)
        a_pos, a_neg = a_all[:, :p], a_all[:, p:]
        w_pos = a_pos * np.sum(a_neg, axis=1, keepdims=True)
        w_neg = a_neg * np.sum(a_pos, axis=1, keepdims=True)
        return (_barycentric(w_pos, xs, ys_pos, unit_vectors)
                - _barycentric(w_neg, xs, ys_neg, unit_vectors))

    drift = np.zeros((n, n_loc, c))
    for rho in taus:
        v = np.zeros((n, n_loc, c))
        for l in range(n_loc):
            v[:, l, :] = drift_at(l, rho)
        if normalize:
            theta = math.sqrt(max(float(np.mean(v * v)), 1e-12))
            v = v / theta
        drift += v

    return dict(drift=drift, scale=float(scale), loss=float(np.mean(drift * drift)))
