"""The argument checks the drift fronts share: options, self-mask, feature sets, omega.

Each raises a ValueError naming the argument; values known only under ``jax.jit``
(tracers) pass the checks that need concrete values.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from sdrift_jax import costs as costs_lib
from sdrift_jax import solvers
from sdrift_jax import validation
from sdrift_jax.drift import couplings

__all__ = ["as_feature_set", "check_omega", "check_options", "has_blocked_path",
           "same_points"]


def check_options(normalization, form, T, cost, mask_self, algorithm, relative_tau):
  """The options of a drift, checked and canonical: ``(normalization, form, T, cost)``.

  Raises:
    ValueError: naming the bad option.
  """
  normalization, form = couplings.canonical_form(normalization, form)
  T = validation.check_T(T)
  cost = costs_lib.canonical_cost(cost)
  validation.check_choice(algorithm, solvers.ALGORITHMS, "algorithm")
  for name, flag in (("mask_self", mask_self), ("relative_tau", relative_tau)):
    if not isinstance(flag, bool):
      raise ValueError(f"{name} must be a bool, got {flag!r}")
  if algorithm == "blocked" and not has_blocked_path(normalization, form):
    raise ValueError(f"algorithm='blocked' supports the split form with normalization "
                     f"'sinkhorn' or 'one_sided', got {normalization!r}, form {form!r}")
  return normalization, form, T, cost


def has_blocked_path(normalization, form):
  return form == "split" and normalization in ("sinkhorn", "one_sided")


def same_points(x, y) -> bool:
  """``y`` is ``x``, or (concrete arrays) equal to it; traced arrays cannot be compared
  at trace time and pass (docs/reliability.md, known limits)."""
  if y is x or validation.is_traced(x) or validation.is_traced(y):
    return True
  return bool(np.array_equal(np.asarray(x), np.asarray(y)))


def as_feature_set(v, name, L=None, C=None):
  """A feature set as ``[n, L, C]`` (``[n, C]`` is ``L = 1``), floating, with ``x``'s
  ``L`` and ``C`` when given."""
  if v is None:
    raise ValueError(f"{name} must be an array of shape [n, L, C] or [n, C], got None")
  if not hasattr(v, "dtype"):
    v = np.asarray(v)
  if v.ndim == 2:
    v = v[:, None, :]
  if v.ndim != 3:
    raise ValueError(f"{name} must have shape [n, L, C] or [n, C], got {tuple(v.shape)}")
  if not jnp.issubdtype(v.dtype, jnp.floating):
    raise ValueError(f"{name} must have a floating dtype, got {v.dtype}")
  if L is not None and tuple(v.shape[1:]) != (L, C):
    raise ValueError(f"{name} must have L={L}, C={C} like x, got shape {tuple(v.shape)}")
  return jnp.asarray(v)


def check_omega(omega):
  """The guidance strength: a finite real scalar (integers as the default float)."""
  if isinstance(omega, (str, bytes)) or omega is None:
    raise ValueError(f"omega must be a real number, got {omega!r}")
  arr = jnp.asarray(omega)
  if arr.ndim != 0 or not (jnp.issubdtype(arr.dtype, jnp.floating)
                           or jnp.issubdtype(arr.dtype, jnp.integer)):
    raise ValueError(f"omega must be a real scalar, got {omega!r}")
  if not validation.is_traced(arr) and not math.isfinite(float(arr)):
    raise ValueError(f"omega must be finite, got {float(arr)}")
  # An integer omega becomes the default float (float64 under x64, where a float32 omega
  # would round the CFG weight of float64 features); the core casts it to the features'.
  return arr.astype(jnp.result_type(float)) if jnp.issubdtype(arr.dtype, jnp.integer) else arr
