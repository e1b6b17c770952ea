"""Largest absolute difference between the weights of two cached MNIST feature encoders
(``<cache>/encoder-<tag>`` directories written by ``experiments/mnist_models.py``).

    python -m benchmarks.compare_encoders /tmp/pxcache/encoder-e3d297e4e211 /tmp/pxcache/encoder-2f79bd33ae46
"""
import sys

import jax
import numpy as np
from flax import nnx

from sdrift_jax.training import checkpoint as checkpoint_lib
from sdrift_jax.models import pixel as pixel_models


def load(directory, template):
  ckpt = checkpoint_lib.Checkpointer(directory, max_to_keep=1)
  _, params = ckpt.restore_latest(template)
  ckpt.close()
  return params


def main(a, b, widths=(32, 64, 128)):
  _, template = nnx.split(pixel_models.MaskedConvEncoder(widths, rngs=nnx.Rngs(0)))
  pa, pb = (load(d, template) for d in (a, b))
  diff = max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))
  print(f"max abs difference of the weights: {diff}")


if __name__ == "__main__":
  main(*sys.argv[1:3])
