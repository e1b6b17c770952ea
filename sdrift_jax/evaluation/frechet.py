"""Frechet distance between Gaussians fitted to two feature sets (the "F" of FID).

``FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2})``, computed in
float64 with symmetric eigendecompositions only: ``S_1^{1/2} S_2 S_1^{1/2}`` is symmetric
positive semi-definite, so the trace of its square root is the sum of the square roots
of its (clipped) eigenvalues. This avoids ``scipy.linalg.sqrtm`` on the non-symmetric
product ``S_1 S_2`` and its complex round-off. Features come from a user-supplied
extractor (Inception for FID proper); this module does not ship one, but
:class:`DecodedFID` runs a user's decoder and extractor, named in a config as
``'module:function'`` (:func:`import_hook`).
"""
from __future__ import annotations

import importlib
import re
from typing import Callable, Optional

import numpy as np

__all__ = ["DecodedFID", "frechet_distance", "gaussian_frechet_distance", "import_hook"]


def _psd_sqrt(S: np.ndarray) -> np.ndarray:
  w, U = np.linalg.eigh(S)
  return (U * np.sqrt(np.clip(w, 0.0, None))) @ U.T


def gaussian_frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Squared Frechet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

  Args:
    mu1: array of shape ``[D]``.
    sigma1: symmetric positive semi-definite array of shape ``[D, D]``.
    mu2: array of shape ``[D]``.
    sigma2: array of shape ``[D, D]``.

  Returns:
    The distance as a Python float (never negative).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.ndim != 1 or mu1.shape != mu2.shape:
    raise ValueError(f"means must be vectors of one shape, got {mu1.shape} and {mu2.shape}")
  d = mu1.shape[0]
  if s1.shape != (d, d) or s2.shape != (d, d):
    raise ValueError(f"covariances must have shape [{d}, {d}], got {s1.shape} and {s2.shape}")
  s1, s2 = 0.5 * (s1 + s1.T), 0.5 * (s2 + s2.T)
  r1 = _psd_sqrt(s1)
  cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0.0, None)))
  value = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)
  return max(value, 0.0)


def frechet_distance(features1, features2) -> float:
  """Frechet distance between the Gaussians fitted to two feature sets ``[n_i, D]``."""
  f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
  for name, f in (("features1", f1), ("features2", f2)):
    if f.ndim != 2 or f.shape[0] < 2:
      raise ValueError(f"{name} must have shape [n >= 2, D], got {f.shape}")
    if not np.all(np.isfinite(f)):
      raise ValueError(f"{name} contains NaN or inf")
  if f1.shape[1] != f2.shape[1]:
    raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
  return gaussian_frechet_distance(f1.mean(0), np.cov(f1, rowvar=False),
                                   f2.mean(0), np.cov(f2, rowvar=False))


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def import_hook(spec: str, key: str) -> Callable:
  """The callable named ``'package.module:function'`` (a config field's value).

  Raises:
    ValueError: naming ``key`` when the spec is malformed, the module cannot be imported,
      or the attribute is missing or not callable.
  """
  module_name, sep, attr = str(spec).partition(":")
  if not sep or not module_name or not attr:
    raise ValueError(f"{key} = {spec!r}: expected 'package.module:function'")
  if not (_DOTTED.fullmatch(module_name) and _DOTTED.fullmatch(attr)):
    raise ValueError(f"{key} = {spec!r}: expected 'package.module:function', an absolute "
                     "module name (dotted words: not a file path or a relative name; put "
                     "the module's directory on PYTHONPATH) and a function in it")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"{key} = {spec!r}: cannot import {module_name!r} ({e})") from None
  fn = module
  for part in attr.split("."):
    fn = getattr(fn, part, None)
    if fn is None:
      raise ValueError(f"{key} = {spec!r}: {module_name!r} has no attribute {attr!r}")
  if not callable(fn):
    raise ValueError(f"{key} = {spec!r}: {attr!r} is not callable")
  return fn


class DecodedFID:
  """FID of decoded latents: ``decoder`` maps latents ``[n, D]`` to images, ``features``
  maps images to features ``[n, k]`` (Inception pool features for FID proper); both are
  the user's, called on NumPy arrays in batches of ``batch``.

  ``__call__(generated, reference)`` takes two lists of per-class latent arrays and
  returns the Frechet distance of their decoded features per class, plus the one of all
  classes pooled. The reference features are computed once and kept (they are the
  held-out latents, the same at every evaluation).
  """

  def __init__(self, decoder: Callable, features: Callable, batch: int = 250):
    if batch < 1:
      raise ValueError(f"config.eval.fid_batch must be >= 1, got {batch}")
    self.decoder, self.features, self.batch = decoder, features, int(batch)
    self._reference: Optional[list[np.ndarray]] = None

  def featurize(self, latents: np.ndarray) -> np.ndarray:
    """Decoded features of ``latents [n, D]`` -> ``[n, k]`` float64."""
    out = []
    for i in range(0, len(latents), self.batch):
      z = np.asarray(latents[i:i + self.batch], np.float32)
      images = np.asarray(self.decoder(z))
      if images.shape[:1] != (len(z),):
        raise ValueError(f"config.eval.decoder returned shape {images.shape} for "
                         f"{len(z)} latents; expected {len(z)} images along axis 0")
      f = np.asarray(self.features(images), np.float64)
      if f.ndim != 2 or len(f) != len(z):
        raise ValueError(f"config.eval.features returned shape {f.shape} for {len(z)} "
                         "images; expected [n, k]")
      out.append(f)
    return np.concatenate(out)

  def __call__(self, generated, reference) -> tuple[list[float], float]:
    if self._reference is None:
      self._reference = [self.featurize(r) for r in reference]
    gen = [self.featurize(g) for g in generated]
    per_class = [frechet_distance(g, r) for g, r in zip(gen, self._reference)]
    pooled = frechet_distance(np.concatenate(gen), np.concatenate(self._reference))
    return per_class, pooled
