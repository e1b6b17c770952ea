"""2-D toy generators (paper Sec. 5.2, Fig. 2, App. J, Fig. 6-8).

    python -m experiments.run --config=configs/toy.py
    python -m experiments.run --config=configs/toy.py:fig2        # 90-run Fig. 2 grid
    python -m experiments.run --config=configs/toy.py:appj        # App. J: 4 targets x 2 kernels
    python -m experiments.run --config=configs/toy.py:smoke
    python -m experiments.run --config=configs/toy.py:reference   # the reference code's model
    python -m experiments.run --config=configs/toy.py:target=moons,tau=0.05,normalization=one_sided

A generator maps noise to a 2-D target, trained by the drifting loss with y_neg = x and
no self-mask. Defaults follow the paper (Sec. 5.2): a two-layer MLP from 2-d Gaussian
noise (width 256, ReLU: the paper gives no width), Adam 1e-3, batch N = 500, 5000 steps;
Sinkhorn T = 41 (the reference code's 20 iterations); W2^2 by exact OT on 1000 samples
every 100 steps. ``reference`` switches to the reference code's toy model: residual MLP
with LayerNorm (hidden 256, 6 blocks, noise 16), AdamW 2e-4, and the self-mask on the
baselines. Short keys: target, tau, T, normalization, cost, steps, seeds, batch, lr, algorithm,
devices.
"""
import ml_collections

from sdrift_jax import config_lib

ALIASES = {"target": "data.target", "tau": "drift.tau", "T": "drift.T",
           "normalization": "drift.normalization", "cost": "drift.cost",
           "steps": "train.steps", "seeds": "train.num_seeds", "batch": "train.batch_size",
           "lr": "optim.learning_rate", "algorithm": "drift.algorithm",
           "devices": "parallel.devices"}


def get_config(arg=None):
  flags, assignments = config_lib.parse_variant(arg)
  config_lib.check_unknown_flags(flags, {"smoke", "fig2", "appj", "reference"},
                                 "configs/toy.py")
  c = ml_collections.ConfigDict()
  c.experiment = "toy"
  c.seed = 42
  c.data = ml_collections.ConfigDict(dict(target="8gaussians"))
  c.model = ml_collections.ConfigDict(dict(kind="mlp", noise_dim=2, hidden=256, depth=2,
                                           blocks=6, expansion=2, layer_norm=True,
                                           init="torch", activation="relu"))
  c.drift = ml_collections.ConfigDict(dict(normalization="sinkhorn", T=41, tau=0.1,
                                           cost="sqeuclidean", mask_self=False,
                                           algorithm="auto"))
  c.optim = config_lib.optimizer_config("adam", 1e-3)
  c.train = config_lib.train_config(steps=5000, batch_size=500, log_every=100,
                                    eval_every=100, checkpoint_every=1000)
  c.eval = ml_collections.ConfigDict(dict(num_samples=1000))
  # One group (unconditional): only the batch can be sharded, so the coupling is global.
  c.parallel = config_lib.parallel_config("global")
  c.sweep = ml_collections.ConfigDict(dict(
      enabled=False, targets=("8gaussians", "checkerboard"), costs=("sqeuclidean",),
      taus=(0.01, 0.05, 0.1), normalizations=("one_sided", "two_sided", "sinkhorn")))
  if "reference" in flags:
    c.model.update(kind="resmlp", noise_dim=16, activation="silu")
    c.optim.update(name="adamw", learning_rate=2e-4, weight_decay=0.01)
    c.drift.mask_self = True  # the reference code masks the baselines, never Sinkhorn
  if "fig2" in flags:
    c.sweep.enabled = True
    c.train.num_seeds = 5
  if "appj" in flags:
    c.sweep.enabled = True
    c.sweep.targets = ("8gaussians", "checkerboard", "moons", "spiral")
    c.sweep.costs = ("sqeuclidean", "euclidean")
    c.train.num_seeds = 5
  if "smoke" in flags:
    c.model.hidden = 32
    c.model.blocks = 2
    c.train.update(steps=20, batch_size=64, log_every=10, eval_every=10, checkpoint_every=10)
    c.eval.num_samples = 128
    c.drift.T = 5
    c.sweep.taus = (0.1,)
    c.sweep.targets = ("8gaussians",)
  config_lib.apply_assignments(c, assignments, ALIASES)
  return c
