"""experiments.sweep: the grid of settings, each setting's config (axes, then the mask
rule), its directory, and the fields a sweep sets refused as overrides."""
import os
import re

import pytest

import experiments
from experiments import sweep, toy
from tests.helpers import cli, load
from sdrift_jax.training import objectives


def test_settings_are_the_product_of_the_axes_in_order():
  c = load("toy.py", "smoke,targets=(moons,spiral),taus=(0.05,0.1),normalizations=(one_sided,sinkhorn)")
  grid = sweep.settings(c, toy.AXES)
  assert len(grid) == 2 * 1 * 2 * 2
  assert grid[0] == dict(target="moons", cost="sqeuclidean", tau=0.05, normalization="one_sided")
  assert grid[-1] == dict(target="spiral", cost="sqeuclidean", tau=0.1, normalization="sinkhorn")
  assert [g["normalization"] for g in grid[:2]] == ["one_sided", "sinkhorn"]  # last axis fastest
  c.sweep.taus = ()
  with pytest.raises(ValueError, match=r"config.sweep.taus must be a non-empty tuple"):
    sweep.settings(c, toy.AXES)


def test_setting_config_applies_each_axis_to_a_copy():
  c = load("toy.py", "smoke")
  setting = dict(target="moons", cost="euclidean", tau=0.05, normalization="two_sided")
  sub = sweep.setting_config(c, setting, toy.AXES)
  assert (sub.data.target, sub.drift.cost, sub.drift.tau, sub.drift.normalization) == (
      "moons", "euclidean", 0.05, "two_sided")
  assert (c.data.target, c.drift.tau) == ("8gaussians", 0.1)  # the sweep's config unchanged
  assert isinstance(sweep.setting_config(c, dict(setting, tau=1), toy.AXES).drift.tau, float)



def test_the_pixel_recipe_masks_the_sinkhorn_self_coupling():
  from experiments import mnist_pixels
  c = load("mnist_pixels.py", "smoke")
  subs = {m: sweep.setting_config(c, dict(tau=0.02, method=m), mnist_pixels.AXES)
          for m in ("baseline", "sinkhorn")}
  assert subs["sinkhorn"].drift.mask_self is True and subs["sinkhorn"].loss.form == "split"
  assert subs["baseline"].drift.mask_self is True and subs["baseline"].loss.form == "joint"
  c.sinkhorn.mask_self = False
  assert sweep.setting_config(c, dict(tau=0.02, method="sinkhorn"),
                              mnist_pixels.AXES).drift.mask_self is False


@pytest.mark.parametrize("variant", ["sweep", "tau=0.05"])
def test_tau_axis_mixes_single_temperatures_and_tuples(variant):
  # The pixel config's default tau is a tuple of three; single ones must apply too.
  c = load("mnist_pixels.py", variant)
  axes = (sweep.tau_axis(), sweep.method_axis())
  taus = [sweep.setting_config(c, s, axes).drift.tau for s in sweep.settings(c, axes)]
  want = [t for t in c.sweep.taus for _ in range(2)]
  assert taus == [tuple(t) if isinstance(t, (list, tuple)) else t for t in want]
  assert any(isinstance(t, float) for t in taus)

def test_setting_dir_names_each_axis_value():
  setting = dict(target="moons", cost="euclidean", tau=0.05, normalization="two_sided")
  assert sweep.setting_dir("/w", setting, toy.AXES) == "/w/moons/euclidean/tau0.05/two_sided"
  assert sweep.tau_axis().dirname((0.05, 0.1)) == "tau0.05+0.1"
  assert sweep.tau_axis().dirname(1.0) == "tau1"


@pytest.mark.parametrize("variant,normalization,masked", [
    ("reference", "sinkhorn", False),
    ("reference,normalization=one_sided", "one_sided", True),
    ("reference,normalization=two_sided", "two_sided", True),
    ("reference,drift.mask_self=False,normalization=one_sided", "one_sided", False),
    (None, "sinkhorn", False),
    ("normalization=one_sided", "one_sided", False),
])
def test_toy_self_mask_follows_the_normalization_in_single_runs(variant, normalization,
                                                                 masked):
  c = load("toy.py", variant)
  (setting,) = sweep.settings(c, toy.AXES)
  sub = sweep.setting_config(c, setting, toy.AXES)
  assert sub.drift.normalization == normalization
  assert sub.drift.mask_self is masked
  assert objectives.make_objective(sub).spec.mask_self is masked


def test_toy_self_mask_after_a_command_line_override():
  c = load("toy.py", "reference")  # --config.sweep.normalizations=... after get_config
  c.sweep.normalizations = ("two_sided",)
  (setting,) = sweep.settings(c, toy.AXES)
  assert sweep.setting_config(c, setting, toy.AXES).drift.mask_self is True
  c.sweep.normalizations = ("sinkhorn",)
  (setting,) = sweep.settings(c, toy.AXES)
  assert sweep.setting_config(c, setting, toy.AXES).drift.mask_self is False


def test_toy_self_mask_in_the_reference_sweep():
  c = load("toy.py", "reference,fig2")
  setting = dict(target="8gaussians", cost="sqeuclidean", tau=0.1)
  for norm in c.sweep.normalizations:
    sub = sweep.setting_config(c, dict(setting, normalization=norm), toy.AXES)
    assert sub.drift.mask_self is (norm != "sinkhorn")
  plain = load("toy.py", "fig2")
  assert not any(sweep.setting_config(plain, dict(setting, normalization=n), toy.AXES)
                 .drift.mask_self for n in plain.sweep.normalizations)


def test_method_axis_and_mask_rule():
  c = load("mnist.py", "smoke,reference")
  base = sweep.setting_config(c, dict(kernel="gaussian", tau=0.01, method="baseline"),
                              (sweep.kernel_axis(), sweep.tau_axis(), sweep.method_axis()))
  assert base.drift.normalization == c.baseline.normalization
  assert base.drift.mask_self is bool(c.baseline.mask_self) and base.loss.form == "joint"
  sk = sweep.setting_config(c, dict(kernel="laplacian", tau=0.01, method="sinkhorn"),
                            (sweep.kernel_axis(), sweep.tau_axis(), sweep.method_axis()))
  assert (sk.drift.normalization, sk.drift.mask_self, sk.loss.form, sk.drift.cost) == (
      "sinkhorn", False, "split", "euclidean")
  c.sinkhorn.mask_self = True  # asked for: the Sinkhorn self-coupling loses its diagonal
  masked = sweep.setting_config(c, dict(kernel="laplacian", tau=0.01, method="sinkhorn"),
                                (sweep.kernel_axis(), sweep.tau_axis(), sweep.method_axis()))
  assert masked.drift.mask_self is True
  with pytest.raises(ValueError, match="unknown method 'ddpm'"):
    sweep.method_axis().apply(c, "ddpm")
  with pytest.raises(ValueError, match="unknown kernel 'cauchy'"):
    sweep.kernel_axis().apply(c, "cauchy")


def test_every_setting_is_checked_before_anything_runs(tmp_path):
  c = load("toy.py", "smoke,taus=(0.1,0.0)")
  ran = []
  with pytest.raises(ValueError, match="tau must be positive"):
    sweep.run_sweep(c, str(tmp_path), axes=toy.AXES,
                    run_setting=lambda *a: ran.append(a) or {}, write_table=None, dim=2,
                    conditional=False)
  assert ran == [] and not os.listdir(tmp_path)


def test_run_sweep_runs_each_setting_in_its_dir_and_keeps_the_table(tmp_path):
  c = load("toy.py", "smoke,taus=(0.05,0.1)")
  ran, tables = [], []
  results = sweep.run_sweep(
      c, str(tmp_path), axes=toy.AXES,
      run_setting=lambda sub, run_dir, ctx: ran.append((sub.drift.tau, run_dir, ctx)) or dict(x=1),
      write_table=lambda cfg, wd, results, ctx, seconds, planned: tables.append(
          (len(results), planned)),
      dim=2, conditional=False, prepare=lambda cfg, wd: "context")
  assert [r[0] for r in ran] == [0.05, 0.1] and all(r[2] == "context" for r in ran)
  assert ran[0][1] == os.path.join(str(tmp_path), "8gaussians", "sqeuclidean", "tau0.05",
                                   "sinkhorn")
  assert tables == [(1, 2), (2, 2)]
  assert results[1] == dict(x=1, target="8gaussians", cost="sqeuclidean", tau=0.1,
                            normalization="sinkhorn")
  assert os.path.exists(tmp_path / "sweep_config.json")


def test_a_later_sweep_keeps_the_settings_an_earlier_one_started(tmp_path):
  def sweep_of(taus):
    ran, tables = [], []

    def run_setting(sub, run_dir, ctx):
      os.makedirs(run_dir, exist_ok=True)
      ran.append(sub.drift.tau)
      return dict(x=1)
    sweep.run_sweep(load("toy.py", f"smoke,taus={taus}"), str(tmp_path), axes=toy.AXES,
                    run_setting=run_setting,
                    write_table=lambda cfg, wd, results, ctx, seconds, planned: tables.append(
                        ([r["tau"] for r in results], planned)),
                    dim=2, conditional=False)
    return ran, tables[-1]
  assert sweep_of("(0.05,0.1)") == ([0.05, 0.1], ([0.05, 0.1], 2))
  # Other values: the earlier settings stay in the table (before: only 0.2's row).
  assert sweep_of("(0.2,0.1)") == ([0.05, 0.2, 0.1], ([0.05, 0.2, 0.1], 3))
  # A setting recorded but never started (no run directory) is not kept.
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(tmp_path / "8gaussians" / "sqeuclidean" / "tau0.05")
  assert sweep_of("(0.1,)") == ([0.2, 0.1], ([0.2, 0.1], 2))


def test_a_workdir_of_another_experiment_is_refused(tmp_path):
  (tmp_path / "sweep_config.json").write_text('{"experiment": "toy"}')
  with pytest.raises(ValueError, match=r"holds a run of experiment 'toy'.*another --workdir"):
    experiments.run_experiment(load("particles.py", "smoke"), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ["sweep_config.json"]


@pytest.mark.parametrize("name,key,value,match", [
    ("toy.py", "optim.name", "adamm", "unknown config.optim.name 'adamm'"),
    ("toy.py", "optim.schedule", "cosin", "unknown config.optim.schedule 'cosin'"),
    ("toy.py", "model.activation", "rellu", "rellu"),
    ("toy.py", "model.init", "flaxx", "flaxx"),
    ("particles.py", "particles.cost", "gausian", "gausian"),
])
def test_a_misspelled_name_is_refused_before_anything_is_written(tmp_path, name, key, value,
                                                                 match):
  c = load(name, "smoke")
  block, field = key.split(".")
  c[block][field] = value
  with pytest.raises(ValueError, match=match):
    experiments.run_experiment(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_a_damaged_top_config_is_refused_not_overwritten(tmp_path):
  (tmp_path / "sweep_config.json").write_text('{"experiment": "to')
  with pytest.raises(ValueError, match=r"sweep_config.json is damaged .*restore or delete it"):
    experiments.run_experiment(load("particles.py", "smoke"), str(tmp_path))
  assert (tmp_path / "sweep_config.json").read_text() == '{"experiment": "to'


@pytest.mark.parametrize("name,arg,match", [
    ("mnist.py", "smoke,drift.tau=0.05", "set tau=... or sweep.taus instead"),
    ("latents.py", "smoke,drift.normalization=one_sided", "sweep.methods"),
    ("toy.py", "fig2,drift.tau=0.05", "set sweep.taus instead"),
    ("toy.py", "smoke,drift.tau=0.05", "set sweep.taus instead"),
    ("toy.py", "smoke,data.target=moons", "set sweep.targets instead"),
    ("toy.py", "smoke,drift.normalization=one_sided", "set sweep.normalizations instead"),
    ("toy.py", "smoke,drift.cost=euclidean", "set sweep.costs instead"),
])
def test_fields_a_sweep_sets_are_refused(name, arg, match):
  with pytest.raises(ValueError, match="is set per sweep setting.*" + re.escape(match)):
    load(name, arg)
  # The short key sets the one-value axis, which takes effect.
  assert load("toy.py", "smoke,tau=0.05").sweep.taus == (0.05,)


@pytest.mark.heavy
@pytest.mark.parametrize("args,field", [
    (["--config=configs/mnist.py:smoke", "--config.drift.tau=0.05"], "drift.tau"),
    (["--config=configs/toy.py:smoke", "--config.drift.tau=0.05"], "drift.tau"),
    (["--config=configs/toy.py:smoke", "--config.drift.normalization=one_sided"],
     "drift.normalization"),
])
def test_fields_a_sweep_sets_are_refused_on_the_command_line(args, field):
  out = cli(*args, "--workdir=/nonexistent")
  assert out.returncode == 2 and f"{field} is set per sweep setting" in out.stderr, out.stderr


def test_what_prepare_refuses_leaves_nothing_written(tmp_path):
  def prepare(config, workdir):
    raise FileNotFoundError("no data")
  with pytest.raises(FileNotFoundError, match="no data"):
    sweep.run_sweep(load("toy.py", "smoke"), str(tmp_path / "w"), axes=toy.AXES,
                    run_setting=None, write_table=None, dim=2, conditional=False,
                    prepare=prepare)
  assert not (tmp_path / "w").exists()
