"""Particle drifts (paper Sec. 5.1, Fig. 1 and 5, the project page animations).

    python -m experiments.run --config=configs/particles.py
    python -m experiments.run --config=configs/particles.py:smoke

N = 100 source points from N(0, 1.5^2 I) flow toward 100 fixed target points from four
Gaussians at (+-3, +-3) (std 0.5) by x += eta V(x), y_neg = x, for each temperature and
each panel (one-sided, one-sided + mask, two-sided, two-sided + mask, Sinkhorn with the
reference code's 100 iterations, T = 201). Gaussian kernel exp(-|x - y|^2 / tau).
Variants: ``smoke`` (few steps, two temperatures, no GIF); ``key=value`` for fields of
``particles`` (e.g. ``steps=75``).
"""
import ml_collections

from experiments import config_lib
from sdrift_jax.training import objectives


VARIANTS = {
    "smoke": "20 steps, two temperatures, no GIF: seconds",
}


def get_config(arg=None):
  flags, assignments = config_lib.parse_variant(arg)
  config_lib.check_unknown_flags(flags, VARIANTS, "configs/particles.py")
  c = ml_collections.ConfigDict()
  c.experiment = "particles"
  c.seed = 0
  c.particles = ml_collections.ConfigDict(dict(
      num_points=100,
      source_std=1.5,
      eta=0.1,
      steps=500,
      taus=(0.01, 0.1, 1.0, 10.0),
      panels=("one_sided", "one_sided+mask", "two_sided", "two_sided+mask", "sinkhorn"),
      T=201,
      cost="sqeuclidean",
      gif=True,
      gif_steps=500,
      gif_every=5,
  ))
  # The Sinkhorn panel's convergence controls (the baselines have no half-steps).
  c.drift = ml_collections.ConfigDict(objectives.CONVERGENCE_DEFAULTS)
  if "smoke" in flags:
    c.particles.steps = 20
    c.particles.taus = (0.1, 1.0)
    c.particles.T = 21
    c.particles.gif = False
  config_lib.apply_assignments(c, assignments, {k: f"particles.{k}" for k in c.particles})
  return c
