"""The particle experiment (paper Sec. 5.1, Fig. 1 and 5): Euler steps ``x += eta V(x)``
with ``y_neg = x``, for every (temperature, normalization panel) pair.

The flow of a panel is compiled once, with the temperature as an argument, so the grid
compiles once per panel, not once per (temperature, panel).
"""
from __future__ import annotations

import functools
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import experiments
from sdrift_jax import costs as costs_lib
from sdrift_jax.evaluation import metrics as metrics_lib
from experiments import plotting
from sdrift_jax.training import objectives
from sdrift_jax.training import workdir as workdir_lib
from experiments.data import toy
from sdrift_jax.drift import spec as spec_lib
from sdrift_jax.drift.spec import DriftSpec
from sdrift_jax.drift.warm import DriftState

log = logging.getLogger("sdrift_jax")

#: Panel name -> (normalization, mask_self).
PANELS = {
    "one_sided": ("one_sided", False),
    "one_sided+mask": ("one_sided", True),
    "two_sided": ("two_sided", False),
    "two_sided+mask": ("two_sided", True),
    "sinkhorn": ("sinkhorn", False),
}


def flow(x0, target, tau, spec: DriftSpec, *, steps: int, eta: float,
         record_every: int = 1, warm_start: bool = False, with_half_steps: bool = False):
  """Runs the particle flow; returns the trajectory ``[steps // record_every + 1, N, d]``
  (and with ``with_half_steps`` the half-steps of every step, ``[steps]``). ``tau`` may
  be traced. ``warm_start``: each step's couplings start from the previous step's
  (the particles persist, so the potentials carry well)."""
  def step(carry, _):
    x, state = carry
    if not (warm_start or with_half_steps):
      return (x + eta * spec(x, target, x, tau), state), (x, jnp.int32(spec.T))
    info = spec.with_info(x, target, x, tau, init=state, with_state=warm_start,
                          with_error=False)
    x = x + eta * info.drift
    return (x, info.state if warm_start else state), (x, info.half_steps)

  def block(carry, _):
    carry, (xs, halfs) = jax.lax.scan(step, carry, None, length=record_every)
    return carry, (xs[-1], halfs)

  state = DriftState.cold(x0.shape, dtype=x0.dtype) if warm_start else None
  _, (traj, halfs) = jax.lax.scan(block, (x0, state), None, length=steps // record_every)
  traj = jnp.concatenate([x0[None], traj], axis=0)
  return (traj, halfs.reshape(-1)) if with_half_steps else traj


@experiments.register("particles")
def run(config, workdir: str) -> dict:
  """Runs every panel at every temperature; writes the grid figure, one GIF per tau and
  ``metrics.jsonl`` (final W2^2 per panel)."""
  c = config.particles
  panels = list(c.panels)
  for p in panels:
    if p not in PANELS:
      raise ValueError(f"unknown config.particles.panels entry {p!r}: expected {tuple(PANELS)}")
  taus = [float(t) for t in c.taus]
  drift_block = config.get("drift")
  controls = spec_lib.controls_of(drift_block) if drift_block is not None else {}
  warm_start = bool(drift_block.get("warm_start", False)) if drift_block is not None else False
  if drift_block is not None and not isinstance(drift_block.get("warm_start", False), bool):
    raise ValueError("config.drift.warm_start must be a bool")
  unknown = set(drift_block.keys() if drift_block is not None else ()) - set(
      objectives.CONVERGENCE_DEFAULTS)
  if unknown:
    raise ValueError(f"unknown field(s) {sorted(unknown)} in config.drift of the particles "
                     f"experiment; known: {sorted(objectives.CONVERGENCE_DEFAULTS)}")
  for t in taus:
    if not t > 0 or not np.isfinite(t):
      raise ValueError(f"config.particles.taus must be positive and finite, got {t}")
  costs_lib.canonical_cost(c.cost)  # a typo refused before anything is written
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.atomic_write(os.path.join(workdir, "config.json"),
                           config.to_json(indent=2, sort_keys=True))
  source, target = toy.particle_clouds(jax.random.key(int(config.seed)), n=int(c.num_points),
                                       source_std=float(c.source_std))
  flows = {}  # one compiled flow per panel, the temperature an argument
  for p in panels:
    normalization, mask = PANELS[p]
    sinkhorn = normalization == "sinkhorn"
    spec = DriftSpec(normalization=normalization, T=c.T, cost=c.cost, mask_self=mask,
                     **(controls if sinkhorn else {}))
    flows[p] = jax.jit(functools.partial(
        flow, spec=spec, steps=int(c.steps), eta=float(c.eta),
        warm_start=warm_start and sinkhorn, with_half_steps=True))
  trajectories, w2 = [], []
  records = []
  for tau in taus:
    row_traj, row_w2 = [], []
    for p in panels:
      t0 = time.perf_counter()
      traj, halfs = flows[p](source, target, jnp.float32(tau))
      traj = np.asarray(traj)
      final = traj[-1]
      value = metrics_lib.w2_squared(final, target)
      row_traj.append(traj)
      row_w2.append(value)
      rec = dict(tau=tau, panel=p, w2=value, finite=bool(np.all(np.isfinite(final))),
                 seconds=time.perf_counter() - t0,
                 mean_half_steps=float(np.mean(np.asarray(halfs))))
      records.append(rec)
      log.info("particles tau=%g %-15s W2^2 %.4f (%.1fs)", tau, p, value, rec["seconds"])
    trajectories.append(row_traj)
    w2.append(row_w2)
  workdir_lib.write_jsonl(os.path.join(workdir, "metrics.jsonl"), records)
  grid = os.path.join(workdir, "particles_grid.png")
  plotting.particle_grid(trajectories, source, target, taus, panels, grid, w2=w2)
  gifs = []
  if c.gif:
    for tau, row in zip(taus, trajectories):
      path = os.path.join(workdir, f"particles_tau{tau:g}.gif")
      frames = [t[: int(c.gif_steps) + 1] for t in row]
      plotting.particle_animation(frames, source, target, panels, tau, path,
                                  every=int(c.gif_every))
      gifs.append(path)
  log.info("particle grid: %s", grid)
  return dict(records=records, grid=grid, gifs=gifs)
