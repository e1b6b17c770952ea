"""Where the reference toy model's training step spends its time under XLA on the CPU.

The model is ``configs/toy.py:reference`` (``ResidualMLPGenerator``: noise 16, width 256,
6 residual blocks of ``256 -> 512 -> 256`` with LayerNorm and SiLU; batch 1024; AdamW).
Its matmuls are ``3 x 2 x B x (16 x 256 + 6 x 2 x 256 x 512 + 256 x 2)`` FLOPs per step
(forward, and twice that backward): 9.69 GFLOP at B = 1024. GFLOP/s below are that count
over the wall time, so every non-matmul microsecond lowers them.

Parts, timed interleaved in one process (``steps`` steps per compiled call in a
``lax.scan``, medians of ``rounds``):

- ``matmuls``: the forward's 12 block matmuls alone, chained; ``one matmul h w``: one
  ``[B, 256] x [256, 512]`` product as in the forward; ``one matmul h^T g``: one
  ``[256, B] x [B, 512]`` product, a weight gradient of the backward;
- ``forward``; ``forward + backward`` (squared error to a fixed target);
- ``linear step``: forward, backward and AdamW of the same matmuls with no bias,
  LayerNorm or SiLU, the matmul floor of a step; ``feature-major``: the same with the
  activations stored ``[features, batch]`` and the weights ``[out, in]``;
- ``step``: forward, backward and AdamW (the config's optimizer, ``make_optimizer``);
- ``trainer T=41`` and ``trainer one-sided``: ``Trainer.make_chunk`` of the real
  config, drift included;
- variants of ``step``: the compute in bfloat16 (parameters and input cast, float32
  master weights), and ``jax.checkpoint`` with the ``dots_saveable`` and
  ``nothing_saveable`` policies.

``--breakdown`` traces the step with ``jax.profiler`` and sums XLA's per-thunk times by
kind (matmul fusions, other fusions); thunks that overlap on the two cores are each
counted whole. ``--xla-flags='A;B;...'`` times ``step`` in child processes, one per
``XLA_FLAGS`` value (empty is the default), alternated for ``--process-rounds`` rounds.

    python -m benchmarks.train_profile --out docs/benchmarks/train_profile_cpu.md
    python -m benchmarks.train_profile --breakdown
    python -m benchmarks.train_profile --xla-flags=';--xla_cpu_use_xnnpack=false'

``benchmarks/train_profile_torch.py`` is the same step in PyTorch.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import interleaved_medians, write_markdown_table
from configs import toy as toy_config
from sdrift_jax.models import generators as models
from sdrift_jax.training import optim as optim_lib


def matmul_flops(model_config, batch: int) -> int:
  """Forward FLOPs of the reference generator's matmuls."""
  width, wide = model_config.hidden, model_config.hidden * model_config.expansion
  return 2 * batch * (model_config.noise_dim * width + model_config.blocks * 2 * width * wide
                      + width * 2)


def _scan(step, steps: int):
  """``steps`` calls of ``step(carry, eps) -> carry`` in one jitted ``lax.scan``, the input
  nudged per step so that no step can be hoisted out of the loop."""
  def run(carry, eps):
    def body(c, i):
      return step(c, eps + 1e-3 * i.astype(eps.dtype)), None
    return jax.lax.scan(body, carry, jnp.arange(steps))[0]
  return jax.jit(run)


def step_parts(batch: int, steps: int) -> tuple[dict, dict]:
  """The parts as ``name: (jitted function, arguments)``, and the matmul FLOPs of the
  forward and of the ``matmuls`` part."""
  config = toy_config.get_config("reference")
  mc = config.model
  model = models.make_generator(mc, 2, jax.random.key(0))
  graphdef, params = nnx.split(model, nnx.Param)
  eps = jax.random.normal(jax.random.key(1), (batch, mc.noise_dim))
  target = jax.random.normal(jax.random.key(2), (batch, 2))
  opt = optim_lib.make_optimizer(config.optim, config.train.steps)  # the run's AdamW

  def loss(p, e, cast=None):
    if cast is not None:
      p, e = jax.tree.map(lambda a: a.astype(cast), p), e.astype(cast)
    out = nnx.merge(graphdef, p)(e).astype(jnp.float32)
    return jnp.mean(jnp.sum((out - target) ** 2, -1))

  def adamw_step(loss_fn):
    def step(carry, e):
      p, s = carry
      g = jax.grad(loss_fn)(p, e)
      u, s = opt.update(g, s, p)
      return optax.apply_updates(p, u), s
    return step

  width, wide = mc.hidden, mc.hidden * mc.expansion
  keys = jax.random.split(jax.random.key(3), 2 * mc.blocks + 2)
  lin = {"inp": jax.random.normal(keys[0], (mc.noise_dim, width)) * 0.05,
         "out": jax.random.normal(keys[1], (width, 2)) * 0.05,
         "w1": [jax.random.normal(k, (width, wide)) * 0.05 for k in keys[2:2 + mc.blocks]],
         "w2": [jax.random.normal(k, (wide, width)) * 0.05 for k in keys[2 + mc.blocks:]]}

  def linear_net(p, e):
    h = e @ p["inp"]
    for w1, w2 in zip(p["w1"], p["w2"]):
      h = h + 0.9 * ((h @ w1) @ w2)
    return h @ p["out"]

  def linear_loss(p, e):
    return jnp.mean(jnp.sum((linear_net(p, e) - target) ** 2, -1))

  def linear_loss_feature_major(p, e):  # activations [features, batch], weights [out, in]
    h = p["inp"].T @ e.T
    for w1, w2 in zip(p["w1"], p["w2"]):
      h = h + 0.9 * (w2.T @ (w1.T @ h))
    return jnp.mean(jnp.sum((p["out"].T @ h - target.T) ** 2, 0))

  lin_t = jax.tree.map(lambda w: w.T.copy(), lin)  # stored [out, in]: no transposes left

  h0 = jax.random.normal(jax.random.key(4), (batch, width))

  def matmuls(h, _):
    for w1, w2 in zip(lin["w1"], lin["w2"]):
      h = h + 1e-3 * ((h @ w1) @ w2)
    return h

  def forward(acc, e):
    return acc + jnp.sum(nnx.merge(graphdef, params)(e))

  def grads(acc, e):
    return jax.tree.map(jnp.add, acc, jax.grad(loss)(params, e))

  g0 = jax.random.normal(jax.random.key(5), (batch, wide))

  def weight_gradient(acc, e):  # h^T g, the backward's [width, batch] x [batch, wide]
    return 0.5 * acc + jax.lax.dot_general(h0 + 1e-9 * acc[:1, :1], g0 + e[:1, :1],
                                           (((0,), (0,)), ((), ())))

  def plain_product(acc, e):  # h w, the forward's [batch, width] x [width, wide]
    return 0.5 * acc + (h0 + 1e-9 * acc[:1, :1] + e[:1, :1]) @ lin["w1"][0]

  cp = jax.checkpoint_policies
  state = (params, opt.init(params))
  fns = {
      "matmuls": (_scan(matmuls, steps), (h0, h0)),
      "one matmul h w": (_scan(plain_product, steps), (jnp.zeros((batch, wide)), eps)),
      "one matmul h^T g": (_scan(weight_gradient, steps), (jnp.zeros((width, wide)), eps)),
      "forward": (_scan(forward, steps), (jnp.float32(0), eps)),
      "forward + backward": (_scan(grads, steps), (jax.tree.map(jnp.zeros_like, params), eps)),
      "linear step": (_scan(adamw_step(linear_loss), steps), ((lin, opt.init(lin)), eps)),
      "linear step, feature-major": (
          _scan(adamw_step(lambda p, e: linear_loss_feature_major(
              jax.tree.map(lambda w: w.T, p), e)), steps), ((lin_t, opt.init(lin_t)), eps)),
      "step": (_scan(adamw_step(loss), steps), (state, eps)),
      "step, bfloat16 compute": (
          _scan(adamw_step(lambda p, e: loss(p, e, jnp.bfloat16)), steps), (state, eps)),
      "step, checkpoint dots_saveable": (
          _scan(adamw_step(jax.checkpoint(loss, policy=cp.dots_saveable)), steps),
          (state, eps)),
      "step, checkpoint nothing_saveable": (
          _scan(adamw_step(jax.checkpoint(loss, policy=cp.nothing_saveable)), steps),
          (state, eps)),
  }
  one = 2 * batch * width * wide
  flops = {"forward": matmul_flops(mc, batch), "matmuls": mc.blocks * 2 * one,
           "one matmul h w": one, "one matmul h^T g": one}
  return fns, flops


def trainer_parts(steps: int) -> dict:
  """``Trainer.make_chunk`` of the reference config, Sinkhorn T = 41 and one-sided."""
  from sdrift_jax import training as train_lib
  from experiments import sweep, toy
  out = {}
  for name, flags in (("trainer T=41", "reference"),
                      ("trainer one-sided", "reference,normalization=one_sided")):
    config = toy_config.get_config(flags)
    config = sweep.setting_config(config, sweep.settings(config, toy.AXES)[0], toy.AXES)
    trainer = train_lib.Trainer(config, toy.make_problem(config))
    run, keys, tau = trainer.make_chunk(steps), trainer.seed_keys(), trainer.objective.tau_array()
    holder = [trainer.init()]

    def call(run=run, keys=keys, tau=tau, holder=holder):
      holder[0], metrics = run(holder[0], keys, tau)  # the state is donated: carry it on
      return holder[0], metrics
    out[name] = call
  return out


def _calls(parts: dict) -> dict:
  return {k: (lambda f=f, a=a: f(*a)) for k, (f, a) in parts.items()}


def _dot_thunks(hlo: str) -> set:
  """Names of the compiled program's instructions that are a dot or call a computation
  holding one (XLA:CPU names a thunk after its instruction)."""
  with_dot, current = set(), None
  for line in hlo.splitlines():
    head = re.match(r"(?:ENTRY )?%?([\w.\-]+) \(", line)
    if head:
      current = head.group(1)
    elif current and re.search(r" dot\(", line):
      with_dot.add(current)
  names = set()
  for m in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ (\w+)\(([^\n]*)", hlo, re.M):
    name, op, rest = m.groups()
    called = re.search(r"calls=%?([\w.\-]+)", rest)
    if op == "dot" or (called and called.group(1) in with_dot):
      names.add(name)
  return names


def breakdown(fn, args, steps: int) -> dict:
  """Per-step thunk time (ms) by kind, from a ``jax.profiler`` trace of three calls."""
  from jax._src.lib import _profile_data
  dots = _dot_thunks(fn.lower(*args).compile().as_text())
  jax.block_until_ready(fn(*args))
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      for _ in range(3):
        jax.block_until_ready(fn(*args))
    data = _profile_data.ProfileData.from_file(glob.glob(f"{d}/**/*.xplane.pb",
                                                         recursive=True)[0])
    totals = collections.Counter()
    for plane in data.planes:
      for line in plane.lines:
        for ev in line.events:
          if ev.name.startswith(("ThunkExecutor", "$")) or "wait" in ev.name.lower():
            continue
          totals[ev.name] += ev.duration_ns
  kinds = collections.Counter()
  for name, ns in totals.items():
    kind = ("thread-pool waits" if "Await" in name else
            ("matmuls" if name in dots else "other ops") +
            (" (YNNPACK)" if name.startswith("ynn_fusion") else ""))
    kinds[kind] += ns / 1e6 / (3 * steps)
  return dict(kinds)


def _child(args) -> None:
  parts, _ = step_parts(args.batch, args.steps)
  t, = interleaved_medians([_calls(parts)["step"]], args.rounds)
  print(json.dumps(dict(step_ms=1e3 * t / args.steps)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--steps", type=int, default=20, help="steps per compiled call")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--no-trainer", action="store_true", help="skip the Trainer parts")
  parser.add_argument("--breakdown", action="store_true")
  parser.add_argument("--xla-flags", default=None,
                      help="XLA_FLAGS values separated by ';' (empty: the default)")
  parser.add_argument("--process-rounds", type=int, default=3)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  if args.child:
    return _child(args)
  if args.xla_flags is not None:
    variants = [f.strip() for f in args.xla_flags.split(";")]
    times = {f: [] for f in variants}
    for _ in range(args.process_rounds):
      for flags in variants:
        env = dict(os.environ, XLA_FLAGS=flags)
        out = subprocess.run([sys.executable, "-m", "benchmarks.train_profile", "--child",
                              "--batch", str(args.batch), "--steps", str(args.steps),
                              "--rounds", str(args.rounds)], env=env, check=True,
                             capture_output=True, text=True).stdout
        times[flags].append(json.loads(out.strip().splitlines()[-1])["step_ms"])
        print(flags or "(default)", times[flags][-1], flush=True)
    base = statistics.median(times[variants[0]])
    rows = [[f"`{f}`" if f else "(default)", f"{statistics.median(t):.1f}",
             f"{statistics.median(t) / base:.2f}"] for f, t in times.items()]
    return write_markdown_table("benchmarks.train_profile", argv,
                                ["XLA_FLAGS", "step (ms)", "/ first"], rows, args.out)
  parts, flops = step_parts(args.batch, args.steps)
  fwd_flops = flops["forward"]
  if args.breakdown:
    for kind, ms in sorted(breakdown(*parts["step"], args.steps).items(),
                           key=lambda kv: -kv[1]):
      print(f"{kind}: {ms:.2f} ms per step")
    return None
  parts = _calls(parts)
  if not args.no_trainer:
    parts.update(trainer_parts(args.steps))
  times = interleaved_medians(list(parts.values()), args.rounds)
  rows = []
  for name, t in zip(parts, times):
    ms = 1e3 * t / args.steps
    gflops = flops.get(name, 3 * fwd_flops) / (ms * 1e6)
    rows.append([name, f"{ms:.2f}", f"{gflops:.0f}"])
  return write_markdown_table("benchmarks.train_profile", argv,
                              ["part", "ms per step", "matmul GFLOP/s"], rows, args.out)


if __name__ == "__main__":
  main()
