"""The Sinkhorn drift computed by ott-jax's solver, for cross-checks and benchmarks.

ott-jax counts full iterations that each do a column update and then a row update, from
zero potentials. The paper's ``T = 2n + 1`` half-steps (row first, row last) are the
same as ott's ``n`` iterations started from the potentials of one row step, which is
what :func:`ott_drift_field` passes as ``init``. Squared Euclidean cost only (ott's
``SqEuclidean``, whose ``epsilon`` is our ``tau``).
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

try:
  with warnings.catch_warnings():
    # ott-jax imports jaxopt, which warns about its own deprecation.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ott.geometry import pointcloud
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn
except ImportError as e:  # an optional dependency: only this cross-check needs it
  raise ImportError("sdrift_jax.drift.ott_reference needs ott-jax, an optional "
                    'dependency: pip install "sdrift_jax[ott]"') from e

__all__ = ["ott_drift_field"]


def _barycentric_projection(x, y, tau, n_iterations):
  geom = pointcloud.PointCloud(x, y, epsilon=tau)
  C = geom.cost_matrix
  n, m = C.shape
  logits = -C / tau
  if n_iterations == 0:
    g = jnp.zeros((m,), C.dtype)
  else:
    # ott's potentials are tau times log-scalings with the marginals absorbed.
    f0 = tau * (jnp.log(1.0 / n) - logsumexp(logits - jnp.log(m), axis=1))
    solver = ott_sinkhorn.Sinkhorn(min_iterations=n_iterations, max_iterations=n_iterations,
                                   inner_iterations=1, threshold=-1.0)
    out = solver(linear_problem.LinearProblem(geom), init=(f0, jnp.zeros((m,), C.dtype)))
    g = out.g
  P = jax.nn.softmax(logits + g[None, :] / tau, axis=1)
  return P @ y


@functools.partial(jax.jit, static_argnames=("T",))
def ott_drift_field(x, y_pos, y_neg, tau, T):
  """Sinkhorn drift with ``T`` half-iterations (odd, or rounded up) via ott-jax.

  Args:
    x: array of shape ``[N, d]``.
    y_pos: array of shape ``[M_pos, d]``.
    y_neg: array of shape ``[M_neg, d]``.
    tau: temperature, ott's ``epsilon``.
    T: half-iterations; ``T // 2`` ott iterations are run.

  Returns:
    Array of shape ``[N, d]``.
  """
  return (_barycentric_projection(x, y_pos, tau, T // 2)
          - _barycentric_projection(x, y_neg, tau, T // 2))
