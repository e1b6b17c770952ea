"""The config blocks of the training objectives: ``config.loss``, ``config.guidance``,
the convergence controls of ``config.drift``, their defaults and the defaults of
workdirs written before a block existed (:mod:`sdrift_jax.training.objectives` builds
the objective from them)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

__all__ = ["CONVERGENCE_DEFAULTS", "FORMER_DEFAULTS", "config_tau", "guidance_config",
           "loss_config", "sample_omega"]

# Defaults of the blocks; a field that the objective ignores must keep these.
_LOSS_DEFAULTS = dict(objective="drift_field", form="split", feature_scale=True,
                      normalize=True, unit_vectors=False, uncond_marginal="weighted_cols",
                      aggregate_kernels=False)
_GUIDANCE_DEFAULTS = dict(num_uncond=0, omega_min=1.0, omega_max=4.0, omega_exponent=3.0,
                          eval_omega=1.0)


#: The Sinkhorn convergence controls of ``config.drift``, off: every experiment config's
#: drift block holds them (``tol`` 0 and ``anneal_start`` 0 are off).
CONVERGENCE_DEFAULTS = dict(warm_start=False, tol=0.0, anneal_start=0.0, anneal_decay=0.8)

# Workdirs written before these blocks existed hold runs of exactly these values.
FORMER_DEFAULTS = {**{f"drift.{k}": v for k, v in CONVERGENCE_DEFAULTS.items()},
                   **{f"loss.{k}": v for k, v in _LOSS_DEFAULTS.items()},
                   **{f"guidance.{k}": v for k, v in _GUIDANCE_DEFAULTS.items()}}


def loss_config(**overrides) -> ml_collections.ConfigDict:
  """``config.loss``: ``objective`` and the options of :func:`sdrift_jax.feature_drift`
  that ``config.drift`` does not hold (``form``, ``feature_scale``, ``normalize``,
  ``unit_vectors``, ``uncond_marginal``, ``aggregate_kernels``)."""
  return ml_collections.ConfigDict({**_LOSS_DEFAULTS, **overrides})


def guidance_config(**overrides) -> ml_collections.ConfigDict:
  """``config.guidance``: ``num_uncond`` unconditional negatives per group (0 = no CFG),
  the training distribution of ``omega`` (density ``omega^-omega_exponent`` on
  ``[omega_min, omega_max]``) and ``eval_omega``, the strength samples are drawn at."""
  return ml_collections.ConfigDict({**_GUIDANCE_DEFAULTS, **overrides})


def _block(config, name, defaults):
  block = config.get(name)
  values = dict(defaults)
  if block is not None:
    unknown = set(block.keys()) - set(defaults)
    if unknown:
      raise ValueError(f"unknown field(s) {sorted(unknown)} in config.{name}; "
                       f"known: {sorted(defaults)}")
    values.update(block.to_dict())
  return values


def sample_omega(key, omega_min: float, omega_max: float, exponent: float) -> jax.Array:
  """One ``omega`` with density proportional to ``omega^-exponent`` on
  ``[omega_min, omega_max]`` (inverse CDF; log-uniform for exponent 1); a constant when
  the range is a point."""
  if omega_max == omega_min:
    return jnp.asarray(omega_min, jnp.float32)
  u = jax.random.uniform(key)
  if exponent == 1.0:
    return omega_min * jnp.exp(u * math.log(omega_max / omega_min))
  a = 1.0 - exponent
  lo, hi = omega_min ** a, omega_max ** a
  return (lo + u * (hi - lo)) ** (1.0 / a)



def config_tau(drift_config):
  """``config.drift.tau``: a float, or a tuple of floats for several temperatures."""
  tau = drift_config.tau
  return tuple(float(t) for t in tau) if isinstance(tau, (list, tuple)) else float(tau)
