"""Spread of a trained latent generator against its data, per class.

    python -m experiments.latent_dispersion --run=workdirs/latents/tau1/sinkhorn

Restores the run's last checkpoint (``<run>/config.json``, ``<run>/checkpoints``), draws
``eval.num_samples`` latents per class with the evaluation noise of training, and prints
per class: the squared error of the generated mean, the total variance (trace of the
covariance) and the largest covariance eigenvalue of generated vs data latents (the true
distribution for the synthetic set, the training latents for an ``.npz``), and, as a
gauge, the EMD of a generator that outputs the data mean of each class. A generator with
EMD near or below real-vs-real but a much smaller total variance is under-dispersed
(docs/results.md, s.4).
"""
import json
import os

from absl import app, flags, logging

flags.DEFINE_string("run", None, "A setting's run directory (holds config.json).")
flags.mark_flags_as_required(["run"])
FLAGS = flags.FLAGS


def dispersion(run: str) -> dict:
  """The per-class statistics of the run directory ``run`` (see the module docstring)."""
  import jax
  import ml_collections
  import numpy as np
  from experiments import latents as latents_lib
  from sdrift_jax.training import checkpoint
  from sdrift_jax.evaluation import metrics
  from sdrift_jax import training as train
  from experiments.data import latents as latents_data

  path = os.path.join(run, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: --run must be a setting's run directory")
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.parallel.devices = 1
  train_sets, held, names = latents_lib.load_data(config)
  trainer = train.Trainer(config, latents_lib.make_problem(train_sets, held))
  ckpt = checkpoint.Checkpointer(os.path.join(run, "checkpoints"))
  step = ckpt.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {run}/checkpoints")
  state = ckpt.restore(step, trainer.init())
  ckpt.close()
  n = int(config.eval.num_samples)
  eps = jax.random.normal(jax.random.fold_in(trainer.base_key, 2**31 - 1),
                          (len(names), n, trainer.noise_dim))
  samples = np.asarray(trainer.make_sampler()(trainer.eval_params(state), eps))[0].astype(
      np.float64)
  synthetic = None
  if config.data.source == "synthetic":
    d = config.data
    synthetic = latents_data.SyntheticLatents(num_classes=d.num_classes, dim=d.dim,
                                              rank=d.rank, seed=d.seed)
  rows, mean_emd = [], []
  for c, name in enumerate(names):
    if synthetic is not None:
      mean, cov = synthetic.means[c], synthetic.covariance(c)
    else:
      data = np.asarray(train_sets[c], np.float64)
      mean, cov = data.mean(0), np.cov(data, rowvar=False)
    gen_cov = np.cov(samples[c], rowvar=False)
    point = np.repeat(mean[None].astype(np.float32), n, axis=0)
    mean_emd.append(metrics.w2_squared(point, held[c]))
    rows.append(dict(cls=name, mean_sq_error=float(np.sum((samples[c].mean(0) - mean) ** 2)),
                     total_var_gen=float(np.trace(gen_cov)), total_var_data=float(np.trace(cov)),
                     top_eig_gen=float(np.linalg.eigvalsh(gen_cov)[-1]),
                     top_eig_data=float(np.linalg.eigvalsh(cov)[-1])))
  return dict(step=step, num_samples=n, data="true distribution" if synthetic is not None
              else "training latents", classes=rows, class_mean_emd=float(np.mean(mean_emd)))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  out = dispersion(FLAGS.run)
  print(f"{FLAGS.run} (step {out['step']}, {out['num_samples']} samples per class; "
        f"data = {out['data']})")
  print("| class | mean sq. error | total var. gen / data | top eigenvalue gen / data |")
  print("|---|---:|---:|---:|")
  for r in out["classes"]:
    print(f"| {r['cls']} | {r['mean_sq_error']:.2f} | {r['total_var_gen']:.1f} / "
          f"{r['total_var_data']:.1f} | {r['top_eig_gen']:.1f} / {r['top_eig_data']:.1f} |")
  print(f"class-mean generator: EMD {out['class_mean_emd']:.2f} (averaged over classes)")
  print(json.dumps(out))


if __name__ == "__main__":
  app.run(main)
