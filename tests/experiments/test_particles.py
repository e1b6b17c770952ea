"""experiments.particles: the particle grid, compiled once per panel."""
import os

import pytest

import experiments
from tests.helpers import compiles_of, load



@pytest.mark.heavy
def test_particles_smoke_and_one_compiled_flow_per_panel(tmp_path):
  two, n_two = compiles_of(lambda: experiments.run_experiment(
      load("particles.py", "smoke"), str(tmp_path / "two")))
  assert len(two["records"]) == 2 * 5
  assert os.path.exists(two["grid"])
  recs = {(r["tau"], r["panel"]): r for r in two["records"]}
  assert all(r["finite"] for r in recs.values())
  assert os.path.exists(tmp_path / "two" / "metrics.jsonl")
  # One temperature against two against three: the flows compile once per panel, so more
  # temperatures add no compilation (per (tau, panel) would add 5 per temperature).
  _, n_one = compiles_of(lambda: experiments.run_experiment(
      load("particles.py", "smoke,taus=(0.1,)"), str(tmp_path / "one")))
  three, n_three = compiles_of(lambda: experiments.run_experiment(
      load("particles.py", "smoke,taus=(0.1,0.5,1.0)"), str(tmp_path / "three")))
  assert len(three["records"]) == 3 * 5
  assert n_one >= 5, n_one  # at least the five panels' flows
  assert n_two == n_one and n_three == n_one, (n_one, n_two, n_three)


def test_unknown_panel_and_bad_taus_are_refused(tmp_path):
  p = load("particles.py", "smoke")
  p.particles.panels = ("sinkhorn", "softmax")
  with pytest.raises(ValueError, match="unknown config.particles.panels entry 'softmax'"):
    experiments.run_experiment(p, str(tmp_path))
  p = load("particles.py", "smoke")
  p.particles.taus = (0.1, 0.0)
  with pytest.raises(ValueError, match=r"config.particles.taus = 0: must be a finite number > 0"):
    experiments.run_experiment(p, str(tmp_path))
