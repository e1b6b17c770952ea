"""2-D toy generators (paper Sec. 5.2, Fig. 2, App. J, Fig. 6-8).

    python -m experiments.run --config=configs/toy.py
    python -m experiments.run --config=configs/toy.py:fig2        # 90-run Fig. 2 grid
    python -m experiments.run --config=configs/toy.py:appj        # App. J: 4 targets x 2 kernels
    python -m experiments.run --config=configs/toy.py:smoke
    python -m experiments.run --config=configs/toy.py:reference   # the reference code's model
    python -m experiments.run --config=configs/toy.py:target=moons,tau=0.05,normalization=one_sided
    python -m experiments.run --config=configs/toy.py:taus=(0.01,0.1),normalizations=(one_sided,sinkhorn)

Every run is a grid (experiments/sweep.py): targets x costs x taus x normalizations, one
setting by default (8gaussians, Gaussian kernel, tau 0.1, Sinkhorn). ``target``, ``cost``,
``tau`` and ``normalization`` set a one-value axis, the plural keys several values.

A generator maps noise to a 2-D target, trained by the drifting loss with y_neg = x and
no self-mask. Defaults follow the paper (Sec. 5.2): a two-layer MLP from 2-d Gaussian
noise (width 256, ReLU: the paper gives no width), Adam 1e-3, batch N = 500, 5000 steps;
Sinkhorn T = 41 (the reference code's 20 iterations); W2^2 by exact OT on 1000 samples
every 100 steps.

``reference`` switches to the reference code's toy run (``toy/Gen_Modeling.py`` and the
command in its README): residual MLP with LayerNorm (hidden 256, 6 blocks, noise 16,
SiLU, residual scale 0.9, output weights N(0, 0.001^2) and zero bias), AdamW 2e-4 with
PyTorch's defaults (betas 0.9/0.999, weight decay 0.01; no schedule, clipping or EMA),
batch 1024, 5000 steps, and the self-mask on the one- and two-sided baselines.

drift.mask_self masks the self-pair of the one- and two-sided baselines only; the Sinkhorn
drift is never masked (the mask rule of experiments/sweep.py), as in the reference code.

Short keys: target(s), tau(s), normalization(s), cost(s), T, steps, seeds, batch, lr,
algorithm, devices.
"""
import ml_collections

from experiments import config_lib
from sdrift_jax.training import objectives

ALIASES = {"target": "sweep.targets", "targets": "sweep.targets", "tau": "sweep.taus",
           "taus": "sweep.taus", "T": "drift.T", "normalization": "sweep.normalizations",
           "normalizations": "sweep.normalizations", "cost": "sweep.costs",
           "costs": "sweep.costs",
           "steps": "train.steps", "seeds": "train.num_seeds", "batch": "train.batch_size",
           "lr": "optim.learning_rate", "algorithm": "drift.algorithm",
           "devices": "parallel.devices"}


#: Fields each setting of the grid sets, and the field to override instead.
PER_SETTING = {"data.target": "sweep.targets", "drift.cost": "sweep.costs",
               "drift.tau": "sweep.taus", "drift.normalization": "sweep.normalizations"}
VARIANTS = {
    "smoke": "20 steps of a small model: the pipeline end to end in seconds",
    "fig2": "Fig. 2 sweep: 8gaussians and checkerboard x 3 taus x 3 normalizations, 5 seeds",
    "appj": "App. J sweep: 4 targets x 2 costs x 3 taus x 3 normalizations, 5 seeds",
    "reference": "the reference toy script's model and optimizer (ResMLP, AdamW 2e-4)",
}


def get_config(arg=None):
  flags, assignments = config_lib.parse_variant(arg)
  config_lib.check_unknown_flags(flags, VARIANTS, "configs/toy.py")
  c = ml_collections.ConfigDict()
  c.experiment = "toy"
  c.seed = 42
  c.data = ml_collections.ConfigDict(dict(target="8gaussians"))
  c.model = ml_collections.ConfigDict(dict(kind="mlp", noise_dim=2, hidden=256, depth=2,
                                           init="flax", activation="relu"))
  c.drift = ml_collections.ConfigDict(dict(normalization="sinkhorn", T=41, tau=0.1,
                                           cost="sqeuclidean", mask_self=False,
                                           algorithm="auto", relative_tau=False,
                                           **objectives.CONVERGENCE_DEFAULTS))
  # config.loss.objective='feature_drift' trains with the reference codes' loss instead.
  c.loss = objectives.loss_config()
  c.optim = config_lib.optimizer_config("adam", 1e-3)
  c.train = config_lib.train_config(steps=5000, batch_size=500, log_every=100,
                                    eval_every=100, checkpoint_every=1000)
  c.eval = ml_collections.ConfigDict(dict(num_samples=1000))
  # One group (unconditional): only the batch can be sharded, so the coupling is global.
  c.parallel = config_lib.parallel_config("global")
  c.sweep = ml_collections.ConfigDict(dict(
      targets=("8gaussians",), costs=("sqeuclidean",), taus=(0.1,),
      normalizations=("sinkhorn",)))
  c.logging = config_lib.logging_config()
  if "reference" in flags:
    c.model = ml_collections.ConfigDict(dict(
        kind="resmlp", noise_dim=16, hidden=256, blocks=6, expansion=2, layer_norm=True,
        activation="silu", init="torch", res_scale=0.9, out_init_std=0.001))
    # torch.optim.AdamW(params, lr=2e-4): betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    c.optim.update(name="adamw", learning_rate=2e-4, b1=0.9, b2=0.999, weight_decay=0.01,
                   clip_norm=0.0, schedule="constant", warmup_steps=0)
    c.train.update(steps=5000, batch_size=1024, ema_decay=0.0)
    c.drift.update(T=41, cost="sqeuclidean")  # --sinkhorn-iters 20, --dist-metric l2_sq
    c.drift.mask_self = True  # the baselines' self-pair; Sinkhorn is never masked
  if "fig2" in flags or "appj" in flags:
    c.sweep.targets = ("8gaussians", "checkerboard")
    c.sweep.taus = (0.01, 0.05, 0.1)
    c.sweep.normalizations = ("one_sided", "two_sided", "sinkhorn")
    c.train.num_seeds = 5
  if "appj" in flags:
    c.sweep.targets = ("8gaussians", "checkerboard", "moons", "spiral")
    c.sweep.costs = ("sqeuclidean", "euclidean")
  if "smoke" in flags:
    c.model.hidden = 32
    if c.model.kind == "resmlp":
      c.model.blocks = 2
    c.train.update(steps=20, batch_size=64, log_every=10, eval_every=10, checkpoint_every=10)
    c.eval.num_samples = 128
    c.drift.T = 5
  config_lib.apply_assignments(c, assignments, ALIASES)
  config_lib.check_per_setting(c, [ALIASES.get(k, k) for k in assignments], PER_SETTING,
                               "configs/toy.py")
  return c
