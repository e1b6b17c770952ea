"""Argument checks shared by the public functions.

Every check runs at trace time (on shapes, dtypes and static values) and raises a
``ValueError`` that names the argument and what was expected. Values that are traced
(a ``tau`` passed into a jitted caller, say) cannot be inspected and are not checked.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["as_point_cloud", "as_tau", "as_weights", "check_choice", "check_finite",
           "check_same_dim", "check_T", "is_traced"]


def is_traced(v) -> bool:
  return isinstance(v, jax.core.Tracer)


def as_point_cloud(v, name: str) -> jax.Array:
  """Checks that ``v`` is a non-empty float array of shape ``[n, d]``."""
  if v is None:
    raise ValueError(f"{name} must be an array of shape [n, d], got None")
  if not hasattr(v, "dtype"):
    v = np.asarray(v)
  if v.ndim != 2:
    raise ValueError(f"{name} must have shape [n, d] (rank 2), got shape {tuple(v.shape)}")
  if v.shape[0] == 0 or v.shape[1] == 0:
    raise ValueError(f"{name} must be non-empty, got shape {tuple(v.shape)}")
  if not jnp.issubdtype(v.dtype, jnp.floating):
    raise ValueError(f"{name} must have a floating dtype, got {v.dtype}")
  return jnp.asarray(v)


def check_same_dim(**clouds) -> None:
  """Checks that all point clouds share their last dimension."""
  dims = {name: c.shape[1] for name, c in clouds.items()}
  if len(set(dims.values())) > 1:
    detail = ", ".join(f"{k} has d={v}" for k, v in dims.items())
    raise ValueError(f"point clouds must share the dimension d: {detail}")


def check_T(T) -> int:
  """Checks that ``T`` (half-iterations) is a static Python integer >= 1."""
  if is_traced(T):
    raise ValueError("T must be a static Python int (it sets the loop length), got a traced value")
  if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
    raise ValueError(f"T must be an int >= 1 (Sinkhorn half-iterations), got {T!r}")
  if T < 1:
    raise ValueError(f"T must be >= 1 (Sinkhorn half-iterations; T=1 is one-sided), got {T}")
  return int(T)


def as_tau(tau) -> tuple[jax.Array, bool]:
  """Checks ``tau`` and returns it as a 1-D array plus whether it was a sequence.

  Args:
    tau: a positive finite scalar, or a non-empty 1-D sequence of them.

  Returns:
    ``(taus, is_sequence)`` with ``taus`` of shape ``[K]``.
  """
  if tau is None:
    raise ValueError("tau must be a positive finite number or a sequence of them, got None")
  items = tau if isinstance(tau, (list, tuple)) else [tau]
  for t in items:
    if isinstance(t, (str, bytes, bool)) or not (
        is_traced(t) or isinstance(t, (int, float, np.number, np.ndarray, jax.Array))):
      raise ValueError(f"tau must be a positive number or a sequence of them, got {t!r}")
    _check_representable(t)
  if isinstance(tau, (list, tuple)):
    if len(tau) == 0:
      raise ValueError("tau must not be an empty sequence")
    arr = jnp.stack([jnp.asarray(t) for t in tau])
    seq = True
  else:
    arr = jnp.asarray(tau)
    seq = arr.ndim == 1
  if arr.ndim > 1 or (seq and arr.shape[0] == 0):
    raise ValueError(f"tau must be a scalar or a non-empty 1-D sequence, got shape {arr.shape}")
  if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
    raise ValueError(f"tau must be a real number, got dtype {arr.dtype}")
  if not is_traced(arr):
    values = np.atleast_1d(np.asarray(arr, dtype=np.float64))
    for t in values:
      if not math.isfinite(t) or t <= 0:
        raise ValueError(f"tau must be positive and finite, got {t}")
  return jnp.atleast_1d(arr), seq


def _check_representable(t) -> None:
  """Refuses a concrete Python or NumPy ``tau`` that the dtype JAX converts it to cannot
  hold (``1e300`` in float32): the conversion would make it ``inf`` or ``0``, and the error
  would report that value instead of the one given."""
  if is_traced(t) or isinstance(t, jax.Array):
    return
  given = np.asarray(t)
  if given.dtype.kind == "f":
    dtype = jax.dtypes.canonicalize_dtype(given.dtype)
    with np.errstate(over="ignore", under="ignore"):
      converted = given.astype(dtype)
    info = np.finfo(dtype)
    for v, c in zip(given.ravel().astype(np.float64), converted.ravel()):
      if math.isfinite(v) and v > 0 and not (math.isfinite(c) and c > 0):
        hint = "; enable jax_enable_x64 for float64" if info.bits < 64 else ""
        raise ValueError(
            f"tau must be positive and finite, got {float(v)!r}, which {dtype.name} cannot "
            f"represent (positive values from {float(info.smallest_subnormal):.3g} to "
            f"{float(info.max):.3g}{hint})")
  elif given.dtype.kind in "iuO" and np.ndim(t) == 0 and isinstance(t, (int, np.integer)):
    info = np.iinfo(jax.dtypes.canonicalize_dtype(np.int64))
    if int(t) > info.max:
      raise ValueError(f"tau must be positive and finite, got {int(t)}, which {info.dtype} "
                       f"cannot represent (at most {info.max}); give it as a float")


def as_weights(w, n: int, name: str):
  """Checks optional marginal weights of shape ``[n]`` (non-negative, any total mass)."""
  if w is None:
    return None
  if not hasattr(w, "dtype"):
    w = np.asarray(w)
  if w.shape != (n,):
    raise ValueError(f"{name} must have shape [{n}], got {tuple(w.shape)}")
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise ValueError(f"{name} must have a floating dtype, got {w.dtype}")
  if not is_traced(w):
    wn = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(wn)) or np.any(wn < 0) or wn.sum() <= 0:
      raise ValueError(f"{name} must be finite, non-negative and not all zero")
    # Kept concrete: inside a jitted caller jnp.asarray would make it a tracer, and the
    # drift could no longer see that the weights are positive (fast path).
    return np.asarray(w)
  return w


def check_choice(value, choices: Sequence[str], name: str) -> str:
  if not isinstance(value, str) or value not in choices:
    raise ValueError(f"unknown {name} {value!r}: expected one of {tuple(choices)}")
  return value


def _on_host(v) -> bool:
  if isinstance(v, np.ndarray):
    return True
  try:
    return all(d.platform == "cpu" for d in v.devices())
  except (AttributeError, RuntimeError):
    return False


@jax.jit
def _magnitudes(*arrays):
  """``[K]``: the largest magnitude of each array; NaN or inf if it holds one (max
  propagates NaN)."""
  return jnp.stack([jnp.max(jnp.abs(v)).astype(jnp.float32) for v in arrays])


def _magnitude_on_host(v) -> float:
  a = np.asarray(v)  # in place for host arrays
  return max(float(a.max()), -float(a.min()))  # two passes, no temporary; NaN propagates


def check_finite(check, **arrays) -> None:
  """Refuses NaN or inf in the point clouds ``arrays`` (name -> ``[n, ...]`` or None).

  One NaN or inf row makes every row of a drift NaN (it enters every normalization), so
  the first bad row is named here instead. Finite values so large that the pairwise cost
  ``|x - y|^2`` overflows the dtype (above about 1e19 in float32) do the same, and are
  refused too.

  Args:
    check: ``None`` checks concrete arrays and skips traced ones (inside ``jax.jit`` the
      values do not exist yet); ``True`` requires concrete arrays; ``False`` skips.

  Raises:
    ValueError: naming the argument and its first non-finite row; or ``check=True`` with
      traced arrays.
  """
  if check is not None and not isinstance(check, (bool, np.bool_)):
    raise ValueError(f"check_finite must be None, True or False, got {check!r}")
  arrays = {k: v for k, v in arrays.items() if v is not None}
  traced = any(is_traced(v) for v in arrays.values())
  if check is False or (check is None and traced):
    return
  if traced:
    raise ValueError("check_finite=True needs concrete arrays, but they are traced (inside "
                     "jax.jit): check them before the jitted call, or leave check_finite "
                     "at None")
  if all(_on_host(v) for v in arrays.values()):
    # Host memory: NumPy reads it in place, cheaper than a dispatch.
    magnitudes = [_magnitude_on_host(v) for v in arrays.values()]
  else:
    magnitudes = np.asarray(_magnitudes(*arrays.values())).tolist()  # one host sync
  for m, (name, v) in zip(magnitudes, arrays.items()):
    if not math.isfinite(m):
      bad = ~np.all(np.isfinite(np.asarray(v).reshape(v.shape[0], -1)), axis=1)
      rows = np.flatnonzero(bad)
      raise ValueError(f"{name} holds NaN or inf in row {rows[0]} ({len(rows)} of "
                       f"{v.shape[0]} rows); one such row makes the whole result NaN")
  largest = max(magnitudes)
  dtype = jnp.result_type(*arrays.values())
  limit = float(np.finfo(dtype).max)
  d = int(np.prod(next(iter(arrays.values())).shape[1:]))
  if 4.0 * d * largest * largest > limit:  # |x - y|^2 <= d (2 max|v|)^2
    name = next(n for m, n in zip(magnitudes, arrays) if m == largest)
    raise ValueError(f"{name} holds values up to {largest:.3g}: the pairwise cost "
                     f"|x - y|^2 can overflow {dtype} (max {limit:.3g}) and make the "
                     "result NaN; rescale the data (or compute in float64: "
                     "jax_enable_x64)")
