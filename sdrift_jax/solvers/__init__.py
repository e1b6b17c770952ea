"""Sinkhorn engines behind one contract (:mod:`sdrift_jax.solvers.problem`).

``algorithm=X`` runs the module ``X``: :mod:`~sdrift_jax.solvers.log` (plain log domain),
:mod:`~sdrift_jax.solvers.scaling` (scaling domain with log-domain absorption) or
:mod:`~sdrift_jax.solvers.blocked` (row tiles, costs recomputed: no ``N x M`` matrix).
:mod:`~sdrift_jax.solvers.ot` holds the entropic OT value and the Sinkhorn divergence.
"""
from sdrift_jax.solvers import blocked, log, scaling, start
from sdrift_jax.solvers.problem import Problem, Result
from sdrift_jax.solvers.select import ALGORITHMS, resolve_algorithm

#: The engines by ``algorithm`` name.
ENGINES = {"log": log, "scaling": scaling, "blocked": blocked}

__all__ = ["ALGORITHMS", "ENGINES", "Problem", "Result", "blocked", "log", "resolve_algorithm",
           "scaling", "start"]
