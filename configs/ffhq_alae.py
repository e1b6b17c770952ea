"""FFHQ-ALAE latents, the paper's Table 2 settings (Sec. 5.4); the latents are yours.

    python -m experiments.run --config=configs/ffhq_alae.py:path=/data/ffhq_alae_latents.npz
    python -m experiments.run --config=configs/ffhq_alae.py:smoke,path=/data/ffhq_alae_latents.npz

The .npz holds one [N_c, 512] array per class (the reference latents' layout: male /
female x children / adult / old), or 'latents' + 'labels'. Generator: noise 512 + class
embedding 64 -> 3 x (Linear 1024 + ReLU) -> Linear 512; Adam 3e-4 (embeddings 1e-3),
cosine decay, gradient clip 5; 682 generated and 682 positive latents per class per step
(batch 4096), 5000 steps; tau in {0.1, 1, 10} on squared distances; Sinkhorn T = 61
against the two-sided baseline; evaluation: 1000 generated vs 1000 held-out latents per
class (W2^2 and latent Frechet distance), and with ``decoder=`` and ``features=`` (your
ALAE decoder, latents [n, 512] -> images, and feature extractor, images -> [n, k], as
'module:function') the FID of the decoded generated latents against the decoded
held-out ones. Needs an accelerator at this batch. Without a path, the run stops with a
message before any work; configs/latents.py runs the same pipeline offline.
``smoke`` checks a file and the pipeline in seconds (small model, 10 steps); without a
path it runs on a synthetic stand-in of the same shape (6 classes of 512-d latents).
The default is the drift_field objective with absolute temperatures, what the paper's
Table 2 numbers come from (its FFHQ script drifts in raw latent units, tau on squared
distances, no feature normalization); ``scale_free`` switches to the reference codes'
feature-drift loss with temperatures relative to the batch's mean distance.
Short keys: path, keys (class keys in order), tau, taus, steps, seeds, T, algorithm,
devices, coupling, decoder, features.
"""
from configs import latents as latents_config
from experiments import config_lib

ALIASES = dict(latents_config.ALIASES, path="data.path", keys="data.class_keys")
PER_SETTING = latents_config.PER_SETTING
VARIANTS = {
    "smoke": "10 steps of a small model on path= (without one: a synthetic 6 x 512-d stand-in)",
    "scale_free": "the reference codes' loss, tau relative to the batch's mean distance",
}


def get_config(arg=None):
  flags, assignments = config_lib.parse_variant(arg)
  config_lib.check_unknown_flags(flags, VARIANTS, "configs/ffhq_alae.py")
  c = latents_config.base_config()
  if "scale_free" in flags:
    latents_config.make_scale_free(c)
  c.data.source = "npz"
  c.train = config_lib.train_config(steps=5000, batch_size=682, log_every=100,
                                    eval_every=1000, checkpoint_every=1000)
  if "smoke" in flags:
    latents_config.make_smoke(c)
    if not assignments.get("path"):
      # Runs out of the box: the latents' shape (6 classes x 512-d) drawn synthetically.
      c.data.update(source="synthetic", train_per_class=200)
  config_lib.apply_sweep_assignments(c, assignments, ALIASES, PER_SETTING,
                                     "configs/ffhq_alae.py")
  return c
