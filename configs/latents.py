"""Class-conditional latent generation on the embedded synthetic latent set (Sec. 5.4).

    python -m experiments.run --config=configs/latents.py
    python -m experiments.run --config=configs/latents.py:smoke

The pipeline of configs/ffhq_alae.py (Table 2: baseline against Sinkhorn at
tau in {0.1, 1, 10}) on a stand-in that ships: 6 classes of 512-d latents, class c drawn
from N(mean_c, A_c A_c^T + 0.09 I) with A_c of rank 16 (experiments.data.latents), so
W2^2 and Frechet distances against fresh held-out draws mean something. Sized for a CPU:
the paper's generator (noise 512 + class embedding 64, three Linear(1024) + ReLU) and
optimizer (Adam 3e-4, embeddings 1e-3, cosine, clip 5), but 64 latents per class per
step and 600 steps instead of 682 and 5000. ``scale_free``: the reference codes' loss
with temperatures relative to the batch's mean distance (the recipe of configs/mnist.py
without guidance) instead of the paper's absolute ones. Short keys: tau, taus, steps, batch, seeds,
T, algorithm, devices, coupling, decoder, features.
"""
import ml_collections

from experiments import config_lib
from sdrift_jax.training import objectives

ALIASES = {"devices": "parallel.devices", "coupling": "parallel.coupling",
           "taus": "sweep.taus", "steps": "train.steps", "batch": "train.batch_size",
           "seeds": "train.num_seeds", "T": "drift.T", "algorithm": "drift.algorithm",
           "decoder": "eval.decoder", "features": "eval.features"}


#: Fields each sweep setting sets, and the field to override instead.
PER_SETTING = {"drift.tau": "tau=... or sweep.taus",
               "drift.normalization": "sweep.methods or baseline.normalization",
               "drift.mask_self": "baseline.mask_self or sinkhorn.mask_self"}
VARIANTS = {
    "smoke": "3 small classes, 10 steps of a small model: end to end in seconds",
    "scale_free": "the reference codes' loss, tau relative to the batch's mean distance",
}


def base_config():
  """The settings shared with configs/ffhq_alae.py."""
  c = ml_collections.ConfigDict()
  c.experiment = "latents"
  c.seed = 0
  c.data = ml_collections.ConfigDict(dict(source="synthetic", path="", class_keys=(),
                                          split_seed=0, num_classes=6, dim=512, rank=16,
                                          seed=0, train_per_class=4000))
  c.model = ml_collections.ConfigDict(dict(kind="mlp", noise_dim=512, embed_dim=64,
                                           hidden=1024, depth=3, blocks=0, activation="relu",
                                           omega_dim=0, init="flax"))
  # The paper's Table 2 temperatures are absolute, on squared distances in raw latent
  # units (its FFHQ script has no feature normalization): the drift_field objective.
  c.drift = ml_collections.ConfigDict(dict(normalization="sinkhorn", T=61, tau=1.0,
                                           cost="sqeuclidean", mask_self=False,
                                           algorithm="auto", relative_tau=False,
                                           **objectives.CONVERGENCE_DEFAULTS))
  c.baseline = ml_collections.ConfigDict(dict(normalization="two_sided_joint", mask_self=True))
  c.sinkhorn = ml_collections.ConfigDict(dict(mask_self=False))  # as the reference codes
  c.loss = objectives.loss_config()
  c.guidance = objectives.guidance_config()
  c.optim = config_lib.optimizer_config("adam", 3e-4, embed_learning_rate=1e-3,
                                        clip_norm=5.0, schedule="cosine")
  # FID of decoded images: decoder and features are 'module:function' (importable from
  # the working directory), latents [n, D] -> images and images -> features [n, k].
  c.eval = ml_collections.ConfigDict(dict(num_samples=1000, decoder="", features="",
                                          fid_batch=250))
  # devices: 0 = all visible; per_group puts whole classes on each device (same maths as
  # one device; the class count must divide by the device count), global shards each
  # class's batch and lets XLA gather what the couplings need.
  c.parallel = config_lib.parallel_config("per_group")
  c.logging = config_lib.logging_config()
  c.sweep = ml_collections.ConfigDict(dict(taus=(0.1, 1.0, 10.0), methods=("baseline", "sinkhorn")))
  return c


def make_smoke(c):
  """A few steps of a small model: the pipeline end to end in seconds."""
  c.model.update(noise_dim=8, embed_dim=4, hidden=32, depth=2)
  c.train.update(steps=10, batch_size=16, log_every=5, eval_every=10, checkpoint_every=10)
  c.eval.num_samples = 64
  c.drift.T = 5
  c.sweep.taus = (1.0,)


def make_scale_free(c):
  """The reference codes' loss (:mod:`sdrift_jax.drift.loss`): tau relative to the batch's mean
  distance, per-temperature normalization; baseline = the joint two-sided form."""
  c.loss.objective = "feature_drift"
  c.baseline = ml_collections.ConfigDict(dict(normalization="two_sided", form="joint",
                                              mask_self=True))


def get_config(arg=None):
  flags, assignments = config_lib.parse_variant(arg)
  config_lib.check_unknown_flags(flags, VARIANTS, "configs/latents.py")
  c = base_config()
  if "scale_free" in flags:
    make_scale_free(c)
  c.train = config_lib.train_config(steps=600, batch_size=64, log_every=100,
                                    eval_every=300, checkpoint_every=300)
  if "smoke" in flags:
    c.data.update(num_classes=3, dim=16, rank=4, train_per_class=200)
    make_smoke(c)
  config_lib.apply_sweep_assignments(c, assignments, ALIASES, PER_SETTING,
                                     "configs/latents.py")
  return c
