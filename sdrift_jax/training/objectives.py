"""Training objectives: what one train step regresses the generator onto.

Two objectives, chosen by ``config.loss.objective``:

* ``'drift_field'`` (the paper's eq. 7): ``V = drift_field(x, y_pos, x, ...)`` per group
  in data units, loss ``0.5 mean_i |x_i - sg(x_i + V_i)|^2``; temperatures absolute
  (or relative with ``config.drift.relative_tau``).
* ``'feature_drift'`` (the reference codes' loss, :mod:`sdrift_jax.drift.loss`): each group's
  samples are one feature set ``[B, 1, d]``; scale-free temperatures, per-temperature
  normalization, the split or joint form, and classifier-free guidance: ``U``
  unconditional negatives drawn from all classes' data and one ``omega`` per step, drawn
  from a power law on ``[omega_min, omega_max]`` and fed to the generator.

Config blocks: ``config.drift`` (normalization, T, tau, cost, mask_self, algorithm,
relative_tau, and the Sinkhorn convergence controls ``tol`` (0 = off), ``anneal_start``
(0 = off) / ``anneal_decay`` and ``warm_start``: each step's couplings start from the
previous step's potentials, carried per seed, group, feature set and temperature in the
checkpointed train state), ``config.loss`` (objective and the feature-drift options) and
``config.guidance`` (num_uncond, omega range and exponent, eval_omega). A value that the
chosen objective does not use must keep its default: :func:`check_objective_config`
refuses it otherwise, so that no setting is silently dropped.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from sdrift_jax.drift import loss as loss_lib
from sdrift_jax import validation
from sdrift_jax.drift import spec as spec_lib
from sdrift_jax.drift.spec import DriftSpec
from sdrift_jax.training.objective_config import (
    _GUIDANCE_DEFAULTS, _LOSS_DEFAULTS, CONVERGENCE_DEFAULTS, FORMER_DEFAULTS, _block,
    config_tau, guidance_config, loss_config, sample_omega)

__all__ = ["CONVERGENCE_DEFAULTS", "OBJECTIVES", "Objective", "loss_config", "guidance_config",
           "check_objective_config", "config_tau", "make_objective", "sample_omega"]

OBJECTIVES = ("drift_field", "feature_drift")

@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss of one train step and its diagnostics, from a config.

  The temperature is an argument of every method, not a field: a trainer passes it into
  its compiled step as a traced value, so a sweep over ``tau`` compiles the step once.

  Attributes:
    name: ``'drift_field'`` or ``'feature_drift'``.
    spec: the :class:`sdrift_jax.DriftSpec` of ``drift_field`` (``None`` for
      ``feature_drift``).
    feature_kwargs: keyword arguments of :func:`sdrift_jax.feature_drift` but ``tau``
      and ``omega`` (``feature_drift``).
    tau: the config's temperature: a float, or a tuple for several temperatures.
    num_uncond: unconditional negatives per group (0: no guidance).
    omega_range: ``(min, max, exponent)`` of the training ``omega``.
    eval_omega: the ``omega`` samples are drawn at.
    features: ``None``, or a frozen encoder ``(feature_params, x [n, d]) -> {name:
      [n, L, C]}`` (:attr:`sdrift_jax.training.Problem.features`, set with
      :meth:`with_features`): the loss is then the sum over its feature sets of each
      set's feature-drift loss, averaged over groups, and the methods take the encoder's
      parameters as ``feature_params``.
  """
  name: str
  spec: Optional[DriftSpec]
  feature_kwargs: dict
  tau: Union[float, tuple]
  num_uncond: int
  omega_range: tuple
  eval_omega: float
  features: Optional[Callable[..., dict]] = None
  warm_start: bool = False
  controls: bool = False  # any of tol, anneal, warm_start: half-steps are logged

  def with_features(self, features) -> "Objective":
    """This objective drifting the feature sets of ``features`` (``None``: the samples
    themselves); only the ``'feature_drift'`` objective has feature sets."""
    if features is not None and self.name != "feature_drift":
      raise ValueError("a problem with a feature encoder needs config.loss.objective = "
                       f"'feature_drift' (the loss over feature sets), got {self.name!r}")
    return dataclasses.replace(self, features=features)

  def feature_sets(self, x, feature_params, grad: bool = True) -> dict:
    """``x [G, n, d]`` -> ``{name: [G, n, L, C]}`` through the encoder (all groups in
    one batch); the encoder's parameters get no gradient, and with ``grad=False`` neither
    does ``x`` (the positives and unconditional negatives)."""
    sg = jax.lax.stop_gradient
    G, n, d = x.shape
    sets = self.features(sg(feature_params), (x if grad else sg(x)).reshape(G * n, d))
    if not sets:
      raise ValueError("the problem's feature encoder returned no feature sets")
    return {k: v.reshape(G, n, *v.shape[1:]) for k, v in sets.items()}

  @property
  def guided(self) -> bool:
    return self.num_uncond > 0

  def tau_array(self, tau=None) -> np.ndarray:
    """``tau`` (default: the config's) as the array the methods take: a float32 scalar,
    or ``[K]`` for several temperatures (each drift then RMS-normalized and summed)."""
    tau = self.tau if tau is None else tau
    multi = isinstance(tau, (list, tuple))
    if multi != isinstance(self.tau, (list, tuple)) or (
        multi and len(tau) != len(self.tau)):
      raise ValueError(f"tau {tau!r} does not have the shape of the config's {self.tau!r}")
    return np.asarray(tau, np.float32)

  def sample_omega(self, key) -> jax.Array:
    return sample_omega(key, *self.omega_range)

  def batch_loss(self, x, y_pos, y_uncond, omega, tau, feature_params=None):
    """Loss of a step over ``G`` groups: ``x [G, B, d]`` (differentiated), ``y_pos
    [G, P, d]``, ``y_uncond [G, U, d]`` or None, ``omega`` scalar or None, ``tau`` from
    :meth:`tau_array` (may be traced), ``feature_params`` the encoder's (with
    :attr:`features`). Returns ``(loss, drift_rms)``, each the mean over groups (of the
    per-group loss and of the squared drift norms); with feature sets the loss is summed
    over the sets and the drift RMS taken over all of them."""
    return self.step_loss(x, y_pos, y_uncond, omega, tau, feature_params)[:2]

  def step_loss(self, x, y_pos, y_uncond, omega, tau, feature_params=None,
                drift_state=None):
    """:meth:`batch_loss` with the convergence controls: ``(loss, drift_rms, state,
    half_steps)``. With :attr:`warm_start`, ``drift_state`` (None: cold) is where the
    couplings start and ``state`` what the next step takes (per group, and per feature
    set as a dict); else ``state`` is None. ``half_steps``: the most any coupling used."""
    if self.features is not None:
      xs = self.feature_sets(x, feature_params)
      ys = (y_pos if isinstance(y_pos, dict)  # a memory bank's feature sets
            else self.feature_sets(y_pos, feature_params, grad=False))
      us = (None if y_uncond is None
            else self.feature_sets(y_uncond, feature_params, grad=False))
      total, sq, states, half = 0.0, 0.0, {}, jnp.int32(0)
      for k in sorted(xs):
        loss, rms, states[k], h = self._groups_loss(
            xs[k], ys[k], None if us is None else us[k], omega, tau,
            None if drift_state is None else drift_state[k])
        total, sq, half = total + loss, sq + rms * rms, jnp.maximum(half, h)
      return total, jnp.sqrt(sq / len(xs)), (states if self.warm_start else None), half
    if self.name == "drift_field":
      # One vmapped drift and one loss over all G * B samples.
      sg = jax.lax.stop_gradient

      def one(x, y, st):
        info = self.spec.with_info(x, y, x, tau, init=st, with_state=self.warm_start,
                                   with_error=False)
        return info.drift, info.state, jnp.max(info.half_steps)
      V, state, half = jax.vmap(one, in_axes=(0, 0, None if drift_state is None else 0))(
          sg(x), y_pos, drift_state)
      x2, V2 = x.reshape(-1, x.shape[-1]), V.reshape(-1, x.shape[-1])
      loss = 0.5 * jnp.mean(jnp.sum(jnp.square(x2 - sg(x2 + V2)), axis=-1))
      return loss, jnp.sqrt(jnp.mean(jnp.sum(V2 * V2, -1))), state, jnp.max(half)
    return self._groups_loss(x, y_pos, y_uncond, omega, tau, drift_state)

  def _groups_loss(self, x, y_pos, y_uncond, omega, tau, drift_state=None):
    """The feature-drift loss vmapped over groups: mean loss, RMS drift, state, most
    half-steps."""
    axis = None if drift_state is None else 0
    if y_uncond is None:
      losses, rms, state, half = jax.vmap(
          lambda x, y, st: self.group_step(x, y, None, 1.0, tau, st),
          in_axes=(0, 0, axis))(x, y_pos, drift_state)
    else:
      losses, rms, state, half = jax.vmap(
          lambda x, y, u, st: self.group_step(x, y, u, omega, tau, st),
          in_axes=(0, 0, 0, axis))(x, y_pos, y_uncond, drift_state)
    return jnp.mean(losses), jnp.sqrt(jnp.mean(rms * rms)), state, jnp.max(half)

  def group_loss(self, x, y_pos, y_uncond, omega, tau):
    """Loss and drift RMS of one group: ``x [B, d]`` or one feature set ``[B, L, C]``
    (differentiated), ``y_pos`` and ``y_uncond`` (or None) alike, ``omega`` scalar,
    ``tau``. Returns ``(loss, drift_rms)``."""
    return self.group_step(x, y_pos, y_uncond, omega, tau)[:2]

  def group_step(self, x, y_pos, y_uncond, omega, tau, drift_state=None):
    """:meth:`group_loss` with the convergence controls: ``(loss, drift_rms, state,
    half_steps)`` (state None without :attr:`warm_start`)."""
    if self.name == "drift_field":
      sg = jax.lax.stop_gradient
      info = self.spec.with_info(sg(x), y_pos, sg(x), tau, init=drift_state,
                                 with_state=self.warm_start, with_error=False)
      V = info.drift
      loss = 0.5 * jnp.mean(jnp.sum(jnp.square(x - sg(x + V)), axis=-1))
      return (loss, jnp.sqrt(jnp.mean(jnp.sum(V * V, -1))), info.state,
              jnp.max(info.half_steps))
    out = loss_lib.feature_drift(x, y_pos, y_uncond, tau=tau, omega=omega,
                                 with_state=self.warm_start, init=drift_state,
                                 **self.feature_kwargs)
    return (loss_lib.regression_loss(x, out),
            jnp.sqrt(jnp.mean(jnp.sum(out.drift * out.drift, -1))), out.state,
            jnp.max(out.half_steps))

  def marginal_errors(self, x, y, tau, feature_params=None):
    """``[2]``: the largest marginal error of the positive and negative couplings of one
    group (``x [n, d]``, ``y [m, d]``, no guidance); with feature sets, the largest over
    the sets."""
    if self.features is not None:
      xs = self.feature_sets(x[None], feature_params, grad=False)
      ys = self.feature_sets(y[None], feature_params, grad=False)
      errs = [self._marginal_errors(xs[k][0], ys[k][0], tau) for k in sorted(xs)]
      return jnp.max(jnp.stack(errs), axis=0)
    return self._marginal_errors(x, y, tau)

  def _marginal_errors(self, x, y, tau):
    if self.name == "drift_field":
      info = self.spec.with_info(x, y, x, tau)
    else:
      info = loss_lib.feature_drift(x, y, None, tau=tau, with_state=False,
                                    **self.feature_kwargs)
    return jnp.stack([jnp.max(info.marginal_error_pos), jnp.max(info.marginal_error_neg)])


def make_objective(config, copies: int = 1) -> Objective:
  """The :class:`Objective` named by ``config`` (checked: see
  :func:`check_objective_config`); ``copies``: the seeds x groups a trainer vmaps over
  (see :class:`sdrift_jax.DriftSpec`)."""
  loss = _block(config, "loss", _LOSS_DEFAULTS)
  guidance = _block(config, "guidance", _GUIDANCE_DEFAULTS)
  drift = config.drift
  name = loss["objective"]
  if name not in OBJECTIVES:
    raise ValueError(f"unknown config.loss.objective {name!r}: expected one of {OBJECTIVES}")
  controls = spec_lib.controls_of(drift)
  warm_start = drift.get("warm_start", False)
  if not isinstance(warm_start, bool):
    raise ValueError(f"config.drift.warm_start must be a bool, got {warm_start!r}")
  on = [k for k, v in (("tol", controls["tol"]), ("anneal_start", controls["anneal"]),
                       ("warm_start", warm_start or None)) if v is not None]
  if on and drift.normalization != "sinkhorn":
    raise ValueError(f"config.drift.{', '.join(on)} control Sinkhorn half-steps; "
                     f"normalization {drift.normalization!r} has none")
  extra = dict(warm_start=warm_start, controls=bool(on))
  if name == "drift_field":
    changed = sorted(f"loss.{k}" for k, v in loss.items()
                     if k != "objective" and v != _LOSS_DEFAULTS[k])
    changed += sorted(f"guidance.{k}" for k, v in guidance.items()
                      if v != _GUIDANCE_DEFAULTS[k])
    if changed:
      raise ValueError(f"config {changed} apply to config.loss.objective='feature_drift' "
                       "only; the 'drift_field' objective would ignore them")
    try:
      spec = DriftSpec.from_config(drift, copies=copies)
    except ValueError as e:
      raise ValueError(f"bad config.drift: {e}") from None
    return Objective(name, spec, {}, config_tau(drift), 0, (1.0, 1.0, 1.0), 1.0, **extra)
  if drift.get("relative_tau", False):
    raise ValueError("config.drift.relative_tau applies to the 'drift_field' objective; "
                     "'feature_drift' temperatures are relative through "
                     "config.loss.feature_scale")
  algorithm = drift.get("algorithm", "auto")
  if algorithm == "blocked":
    raise ValueError("config.drift.algorithm='blocked' is not available for the "
                     "'feature_drift' objective; use 'auto', 'scaling' or 'log'")
  kw = dict(T=drift.T, normalization=drift.normalization,
            cost=drift.cost, mask_self=bool(drift.mask_self), algorithm=algorithm,
            **controls,
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
  omega_range = (lo, hi, a) if num_uncond else (1.0, 1.0, 1.0)
  eval_omega = float(guidance["eval_omega"]) if num_uncond else 1.0
  return Objective(name, None, kw, config_tau(drift), num_uncond, omega_range, eval_omega,
                   **extra)


def check_objective_config(config, dim: int = 2, conditional: bool = False) -> Objective:
  """Builds the objective and traces one loss on dummy data (``jax.eval_shape``: nothing
  runs), so that every argument check of the drift or loss runs now; raises a ValueError
  naming the config block on a bad value."""
  objective = make_objective(config)  # its errors name their config keys
  if objective.guided and not conditional:
    raise ValueError("config.guidance.num_uncond > 0 (classifier-free guidance) needs a "
                     "class-conditional problem")
  x = jax.ShapeDtypeStruct((1, 3, dim), jnp.float32)
  y_unc = x if objective.guided else None
  omega = 2.0 if objective.guided else None
  try:
    # tau checked here, concretely: inside eval_shape the constant is a tracer, which the
    # drift cannot check (a tau of 0 would otherwise train into a non-finite loss).
    validation.as_tau(objective.tau)
    jax.eval_shape(lambda x, y, u: objective.batch_loss(x, y, u, omega, objective.tau_array()),
                   x, x, y_unc)
  except (ValueError, TypeError) as e:
    blocks = "config.drift" if objective.name == "drift_field" else "config.drift / config.loss"
    raise ValueError(f"bad {blocks}: {e}") from None
  return objective
