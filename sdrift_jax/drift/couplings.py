"""The couplings of every drift, once: one-sided, two-sided and Sinkhorn, in the split
or the joint form, on batched problems ``[..., N, M]``.

Both fronts, :func:`sdrift_jax.drift_field` (one location, data units) and
:func:`sdrift_jax.feature_drift` (a batch of ``L`` locations, scaled units), build their
:class:`~sdrift_jax.solvers.Problem` s and call these functions; the Sinkhorn half-steps
run in the engine the caller names (:data:`sdrift_jax.solvers.ENGINES`).

Vocabulary (paper Table 1 / Deng et al.):

* ``normalization``: ``'one_sided'`` (row softmax), ``'two_sided'`` (geometric mean of
  the row and column softmax), ``'sinkhorn'`` (``T`` half-steps of Sinkhorn scaling);
* ``form``: ``'split'`` (``V = P_pos @ y_pos - P_neg @ y_neg``, each ``P``
  row-normalized) or ``'joint'`` (Algorithm 2: one coupling ``A`` over ``[pos | neg]``,
  ``W_pos = A_pos * rowsum(A_neg)``, ``W_neg = A_neg * rowsum(A_pos)``).

``'two_sided_joint'`` is accepted as ``normalization='two_sided', form='joint'``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from sdrift_jax import costs as costs_lib
from sdrift_jax.solvers import log as log_engine
from sdrift_jax.solvers import problem as problem_lib
from sdrift_jax.solvers import start as start_lib
from sdrift_jax.solvers.problem import Problem, Result

__all__ = ["FORMS", "NORMALIZATIONS", "canonical_form", "geometric_mean", "geometric_mean_log", "joint_column_errors", "joint_weights",
           "rms_normalized_sum", "row_normalize", "sinkhorn_solve", "split_barycenter",
           "split_coupling"]

NORMALIZATIONS = ("sinkhorn", "one_sided", "two_sided")
FORMS = ("split", "joint")
#: Older names for a (normalization, form) pair.
ALIASES = {"two_sided_joint": ("two_sided", "joint")}

_HI = costs_lib.HIGHEST
_MIN_ROW_MASS = 1e-12  # floor of a row sum before row normalization


def canonical_form(normalization: str, form: str) -> tuple[str, str]:
  """``(normalization, form)`` with the aliases of :data:`ALIASES` resolved; raises a
  ValueError naming the bad value."""
  if normalization in ALIASES:
    alias_norm, alias_form = ALIASES[normalization]
    if form not in ("split", alias_form):
      raise ValueError(f"normalization={normalization!r} is form {alias_form!r}, got "
                       f"form={form!r}")
    return alias_norm, alias_form
  names = NORMALIZATIONS + tuple(ALIASES)
  if not isinstance(normalization, str) or normalization not in NORMALIZATIONS:
    raise ValueError(f"unknown normalization {normalization!r}: expected one of {names}")
  if not isinstance(form, str) or form not in FORMS:
    raise ValueError(f"unknown form {form!r}: expected one of {FORMS}")
  return normalization, form


def row_normalize(W: jax.Array) -> jax.Array:
  return W / jnp.maximum(jnp.sum(W, axis=-1, keepdims=True), _MIN_ROW_MASS)


def geometric_mean_log(logits, log_a, log_b) -> jax.Array:
  """``log sqrt(softmax_row(L + log b) * softmax_col(L + log a))`` ``[..., N, M]``,
  ``-inf`` where ``L = -inf`` (Deng et al.'s two-sided coupling, weighted by the other
  side's marginal)."""
  lr = logits + log_b[..., None, :]
  lc = logits + log_a[..., :, None]
  log_A = 0.5 * ((lr - logsumexp(lr, axis=-1, keepdims=True))
                 + (lc - logsumexp(lc, axis=-2, keepdims=True)))
  return jnp.where(jnp.isneginf(logits), -jnp.inf, log_A)


def geometric_mean(logits, log_a, log_b) -> jax.Array:
  """``exp`` of :func:`geometric_mean_log`: zero where ``L = -inf``."""
  return jnp.exp(geometric_mean_log(logits, log_a, log_b))


def _steps(normalization: str, T: int) -> int:
  return T if normalization == "sinkhorn" else 1


def sinkhorn_solve(problem: Problem, values, *, T: int, engine, with_error: bool = False,
                   tol=None, anneal=()):
  """The engine's :class:`~sdrift_jax.solvers.Result` of the Sinkhorn coupling, after the
  annealing ``anneal`` (temperature factors, :func:`sdrift_jax.solvers.start.anneal_levels`;
  one full log-domain iteration each, counted in ``T`` and in ``half_steps``) and at most
  the rest of the ``T`` half-steps (fewer at ``tol``)."""
  if anneal:
    problem = problem.starting_from(start_lib.annealed_start(problem, anneal))
  result = engine.solve(problem, T - 2 * len(anneal), values, with_error=with_error, tol=tol)
  return result._replace(half_steps=result.half_steps + 2 * len(anneal))


def split_barycenter(problem: Problem, values, *, normalization: str, T: int, engine,
                     with_error: bool = False, log_target=None, reference_rows=False,
                     tol=None, anneal=()):
  """The split form's ``P @ values`` for its coupling ``P``, as a
  :class:`~sdrift_jax.solvers.Result` (``barycenter`` ``[..., N, k]``, ``col_error``;
  ``g`` and ``half_steps`` for the Sinkhorn engines' path, else None and ``T``).

  Args:
    problem: the side's problem (positives or negatives).
    values: ``[..., M, k]``, what the coupling averages (the side's points).
    normalization: ``'one_sided'``, ``'two_sided'`` or ``'sinkhorn'``.
    T: Sinkhorn half-steps (``'sinkhorn'`` only).
    engine: a module of :data:`sdrift_jax.solvers.ENGINES`.
    with_error: compute the L1 column-marginal error of ``a_i P[i, j]``; else zeros.
    log_target: the column marginal the error is measured against (default the
      problem's ``log_b``).
    reference_rows: see :func:`split_coupling`.
    tol, anneal: the Sinkhorn stopping tolerance and annealing (:func:`sinkhorn_solve`).
  """
  if normalization == "two_sided" or (with_error and log_target is not None):
    # The coupling itself: the geometric mean has no engine, and an error against
    # another target than the problem's log_b reads the coupling (dense engines).
    W = split_coupling(problem, normalization=normalization, T=T, engine=engine,
                       reference_rows=reference_rows)
    target = problem.log_b if log_target is None else log_target
    err = (problem_lib.column_error(W, problem.log_a, target) if with_error
           else jnp.zeros(problem.batch_shape, W.dtype))
    return Result(None, jnp.einsum("...nm,...mk->...nk", W, values, precision=_HI), err,
                  problem_lib.plain_half_steps(problem.batch_shape, _steps(normalization, T)))
  if normalization != "sinkhorn":
    return engine.solve(problem, 1, values, with_error=with_error)
  return sinkhorn_solve(problem, values, T=T, engine=engine, with_error=with_error, tol=tol,
                        anneal=anneal)


def split_coupling(problem: Problem, *, normalization: str, T: int, engine,
                   reference_rows: bool = False) -> jax.Array:
  """The split form's row-stochastic coupling ``[..., N, M]`` (dense engines).

  ``reference_rows``: the two-sided coupling as the reference codes normalize it, the
  geometric mean's ``exp`` divided by its row sum floored at 1e-12, so that a row whose
  every entry underflows contributes no drift; else (default) a softmax of the log,
  exact for such rows (tiny ``tau``).
  """
  if normalization == "two_sided" and reference_rows:
    return row_normalize(geometric_mean(problem.dense_logits(), problem.log_a, problem.log_b))
  if normalization == "two_sided":
    return jax.nn.softmax(geometric_mean_log(problem.dense_logits(), problem.log_a,
                                             problem.log_b), axis=-1)
  return engine.coupling(problem, _steps(normalization, T))


def joint_weights(problem: Problem, n_pos: int, *, normalization: str, T: int, tol=None,
                  anneal=()):
  """Algorithm 2's cross weights over ``[pos | neg]``.

  Args:
    problem: dense problem over the concatenated columns ``[..., N, n_pos + M_neg]``.
    n_pos: number of positive columns (static).
    normalization: the coupling ``A``: row softmax, geometric mean, or the Sinkhorn
      plan after ``T`` half-steps (not row-normalized; log domain).
    T: Sinkhorn half-steps.
    tol, anneal: the Sinkhorn stopping tolerance and annealing (:func:`sinkhorn_solve`).

  Returns:
    ``(W_pos [..., N, n_pos], W_neg [..., N, M_neg], A [..., N, n_pos + M_neg],
    half_steps [...], g [..., n_pos + M_neg] or None)``: ``g`` the Sinkhorn plan's column
    log-scaling.
  """
  L = problem.dense_logits()
  half = problem_lib.plain_half_steps(problem.batch_shape, _steps(normalization, T))
  g = None
  if normalization == "one_sided":
    A = jax.nn.softmax(L + problem.log_b[..., None, :], axis=-1)
  elif normalization == "two_sided":
    A = geometric_mean(L, problem.log_a, problem.log_b)
  else:
    if anneal:
      problem = problem.starting_from(start_lib.annealed_start(problem, anneal))
    f, g, half = log_engine.potentials(problem, T - 2 * len(anneal), tol)
    half = half + 2 * len(anneal)
    A = jnp.exp(L + f[..., :, None] + g[..., None, :])
  a_pos, a_neg = A[..., :n_pos], A[..., n_pos:]
  return (a_pos * jnp.sum(a_neg, axis=-1, keepdims=True),
          a_neg * jnp.sum(a_pos, axis=-1, keepdims=True), A, half, g)


def joint_column_errors(A: jax.Array, n_pos: int, log_target: jax.Array):
  """``(err_pos [...], err_neg [...])``: the L1 distances of the columns of the joint
  coupling ``A`` rescaled to unit mass from the target ``[..., n_pos + M_neg]``
  (normalized), per block."""
  mass = jnp.sum(A, axis=(-2, -1), keepdims=True)
  cols = jnp.sum(A / jnp.maximum(mass, _MIN_ROW_MASS), axis=-2)
  err = jnp.abs(cols - problem_lib.normalized(log_target))
  return jnp.sum(err[..., :n_pos], -1), jnp.sum(err[..., n_pos:], -1)


def rms_normalized_sum(drift_at: Callable, taus: jax.Array, *, normalize: bool = True,
                       min_mean_square: float = 0.0):
  """Deng et al.'s sum over temperatures, each drift divided by its RMS.

  Args:
    drift_at: ``tau -> (V, *extras)``.
    taus: ``[K]`` temperatures; a sequential ``lax.map`` keeps one temperature's
      matrices alive at a time.
    normalize: divide each ``V`` by its RMS (else the plain sum).
    min_mean_square: floor of ``mean(V^2)`` (the reference codes' 1e-12); 0 means a
      drift that is exactly zero stays zero.

  Returns:
    ``(sum_k V_k / rms_k, rms [K], extras stacked along K)``.
  """
  def one(tau):
    V, *extras = drift_at(tau)
    mean_square = jnp.mean(V * V)
    if min_mean_square > 0:
      rms = jnp.sqrt(jnp.maximum(mean_square, min_mean_square))
      scaled = V / rms
    else:
      rms = jnp.sqrt(mean_square)
      scaled = jnp.where(rms > 0, V / jnp.where(rms > 0, rms, 1.0), 0.0)
    return (scaled if normalize else V), rms, *extras

  Vs, rms, *extras = jax.lax.map(one, taus)
  return jnp.sum(Vs, axis=0), rms, extras
