"""experiments.run (the command line: --help, usage errors, exit codes) and the
experiment registry (experiments/__init__.py)."""
import os
import sys

import pytest

import experiments
from tests.helpers import cli, holder, load

# Registry -------------------------------------------------------------------------------


def test_every_experiment_is_registered_by_name():
  assert {"toy", "mnist", "latents", "particles"} <= set(experiments.names())
  from experiments import toy  # pylint: disable=g-import-not-at-top
  assert experiments.get("toy") is toy.run


def test_unknown_experiment_lists_the_names(tmp_path):
  c = load("toy.py", "smoke")
  c.experiment = "cifar"
  with pytest.raises(ValueError, match=r"unknown config.experiment 'cifar': expected one of "
                     r"\[") as e:
    experiments.run_experiment(c, str(tmp_path))
  for name in ("latents", "mnist", "particles", "toy"):
    assert repr(name) in str(e.value)
  assert not os.listdir(tmp_path)
  with pytest.raises(ValueError, match="must name an experiment"):
    experiments.get("")


def _plugin_dir(tmp_path, monkeypatch, name, text):
  """A directory holding ``<name>.py``, searched as part of the experiments package."""
  plugins = tmp_path / "plugins"
  plugins.mkdir()
  (plugins / f"{name}.py").write_text(text)
  monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(plugins)])
  monkeypatch.delitem(sys.modules, f"experiments.{name}", raising=False)


def test_a_new_module_registering_itself_is_found_by_name(tmp_path, monkeypatch):
  name = "zz_test_plugin"
  _plugin_dir(tmp_path, monkeypatch, name,
              "import experiments\n\n"
              f"@experiments.register({name!r})\n"
              "def run(config, workdir):\n"
              "  return ('ran', config.experiment, workdir)\n")
  monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments._REGISTRY))
  c = load("toy.py", "smoke")
  c.experiment = name
  workdir = str(tmp_path / "w")
  assert experiments.run_experiment(c, workdir) == ("ran", name, workdir)
  assert name in experiments.names()
  with pytest.raises(ValueError, match="registered twice"):
    experiments.register(name)(lambda config, workdir: None)


def test_a_broken_experiment_module_is_not_reported_as_unknown(tmp_path, monkeypatch):
  name = "zz_test_broken"
  _plugin_dir(tmp_path, monkeypatch, name, "import no_such_module_xyz\n")
  c = load("toy.py", "smoke")
  c.experiment = name
  with pytest.raises(ModuleNotFoundError, match="no_such_module_xyz"):
    experiments.run_experiment(c, str(tmp_path / "w"))


# Command line ---------------------------------------------------------------------------


@pytest.mark.heavy
def test_locked_config_rejects_mistyped_key_on_command_line(tmp_path):
  proc = cli("--config=configs/toy.py:smoke", "--config.drift.tua=0.1", f"--workdir={tmp_path}",
             timeout=120)
  assert proc.returncode != 0
  assert "tua" in proc.stderr


@pytest.mark.heavy
@pytest.mark.parametrize("args,match", [
    (["--config=configs/nope.py"], "no config file 'configs/nope.py'"),
    (["--config=configs/toy.py:smok"], "unknown variant(s) ['smok']"),
    (["--config=configs/toy.py:smoke,T=1.5"], "cannot set '1.5': expected an integer"),
    (["--config=configs/toy.py:smoke,tau=abc"], "cannot set 'abc'"),
    (["--config=configs/mnist.py:smoke,tau=abc"], "cannot set 'abc'"),
    (["--config=configs/toy.py:smoke", "--config.drift.tua=0.1"],
     "unknown config key 'drift.tua'"),
    (["--config=configs/toy.py:smoke", "--config.drift.T=1.5"], "config.drift.T=1.5"),
    (["--config=configs/toy.py:smoke", "--no_such_flag"], "no_such_flag"),
    ([], "--config is required"),
    (["--config=configs/toy.py:smoke", "--config=configs/mnist.py:smoke"],
     "--config given 2 times"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(tmp_path, args, match):
  out = cli(*args, f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 2, out.stderr
  assert "Traceback" not in out.stderr and match in out.stderr, out.stderr
  assert len(out.stderr.strip().splitlines()) == 2  # the error and the usage line
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.heavy
def test_cli_run_errors_are_two_lines_and_debug_shows_the_traceback(tmp_path):
  out = cli("--config=configs/toy.py:smoke,tau=0", f"--workdir={tmp_path}")
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-2] == (
      "error: bad config.drift: tau must be positive and finite, got 0.0")
  out = cli("--config=configs/toy.py:smoke,tau=0", f"--workdir={tmp_path}",
            env=dict(SDRIFT_DEBUG="1"))
  assert out.returncode == 1 and "Traceback" in out.stderr


@pytest.mark.heavy
def test_cli_help_lists_every_config_and_variant():
  out = cli("--help")
  assert out.returncode == 0
  for name in ("toy", "mnist", "latents", "ffhq_alae", "particles"):
    assert f"configs/{name}.py" in out.stdout
  for variant in (":smoke", ":fig2", ":appj", ":table1", ":table3", ":reference",
                  ":scale_free"):
    assert variant in out.stdout


@pytest.mark.heavy
def test_cli_into_a_held_workdir_exits_at_once_with_one_line(tmp_path):
  proc = holder(tmp_path)
  try:
    out = cli("--config=configs/toy.py:smoke", f"--workdir={tmp_path}")
  finally:
    proc.kill()
    proc.wait()
  assert out.returncode == 1
  lines = out.stderr.strip().splitlines()
  assert len(lines) <= 2 and f"in use by pid {proc.pid}" in out.stderr, out.stderr


def test_default_workdir_names_config_and_variant():
  from experiments import run  # pylint: disable=g-import-not-at-top
  assert run.default_workdir("configs/toy.py") == os.path.join("workdirs", "toy")
  assert run.default_workdir("configs/toy.py:smoke,taus=(0.1,0.2)") == os.path.join(
      "workdirs", "toy_smoke_taus=_0.1_0.2_")
