"""Training objectives: what one train step regresses the generator onto.

Two objectives, chosen by ``config.loss.objective``:

* ``'drift_field'`` (the paper's eq. 7): ``V = drift_field(x, y_pos, x, ...)`` per group
  in data units, loss ``0.5 mean_i |x_i - sg(x_i + V_i)|^2``; temperatures absolute
  (or relative with ``config.drift.relative_tau``).
* ``'feature_drift'`` (the reference codes' loss, :mod:`sdrift_jax.loss`): each group's
  samples are one feature set ``[B, 1, d]``; scale-free temperatures, per-temperature
  normalization, the split or joint form, and classifier-free guidance: ``U``
  unconditional negatives drawn from all classes' data and one ``omega`` per step, drawn
  from a power law on ``[omega_min, omega_max]`` and fed to the generator.

Config blocks: ``config.drift`` (normalization, T, tau, cost, mask_self, algorithm,
relative_tau), ``config.loss`` (objective and the feature-drift options) and
``config.guidance`` (num_uncond, omega range and exponent, eval_omega). A value that the
chosen objective does not use must keep its default: :func:`check_objective_config`
refuses it otherwise, so that no setting is silently dropped.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sdrift_jax import drift as drift_lib
from sdrift_jax import loss as loss_lib

__all__ = ["OBJECTIVES", "Objective", "loss_config", "guidance_config",
           "check_objective_config", "make_objective", "sample_omega"]

OBJECTIVES = ("drift_field", "feature_drift")

# Defaults of the blocks; a field that the objective ignores must keep these.
_LOSS_DEFAULTS = dict(objective="drift_field", form="split", feature_scale=True,
                      normalize=True, unit_vectors=False, uncond_marginal="weighted_cols",
                      aggregate_kernels=False)
_GUIDANCE_DEFAULTS = dict(num_uncond=0, omega_min=1.0, omega_max=4.0, omega_exponent=3.0,
                          eval_omega=1.0)


# Workdirs written before these blocks existed hold runs of exactly these values.
FORMER_DEFAULTS = {**{f"loss.{k}": v for k, v in _LOSS_DEFAULTS.items()},
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


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss of one train step and its diagnostics, from a config.

  Attributes:
    name: ``'drift_field'`` or ``'feature_drift'``.
    drift_kwargs: keyword arguments of :func:`sdrift_jax.drift_field` (``drift_field``).
    feature_kwargs: keyword arguments of :func:`sdrift_jax.feature_drift`
      (``feature_drift``; ``tau`` included).
    num_uncond: unconditional negatives per group (0: no guidance).
    omega_range: ``(min, max, exponent)`` of the training ``omega``.
    eval_omega: the ``omega`` samples are drawn at.
  """
  name: str
  drift_kwargs: dict
  feature_kwargs: dict
  num_uncond: int
  omega_range: tuple
  eval_omega: float

  @property
  def guided(self) -> bool:
    return self.num_uncond > 0

  def sample_omega(self, key) -> jax.Array:
    return sample_omega(key, *self.omega_range)

  def batch_loss(self, x, y_pos, y_uncond=None, omega=None):
    """Loss of a step over ``G`` groups: ``x [G, B, d]`` (differentiated), ``y_pos
    [G, P, d]``, ``y_uncond [G, U, d]`` or None, ``omega`` scalar or None. Returns
    ``(loss, drift_rms)``, each the mean over groups (of the per-group loss and of the
    squared drift norms)."""
    if self.name == "drift_field":
      # One vmapped drift and one loss over all G * B samples: the computation (and so
      # the rounding) of the trainer before the objectives existed.
      sg = jax.lax.stop_gradient
      V = jax.vmap(lambda x, y: drift_lib.drift_field(x, y, x, **self.drift_kwargs))(sg(x),
                                                                                      y_pos)
      x2, V2 = x.reshape(-1, x.shape[-1]), V.reshape(-1, x.shape[-1])
      loss = 0.5 * jnp.mean(jnp.sum(jnp.square(x2 - sg(x2 + V2)), axis=-1))
      return loss, jnp.sqrt(jnp.mean(jnp.sum(V2 * V2, -1)))
    if y_uncond is None:
      losses, rms = jax.vmap(lambda x, y: self.group_loss(x, y))(x, y_pos)
    else:
      losses, rms = jax.vmap(lambda x, y, u: self.group_loss(x, y, u, omega))(x, y_pos,
                                                                              y_uncond)
    return jnp.mean(losses), jnp.sqrt(jnp.mean(rms * rms))

  def group_loss(self, x, y_pos, y_uncond=None, omega=1.0):
    """Loss and drift RMS of one group: ``x [B, d]`` (differentiated), ``y_pos [P, d]``,
    ``y_uncond [U, d]`` or None, ``omega`` scalar. Returns ``(loss, drift_rms)``."""
    if self.name == "drift_field":
      V = drift_lib.drift_field(jax.lax.stop_gradient(x), y_pos, jax.lax.stop_gradient(x),
                                **self.drift_kwargs)
      target = jax.lax.stop_gradient(x + V)
      loss = 0.5 * jnp.mean(jnp.sum(jnp.square(x - target), axis=-1))
      return loss, jnp.sqrt(jnp.mean(jnp.sum(V * V, -1)))
    out = loss_lib.feature_drift(x, y_pos, y_uncond, omega=omega, **self.feature_kwargs)
    return (loss_lib.regression_loss(x, out),
            jnp.sqrt(jnp.mean(jnp.sum(out.drift * out.drift, -1))))

  def marginal_errors(self, x, y):
    """``[2]``: the largest marginal error of the positive and negative couplings of one
    group (``x [n, d]``, ``y [m, d]``, no guidance)."""
    if self.name == "drift_field":
      info = drift_lib.drift_field_with_info(x, y, x, **self.drift_kwargs)
    else:
      info = loss_lib.feature_drift(x, y, None, **self.feature_kwargs)
    return jnp.stack([jnp.max(info.marginal_error_pos), jnp.max(info.marginal_error_neg)])


def _tau(drift_config):
  tau = drift_config.tau
  return tuple(float(t) for t in tau) if isinstance(tau, (list, tuple)) else float(tau)


def make_objective(config) -> Objective:
  """The :class:`Objective` named by ``config`` (checked: see
  :func:`check_objective_config`)."""
  loss = _block(config, "loss", _LOSS_DEFAULTS)
  guidance = _block(config, "guidance", _GUIDANCE_DEFAULTS)
  drift = config.drift
  name = loss["objective"]
  if name not in OBJECTIVES:
    raise ValueError(f"unknown config.loss.objective {name!r}: expected one of {OBJECTIVES}")
  if name == "drift_field":
    changed = sorted(f"loss.{k}" for k, v in loss.items()
                     if k != "objective" and v != _LOSS_DEFAULTS[k])
    changed += sorted(f"guidance.{k}" for k, v in guidance.items()
                      if v != _GUIDANCE_DEFAULTS[k])
    if changed:
      raise ValueError(f"config {changed} apply to config.loss.objective='feature_drift' "
                       "only; the 'drift_field' objective would ignore them")
    kw = dict(tau=_tau(drift), T=int(drift.T), normalization=drift.normalization,
              cost=drift.cost, mask_self=bool(drift.mask_self),
              algorithm=drift.get("algorithm", "auto"),
              relative_tau=bool(drift.get("relative_tau", False)))
    return Objective(name, kw, {}, 0, (1.0, 1.0, 1.0), 1.0)
  if drift.get("relative_tau", False):
    raise ValueError("config.drift.relative_tau applies to the 'drift_field' objective; "
                     "'feature_drift' temperatures are relative through "
                     "config.loss.feature_scale")
  algorithm = drift.get("algorithm", "auto")
  if algorithm == "blocked":
    raise ValueError("config.drift.algorithm='blocked' is not available for the "
                     "'feature_drift' objective; use 'auto', 'scaling' or 'log'")
  kw = dict(tau=_tau(drift), T=int(drift.T), normalization=drift.normalization,
            cost=drift.cost, mask_self=bool(drift.mask_self), algorithm=algorithm,
            **{k: loss[k] for k in ("form", "feature_scale", "normalize", "unit_vectors",
                                    "uncond_marginal", "aggregate_kernels")})
  num_uncond = int(guidance["num_uncond"])
  if num_uncond < 0:
    raise ValueError(f"config.guidance.num_uncond must be >= 0, got {num_uncond}")
  lo, hi, a = (float(guidance[k]) for k in ("omega_min", "omega_max", "omega_exponent"))
  if not (0 < lo <= hi):
    raise ValueError(f"config.guidance needs 0 < omega_min <= omega_max, got {lo}, {hi}")
  if not num_uncond and (lo, hi, a, float(guidance["eval_omega"])) != (1.0, 4.0, 3.0, 1.0):
    raise ValueError("config.guidance omega settings need config.guidance.num_uncond > 0 "
                     "(without unconditional negatives omega changes nothing)")
  if not num_uncond and loss["uncond_marginal"] != _LOSS_DEFAULTS["uncond_marginal"]:
    raise ValueError("config.loss.uncond_marginal applies to the unconditional negatives "
                     "of classifier-free guidance; set config.guidance.num_uncond > 0")
  if (num_uncond and loss["uncond_marginal"] == "none" and drift.normalization == "sinkhorn"
      and lo <= 1.0):
    raise ValueError(
        "config.loss.uncond_marginal='none' with Sinkhorn needs omega > 1 at every step "
        f"(omega = 1 empties the unconditional columns: infeasible marginals); "
        f"config.guidance.omega_min is {lo}")
  return Objective(name, {}, kw, num_uncond, (lo, hi, a) if num_uncond else (1.0, 1.0, 1.0),
                   float(guidance["eval_omega"]) if num_uncond else 1.0)


def check_objective_config(config, dim: int = 2, conditional: bool = False) -> Objective:
  """Builds the objective and runs its argument checks on dummy data; raises a ValueError
  naming the config block on a bad value."""
  objective = make_objective(config)  # its errors name their config keys
  dummy = np.zeros((3, dim), np.float32)
  try:
    if objective.name == "drift_field":
      drift_lib._prepare(dummy, dummy, None, weights_x=None, weights_pos=None,
                         weights_neg=None, **objective.drift_kwargs)
    else:
      loss_lib._prepare(dummy, dummy, dummy if objective.guided else None,
                        omega=2.0, **objective.feature_kwargs)
  except (ValueError, TypeError) as e:
    blocks = "config.drift" if objective.name == "drift_field" else "config.drift / config.loss"
    raise ValueError(f"bad {blocks}: {e}") from None
  if objective.guided and not conditional:
    raise ValueError("config.guidance.num_uncond > 0 (classifier-free guidance) needs a "
                     "class-conditional problem")
  return objective
