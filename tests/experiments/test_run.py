"""experiments.run (the command line: --help, usage errors, exit codes) and the
experiment registry (experiments/__init__.py)."""
import os
import re
import sys

import pytest

import experiments
from tests.helpers import ROOT, cli, holder, load

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


@pytest.mark.parametrize("name", ["run", "cli_args", "../x", "a.b", "_x", "toy.py"])
def test_a_module_that_is_no_experiment_is_unknown_and_not_imported(name, monkeypatch):
  # Not imported: experiments.run again would define its absl flags twice
  # (DuplicateFlagError), a path would import what it names.
  monkeypatch.delitem(sys.modules, "experiments.run", raising=False)
  monkeypatch.delitem(sys.modules, "experiments.cli_args", raising=False)
  with pytest.raises(ValueError, match=rf"unknown config.experiment {re.escape(repr(name))}: "
                     r"expected one of \[.*'toy'"):
    experiments.get(name)
  assert "experiments.run" not in sys.modules and "experiments.cli_args" not in sys.modules


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
  # The range check of the config or the drift's own check, whichever comes first.
  assert out.stderr.strip().splitlines()[-2] in (
      "error: config.sweep.taus = 0: must be a finite number > 0",
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
  assert "--restart: Move what the workdir holds to <workdir>.old-<time>/" in out.stdout


@pytest.mark.heavy
def test_cli_help_into_a_closed_pipe_is_quiet():  # python -m experiments.run --help | head -1
  import subprocess  # pylint: disable=g-import-not-at-top
  proc = subprocess.Popen([sys.executable, "-m", "experiments.run", "--help"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  proc.stdout.close()  # before the help is written
  assert proc.wait(timeout=120) == 0
  assert proc.stderr.read() == ""


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
  from experiments import cli_args  # pylint: disable=g-import-not-at-top
  assert cli_args.default_workdir("configs/toy.py") == os.path.join("workdirs", "toy")
  assert cli_args.default_workdir("configs/toy.py:smoke,taus=(0.1,0.2)") == os.path.join(
      "workdirs", "toy_smoke_taus=_0.1_0.2_")


# Errors of the user and of the environment (experiments/cli_args.py, cli_faults.py) ----


def _usage_lines(capsys, fn, *args):
  """Runs ``fn(*args)``, which must exit with a usage error; its stderr lines."""
  with pytest.raises(SystemExit) as e:
    fn(*args)
  assert e.value.code == 2
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 2 and lines[1].startswith("usage:"), lines
  return lines[0]


def test_extra_argument_empty_or_file_workdir_are_usage_errors(tmp_path, capsys):
  from experiments import cli_args  # pylint: disable=g-import-not-at-top
  assert _usage_lines(capsys, cli_args.check_arguments, ["run.py", "extra"], None) == (
      "error: unexpected argument(s) 'extra': every setting is a flag (--config.a.b=value) "
      "or in the variant (:key=value)")
  assert _usage_lines(capsys, cli_args.check_arguments, ["run.py"], "") == (
      "error: --workdir is empty: give a directory, or leave the flag out for "
      "workdirs/<config>")
  (tmp_path / "f").write_text("")
  assert _usage_lines(capsys, cli_args.check_arguments, ["run.py"], str(tmp_path / "f")) == (
      f"error: --workdir={tmp_path / 'f'} is a file, not a directory: choose another "
      "--workdir (or move the file)")
  cli_args.check_arguments(["run.py"], str(tmp_path))  # a directory, new or not, is fine
  cli_args.check_arguments(["run.py"], str(tmp_path / "new"))


def test_a_config_file_that_is_not_a_python_config_is_a_usage_error(tmp_path, capsys):
  from experiments import cli_args  # pylint: disable=g-import-not-at-top
  (tmp_path / "notes.md").write_text("# not python\n")
  (tmp_path / "broken.py").write_text("def get_config(:\n")
  (tmp_path / "empty.py").write_text("x = 1\n")
  for name, match in (("notes.md", "is not a Python config file"),
                      ("broken.py", "SyntaxError"), ("empty.py", "has no get_config")):
    line = _usage_lines(capsys, cli_args.check_config_argument,
                        ["run.py", f"--config={tmp_path / name}"])
    assert line.startswith("error: --config=") and match in line, line


def test_config_experiment_other_than_the_config_files_is_refused_before_any_import(
    capsys, monkeypatch):
  from experiments import cli_args  # pylint: disable=g-import-not-at-top
  toy = os.path.join(ROOT, "configs", "toy.py")
  monkeypatch.delitem(sys.modules, "experiments.mnist", raising=False)
  line = _usage_lines(capsys, cli_args.check_config_argument,
                      ["run.py", f"--config={toy}:smoke", "--config.experiment=mnist"])
  assert line == ("error: --config.experiment=mnist: configs/toy.py is a config of the "
                  "'toy' experiment, whose fields the 'mnist' experiment does not read; for "
                  "'mnist' use configs/mnist.py")
  assert "experiments.mnist" not in sys.modules  # refused before importing it
  line = _usage_lines(capsys, cli_args.check_config_argument,
                      ["run.py", f"--config={toy}:smoke", "--config.experiment=run"])
  assert "the 'run' experiment does not read; the configs' experiments are [" in line
  line = _usage_lines(capsys, cli_args.check_config_argument,
                      ["run.py", f"--config={toy}:smoke,experiment=mnist"])
  assert line.startswith(f"error: --config={toy}:smoke,experiment=mnist: configs/toy.py "
                         "is a config of the 'toy' experiment")
  cli_args.check_config_argument(["run.py", f"--config={toy}:smoke", "--config.experiment=toy"])


def test_tuple_flags_take_bare_words_as_the_variant_form_does(capsys):
  from ml_collections.config_flags import tuple_parser  # pylint: disable=g-import-not-at-top
  from experiments import cli_args  # pylint: disable=g-import-not-at-top
  toy = os.path.join(ROOT, "configs", "toy.py")
  argv = ["run.py", f"--config={toy}:smoke", "--config.sweep.normalizations=(sinkhorn,one_sided)",
          "--config.sweep.targets=moons,spiral", "--config.sweep.taus=(0.1,0.2)",
          "--config.drift.normalization=sinkhorn", "--config.drift.T=3"]
  out = cli_args.tuple_overrides(argv)
  assert out == argv[:2] + ["--config.sweep.normalizations=('sinkhorn', 'one_sided')",
                            "--config.sweep.targets=('moons', 'spiral')"] + argv[4:]
  assert tuple_parser.TupleParser().parse(out[2].split("=", 1)[1]) == ("sinkhorn",
                                                                       "one_sided")
  line = _usage_lines(capsys, cli_args.tuple_overrides,
                      ["run.py", f"--config={toy}:smoke", "--config.sweep.taus=(0.1,abc)"])
  assert line.startswith("error: --config.sweep.taus=(0.1,abc): config key 'sweep.taus': "
                         "cannot set '(0.1,abc)': expected a number or a tuple of numbers")


# The text of the error orbax raises when a checkpoint write finds the disk full.
TENSORSTORE_ENOSPC = (
    'RESOURCE_EXHAUSTED: Error writing "opt_state.0.nu.hidden.1.kernel.value/0.0.0" in OCDBT '
    'database at local file "/w/run/checkpoints/20.orbax-checkpoint-tmp/default.orbax-'
    'checkpoint-tmp/ocdbt.process_0/": Error writing local file "/w/run/checkpoints/20.orbax-'
    'checkpoint-tmp/default.orbax-checkpoint-tmp/ocdbt.process_0/manifest.ocdbt": Failed '
    "to write 130 bytes to file 9: No space left on device [os_error_code='28']")


def test_environment_faults_are_one_line_naming_the_path_and_what_to_do():
  import errno  # pylint: disable=g-import-not-at-top
  from experiments import cli_faults  # pylint: disable=g-import-not-at-top
  message = cli_faults.environment_message
  assert message(OSError(errno.EROFS, "Read-only file system", "/w/config.json")) == (
      "cannot write /w/config.json: [Errno 30] Read-only file system; use a --workdir on a "
      "writable file system")
  assert message(OSError(errno.ENOSPC, "No space left on device"), "/w") == (
      "cannot write a file under /w: [Errno 28] No space left on device; free some space "
      "there (or use another --workdir), then rerun the same command")
  assert message(OSError(errno.ENAMETOOLONG, "File name too long", "/w/" + "a" * 300)) == (
      f"cannot create /w/{'a' * 300}: [Errno 36] File name too long; use a shorter "
      "--workdir (at most 255 bytes a name, 4096 a path)")
  assert message(PermissionError(errno.EACCES, "Permission denied", "/w")).startswith(
      "cannot access /w: [Errno 13] Permission denied; check its permissions")
  assert message(ValueError(TENSORSTORE_ENOSPC)) == (
      "cannot write checkpoint /w/run/checkpoints/20: [Errno 28] No space left on device; "
      "free some space there (or use another --workdir), then rerun the same command")
  try:
    try:
      raise OSError(errno.EROFS, "Read-only file system", "/w/x")
    except OSError as e:
      raise RuntimeError("saving failed") from e
  except RuntimeError as e:
    assert message(e).startswith("cannot write /w/x: [Errno 30]")  # found in the cause
    assert message(e, follow_causes=False) is None
  assert message(ValueError("tau must be positive")) is None
  assert message(FileNotFoundError("no config file 'x'")) is None  # ours: printed as is


@pytest.fixture
def cli_run(monkeypatch, capsys):
  """``run.run`` in-process: logging and hooks as the command line sets them (restored
  after), the experiment replaced by ``fake``, exits raising SystemExit. Returns
  ``go(fake) -> (exit code or None, stderr lines)``."""
  import logging  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  from experiments import cli_faults, run  # pylint: disable=g-import-not-at-top
  root = logging.getLogger()
  monkeypatch.setattr(root, "handlers", [])  # pytest's own, not closed by basicConfig
  monkeypatch.setattr(root, "level", root.level)
  monkeypatch.setattr(logging.getLogger("sdrift_jax"), "level",
                      logging.getLogger("sdrift_jax").level)
  monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
  monkeypatch.setattr(threading, "excepthook", threading.excepthook)

  def hard_exit(code):
    raise SystemExit(code)

  monkeypatch.setattr(cli_faults, "_hard_exit", hard_exit)

  def go(fake, workdir="/w"):
    held = cli_faults.setup_logging(debug=False)
    monkeypatch.setattr(experiments, "run_experiment",
                        lambda config, workdir, restart=False: fake(config, workdir))
    try:
      run.run(None, workdir, debug=False, held=held)
      code = None
    except SystemExit as e:
      code = e.code
    return code, capsys.readouterr().err.splitlines()

  return go


def _library_noise():
  """What orbax and tensorstore print while a save fails: an error logged with its
  traceback, an unraisable exception, an exception in a thread."""
  import logging  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  try:
    raise ValueError(TENSORSTORE_ENOSPC)
  except ValueError:
    logging.getLogger("absl").exception("_SignalingThread.run() raised an exception")

  class Callback:
    def __del__(self):
      raise RuntimeError("Event loop is closed")

  Callback()  # collected at once: an unraisable exception

  def fail():
    raise OSError(28, "No space left on device")

  t = threading.Thread(target=fail, name="save_finalize")
  t.start()
  t.join()


def test_an_environment_fault_is_two_lines_without_the_threads_tracebacks(cli_run):
  from experiments import run  # pylint: disable=g-import-not-at-top

  def fake(config, workdir):
    _library_noise()
    raise ValueError(TENSORSTORE_ENOSPC)

  code, lines = cli_run(fake)
  assert code == 1
  assert lines == ["error: cannot write checkpoint /w/run/checkpoints/20: [Errno 28] No "
                   "space left on device; free some space there (or use another --workdir), "
                   "then rerun the same command", run.HINT]

  def read_only(config, workdir):
    raise OSError(30, "Read-only file system", f"{workdir}/config.json")

  code, lines = cli_run(read_only)
  assert code == 1 and lines == [
      "error: cannot write /w/config.json: [Errno 30] Read-only file system; use a "
      "--workdir on a writable file system", run.HINT]


def test_a_backend_jax_cannot_start_is_two_lines(cli_run, monkeypatch):
  from experiments import run  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("JAX_PLATFORMS", "gpu")

  def no_gpu(config, workdir):
    raise RuntimeError("Unable to initialize backend 'rocm': NOT_FOUND: no ROCm device")

  code, lines = cli_run(no_gpu)
  assert code == 1 and lines[1] == run.HINT
  assert lines[0].startswith("error: JAX cannot start its backend (Unable to initialize "
                             "backend 'rocm'") and "JAX_PLATFORMS='gpu'" in lines[0]


def test_a_misspelled_flag_is_named(capsys):
  from experiments import run  # pylint: disable=g-import-not-at-top
  for arg, hint in (("--confg=configs/toy.py:smoke", "did you mean --config?"),
                    ("--wrkdir=w", "--help lists the flags")):
    line = _usage_lines(capsys, run.parse_flags, ["run.py", arg])
    assert line == f"error: unknown flag {arg}; {hint}", line


def test_ctrl_c_is_one_line_and_status_130(cli_run):
  from experiments import run  # pylint: disable=g-import-not-at-top

  def interrupted(config, workdir):
    _library_noise()  # orbax's save in flight fails as the run stops
    raise KeyboardInterrupt

  assert cli_run(interrupted) == (130, [run.INTERRUPTED])


def test_ctrl_c_that_python_would_ignore_in_a_callback_still_stops(cli_run, monkeypatch):
  from experiments import cli_faults, run  # pylint: disable=g-import-not-at-top
  exits = []
  monkeypatch.setattr(cli_faults, "_hard_exit", exits.append)  # returns: the run goes on here

  def interrupted_in_gc_callback(config, workdir):
    class Callback:
      def __del__(self):
        raise KeyboardInterrupt  # as in JAX's _xla_gc_callback: Python ignores it

    Callback()

  assert cli_run(interrupted_in_gc_callback) == (None, [run.INTERRUPTED])
  assert exits == [130]


def test_a_run_that_succeeds_reports_held_back_library_errors_in_one_line_each(cli_run):
  code, lines = cli_run(lambda config, workdir: _library_noise())
  assert code is None and len(lines) == 3, lines
  assert lines[0].startswith("warning: absl: _SignalingThread.run() raised an exception")
  assert lines[1].startswith("warning: ignored RuntimeError: Event loop is closed")
  assert lines[2] == ("warning: thread save_finalize: OSError: [Errno 28] No space left on "
                      "device (--debug shows the traceback)")


@pytest.mark.heavy
@pytest.mark.long
def test_cli_environment_faults_are_two_lines(tmp_path):
  (tmp_path / "w" / ".lock").mkdir(parents=True)
  out = cli("--config=configs/toy.py:smoke", f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 1 and out.stderr.splitlines() == [
      f"error: {os.path.realpath(tmp_path / 'w' / '.lock')} is a directory, not the run's "
      f"lock file; remove it (rm -r {os.path.realpath(tmp_path / 'w' / '.lock')}) and rerun",
      "(--debug or SDRIFT_DEBUG=1 shows the traceback)"], out.stderr
  long_name = tmp_path / ("a" * 300)
  out = cli("--config=configs/toy.py:smoke", f"--workdir={long_name}")
  assert out.returncode == 1 and out.stderr.splitlines() == [
      f"error: cannot create {long_name}: [Errno 36] File name too long; use a shorter "
      "--workdir (at most 255 bytes a name, 4096 a path)",
      "(--debug or SDRIFT_DEBUG=1 shows the traceback)"], out.stderr


@pytest.mark.heavy
@pytest.mark.long
def test_cli_ctrl_c_stops_in_one_line_with_status_130(tmp_path):
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  (tmp_path / "w").mkdir()
  (tmp_path / "w" / "stale.txt").write_text("an earlier run's")
  args = [sys.executable, "-m", "experiments.run", "--config=configs/toy.py:smoke,steps=100000",
          "--config.train.checkpoint_every=10", "--config.train.eval_every=100000",
          f"--workdir={tmp_path / 'w'}", "--restart"]
  proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True)
  lines = []
  for line in proc.stderr:  # Ctrl-C once a few checkpoints are being saved
    lines.append(line)
    if " step 50/" in line:
      break
  proc.send_signal(signal.SIGINT)
  try:
    _, rest = proc.communicate(timeout=60)
  except subprocess.TimeoutExpired:  # seen once in a full run under load: say what it did
    proc.kill()
    _, rest = proc.communicate()
    tail = rest.splitlines()[-3:]
    pytest.fail(f"no exit within 60 s of SIGINT; {len(rest.splitlines())} more lines, the "
                f"last: {tail} (still stepping means the signal was lost)")
  assert proc.returncode == 130
  assert rest.splitlines()[-1:] == [
      "interrupted; rerun the same command to resume from the last checkpoint"]
  assert "Traceback" not in rest and all(" step " in l for l in rest.splitlines()[:-1]), rest
  # --restart reached experiments.run_experiment: what the workdir held was moved aside.
  (old,) = [p for p in os.listdir(tmp_path) if p.startswith("w.old-")]
  assert os.listdir(tmp_path / old) == ["stale.txt"]
  assert not os.path.exists(tmp_path / "w" / "stale.txt")


@pytest.mark.long
def test_restart_moves_a_history_with_nothing_to_resume_aside_and_starts_over(tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  from sdrift_jax import training  # pylint: disable=g-import-not-at-top
  c = load("toy.py", "smoke,steps=40")  # checkpoints every 10 steps
  workdir = tmp_path / "w"
  experiments.run_experiment(c, str(workdir))
  (run_dir,) = [root for root, dirs, _ in os.walk(workdir) if "checkpoints" in dirs]
  shutil.rmtree(os.path.join(run_dir, "checkpoints"))  # metrics.jsonl kept: steps up to 40
  with pytest.raises(training.RunHistoryError,
                     match=r"records steps up to 40, .* holds no checkpoint\) and nothing to "
                     r"resume it from\. Rerun with --restart \(moves the workdir's contents "
                     r"aside\) or use another --workdir"):
    experiments.run_experiment(c, str(workdir))
  experiments.run_experiment(c, str(workdir), restart=True)
  (old,) = [p for p in os.listdir(tmp_path) if p.startswith("w.old-")]
  moved = os.path.join(tmp_path, old, os.path.relpath(run_dir, workdir))
  assert [r["step"] for r in training.read_metrics(moved)] == [10, 20, 30, 40]
  assert [r["step"] for r in training.read_metrics(run_dir)] == [10, 20, 30, 40]
  assert os.path.isdir(os.path.join(run_dir, "checkpoints"))  # started over, step 0 to 40
