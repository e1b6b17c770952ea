"""A toy latent decoder and image feature extractor for the FID hook tests.

``decode``: latents [n, D] -> images [n, 4, 4] by a fixed random linear map and tanh;
``features``: images -> [n, 3] by a fixed random projection of the flattened image.
"""
import numpy as np

CALLS = {"decode": 0, "features": 0}


def decode(z):
  CALLS["decode"] += 1
  w = np.random.default_rng(0).normal(size=(z.shape[1], 16)) / np.sqrt(z.shape[1])
  return np.tanh(z @ w).reshape(len(z), 4, 4)


def features(images):
  CALLS["features"] += 1
  p = np.random.default_rng(1).normal(size=(16, 3))
  return images.reshape(len(images), -1) @ p


def bad_features(images):
  return images  # [n, 4, 4]: not [n, k]


NOT_CALLABLE = 3
