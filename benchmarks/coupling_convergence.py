"""How far the experiments' Sinkhorn couplings are from converged, and what converging
them costs: column error against half-steps and time, on the real data and features.

``--experiment pixels``: the coupling of ``configs/mnist_pixels.py``'s Sinkhorn setting
(the encoder's 16 feature sets, the reference script's three relative temperatures
together, the Laplacian cost, the self-mask of ``sinkhorn.mask_self``).
``--experiment mnist``: ``configs/mnist.py``'s (the reference recipe: 6-d autoencoder
latents, one relative temperature per row of ``--taus``, each kernel of ``--kernels``).
One group of ``--batch`` generated rows (default: the config's batch size) against as
many positives of the same class, over ``--classes`` classes, vmapped as the trainer
does. The generated rows are held-out data of the class (``--rows heldout``: the model
at its goal, where the drift should find the Sinkhorn divergence's zero) or the samples
a finished run saved (``--rows PATH``: its ``samples.npy``, ``[10, n, dim]``). No
guidance (the unconditional negatives only reweight the negative coupling's columns).

Contenders, for each ``T`` of ``--T``: ``T`` half-steps from zero potentials (today's
drift), and the same with annealing (``anneal=(1 / tau_min, 0.8)``: from the mean cost
down to each temperature; where ``T`` leaves half-steps after the schedule's levels).
Then a tolerance: at most ``--T-max`` half-steps, stopped at ``--tol``. Reported per
contender: the largest column error of the positive coupling (each feature set's is the
mean over its locations) over sets, temperatures and classes, where it is, the
half-steps used, and the time of the whole drift (every set and temperature, the classes
vmapped) in ms and relative to the first ``T`` cold, interleaved, medians of ``--rounds``.

    python -m benchmarks.coupling_convergence --experiment pixels --cache /tmp/pxcache
    python -m benchmarks.coupling_convergence --experiment mnist --cache /tmp/main_job/cache \\
        --T 41,81,161,321,641,1281 --tol 1e-3
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import config_lib
from experiments import mnist
from experiments import mnist_models
from experiments import mnist_pixels
from experiments import sweep
from experiments.data import mnist as mnist_data
from sdrift_jax.drift import loss as loss_lib
from sdrift_jax.solvers import start as start_lib
from sdrift_jax.training import objectives


def _pick(rng, a, n):
  return a[rng.choice(len(a), n, replace=False)]


def _rows(args, data, embed, batch, rng):
  """``(x [C, B, ...], y [C, B, ...])``: generated rows and positives per class."""
  flat = lambda images: np.asarray(images, np.float32).reshape(len(images), -1) / 255.0
  per_class = lambda images, labels, c: flat(images[labels == c])
  y = np.stack([_pick(rng, embed(per_class(data.train_images, data.train_labels, c)), batch)
                for c in range(args.classes)])
  if args.rows == "heldout":
    x = np.stack([_pick(rng, embed(per_class(data.test_images, data.test_labels, c)), batch)
                  for c in range(args.classes)])
  else:
    x = np.stack([_pick(rng, s, batch) for s in np.load(args.rows)[: args.classes]])
  return jnp.asarray(x), jnp.asarray(y)


def pixel_settings(args):
  c = config_lib.load("configs/mnist_pixels.py:methods=(sinkhorn,)")
  c.mnist.cache_dir = args.cache
  config = sweep.setting_config(c, {"tau": c.sweep.taus[0], "method": "sinkhorn"},
                                mnist_pixels.AXES)
  data = mnist_data.load(config.data, args.cache)
  graph, params = mnist_models.cached_model("encoder", config, data, args.cache)
  objective = objectives.make_objective(config).with_features(
      mnist_pixels.make_feature_fn(graph, config.features))
  x, y = _rows(args, data, lambda a: a, args.batch or config.train.batch_size,
               np.random.default_rng(0))
  sets = lambda a: objective.feature_sets(a, params, grad=False)
  yield "pixels", config, objective, sets(x), sets(y)


def mnist_settings(args):
  c = config_lib.load("configs/mnist.py:methods=(sinkhorn,)")
  c.mnist.cache_dir = args.cache
  data = mnist_data.load(c.data, args.cache)
  space = mnist_models.LatentSpace(mnist_models.cached_model("autoencoder", c, data, args.cache),
                                   mnist_models.cached_model("classifier", c, data, args.cache))
  encode = lambda a: np.asarray(mnist_models.batched(space.encode, a.reshape(-1, 28, 28, 1)))
  x, y = _rows(args, data, encode, args.batch or c.train.batch_size, np.random.default_rng(0))
  for kernel in args.kernels.split(","):
    for tau in (float(t) for t in args.taus.split(",")):
      config = sweep.setting_config(c, {"kernel": kernel, "tau": tau, "method": "sinkhorn"},
                                    mnist.AXES)
      objective = objectives.make_objective(config)
      yield f"{kernel}, tau {tau:g}", config, objective, {"latent": x[:, :, None]}, \
          {"latent": y[:, :, None]}


def measure(objective, xs, ys, args):
  """Rows of the table for one setting."""
  names = sorted(xs)
  tau = jnp.asarray(objective.tau_array())
  taus = [float(t) for t in np.atleast_1d(objective.tau)]
  kw = dict(objective.feature_kwargs, with_state=False)

  def make(**over):
    def one_class(xc, yc):
      outs = [loss_lib.feature_drift(xc[k], yc[k], None, tau=tau, **{**kw, **over})
              for k in names]
      return (jnp.stack([jnp.atleast_1d(o.marginal_error_pos) for o in outs]),  # [sets, K]
              jnp.stack([jnp.atleast_1d(o.half_steps) for o in outs]),
              sum(jnp.sum(o.drift) for o in outs))  # keeps the drift in the timing
    return jax.jit(jax.vmap(one_class))

  anneal = (1.0 / min(taus), 0.8)
  anneal_half_steps = 2 * len(start_lib.anneal_levels(*anneal))
  contenders = {}
  for T in [int(t) for t in args.T.split(",")]:
    contenders[f"T={T}"] = make(T=T)
    if T > anneal_half_steps:
      contenders[f"T={T} annealed"] = make(T=T, anneal=anneal)
  contenders[f"tol={args.tol:g}, T<={args.T_max}"] = make(T=args.T_max, tol=args.tol)
  results = {name: jax.block_until_ready(fn(xs, ys)) for name, fn in contenders.items()}
  times = {k: [] for k in contenders}
  for _ in range(args.rounds):
    for name, fn in contenders.items():  # interleaved
      t0 = time.perf_counter()
      jax.block_until_ready(fn(xs, ys))
      times[name].append(time.perf_counter() - t0)
  base = statistics.median(times[next(iter(contenders))])
  rows = []
  for name in contenders:
    err, half = np.asarray(results[name][0]), np.asarray(results[name][1])
    worst = np.unravel_index(np.argmax(err), err.shape)  # (class, set, tau)
    t = statistics.median(times[name])
    rows.append((name, err.max(), f"{names[worst[1]]}, {taus[worst[2]]:g}", int(half.max()),
                 1e3 * t, t / base))
  cold = [c for c in contenders if c.startswith("T=") and "anneal" not in c]
  per_set = {n: (np.asarray(results[cold[0]][0])[:, k].max(),
                 np.asarray(results[cold[-1]][0])[:, k].max()) for k, n in enumerate(names)}
  return rows, per_set, (cold[0], cold[-1])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--experiment", choices=("pixels", "mnist"), default="pixels")
  ap.add_argument("--cache", required=True, help="the helper networks' cache directory")
  ap.add_argument("--rows", default="heldout")
  ap.add_argument("--batch", type=int, default=0, help="0: the config's batch size")
  ap.add_argument("--classes", type=int, default=10)
  ap.add_argument("--kernels", default="gaussian,laplacian", help="mnist only")
  ap.add_argument("--taus", default="0.005,0.05", help="mnist only (relative)")
  ap.add_argument("--T", default="21,41,81,161,321,641")
  ap.add_argument("--T-max", type=int, default=4001)
  ap.add_argument("--tol", type=float, default=1e-2)
  ap.add_argument("--rounds", type=int, default=3)
  args = ap.parse_args()
  settings = pixel_settings if args.experiment == "pixels" else mnist_settings
  print(f"# {args.experiment}: rows {args.rows}, {args.classes} classes; "
        f"{jax.devices()[0].platform}; medians of {args.rounds}\n")
  print("| setting | contender | max column error | where (set, tau) | half-steps (max) | "
        "ms / call | time / first |")
  print("|---|---|---:|---|---:|---:|---:|")
  notes = []
  for label, config, objective, xs, ys in settings(args):
    label += f", batch {next(iter(xs.values())).shape[1]}, mask_self {config.drift.mask_self}"
    rows, per_set, (first, last) = measure(objective, xs, ys, args)
    for name, err, where, half, ms, rel in rows:
      print(f"| {label} | {name} | {err:.3g} | {where} | {half} | {ms:.1f} | {rel:.2f} |",
            flush=True)
    if len(per_set) > 1:
      notes.append(f"\n{label}: column error per feature set at {first} and {last} "
                   "(max over classes and temperatures):")
      notes += [f"  {n:24s} {a:.3g}  {b:.3g}" for n, (a, b) in per_set.items()]
  print("\n".join(notes))


if __name__ == "__main__":
  main()
