"""Class-conditional latent datasets (paper Sec. 5.4: FFHQ-ALAE latents).

Two on-disk layouts of an ``.npz`` are read:

* one key per class, each ``[N_c, D]`` (the reference FFHQ-ALAE latents' layout); the
  classes are the keys in sorted order, or ``class_keys`` in the order given;
* ``latents [N, D]`` plus integer ``labels [N]`` (classes ``0 .. C - 1``).

Since the FFHQ-ALAE latents cannot ship, :func:`synthetic_latents` makes a stand-in of
the same shape whose distribution is known exactly (a Gaussian per class with a random
mean and a low-rank-plus-isotropic covariance), so that W2^2 and Frechet distances
against fresh draws measure something.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np


def _check_class(name: str, arr: np.ndarray, dim: Optional[int]) -> np.ndarray:
  if arr.ndim != 2:
    raise ValueError(f"class {name!r}: expected an array [N_c, D], got shape {arr.shape}")
  if not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(f"class {name!r}: expected floating latents, got dtype {arr.dtype}")
  if dim is not None and arr.shape[1] != dim:
    raise ValueError(f"ragged latent dimensions: class {name!r} has D = {arr.shape[1]}, "
                     f"the first class has D = {dim}")
  if not np.all(np.isfinite(arr)):
    bad = int(np.sum(~np.all(np.isfinite(arr), axis=1)))
    raise ValueError(f"class {name!r}: {bad} latent(s) contain NaN or inf")
  return arr.astype(np.float32)


def load_latents(path: str, *, class_keys: Optional[Sequence[str]] = None,
                 min_per_class: int = 1) -> tuple[list[np.ndarray], list[str]]:
  """Reads a class-conditional latent ``.npz``.

  Args:
    path: the ``.npz`` file.
    class_keys: for the per-class layout, the keys to use, in class order (default: all
      keys, sorted).
    min_per_class: the fewest latents a class may have (a train batch per class, say).

  Returns:
    ``(per_class, names)``: a list of ``[N_c, D]`` float32 arrays and their class names.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a missing key, ragged dimensions, NaN/inf, bad labels, or a class with
      fewer than ``min_per_class`` latents; the message names the class.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"latent file {path!r} does not exist (expected an .npz with "
                            "one [N_c, D] array per class, or 'latents' and 'labels')")
  with np.load(path, allow_pickle=False) as z:
    keys = list(z.keys())
    if "latents" in keys or "labels" in keys:
      if not ("latents" in keys and "labels" in keys):
        raise ValueError(f"{path}: has {'latents' if 'latents' in keys else 'labels'} but "
                         f"not {'labels' if 'latents' in keys else 'latents'}")
      latents, labels = z["latents"], z["labels"]
      if labels.ndim != 1 or len(labels) != len(latents):
        raise ValueError(f"{path}: labels must have shape [{len(latents)}], got {labels.shape}")
      if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{path}: labels must be non-negative integers")
      names = [str(c) for c in range(int(labels.max()) + 1)]
      raw = [latents[labels == c] for c in range(len(names))]
    else:
      if class_keys is not None:
        missing = [k for k in class_keys if k not in keys]
        if missing:
          raise ValueError(f"{path}: missing class key(s) {missing}; keys present: {keys}")
        names = list(class_keys)
      else:
        names = sorted(keys)
      if not names:
        raise ValueError(f"{path}: no arrays in the file")
      raw = [z[k] for k in names]
  per_class, dim = [], None
  for name, arr in zip(names, raw):
    arr = _check_class(name, np.asarray(arr), dim)
    dim = arr.shape[1]
    if len(arr) < min_per_class:
      raise ValueError(f"class {name!r} has {len(arr)} latents, fewer than the "
                       f"{min_per_class} one train batch per class needs")
    per_class.append(arr)
  return per_class, names


class SyntheticLatents:
  """A known class-conditional distribution: class ``c`` is ``N(mean_c, cov_c)``.

  ``cov_c = scale^2 (A_c A_c^T / rank + noise^2 I)`` with ``A_c`` of shape ``[D, rank]``.
  """

  def __init__(self, num_classes: int = 6, dim: int = 512, rank: int = 16,
               mean_scale: float = 3.0, scale: float = 1.0, noise: float = 0.3,
               seed: int = 0):
    rng = np.random.default_rng(seed)
    self.num_classes, self.dim = num_classes, dim
    self.means = mean_scale * rng.normal(size=(num_classes, dim))
    self.factors = scale * rng.normal(size=(num_classes, dim, rank)) / np.sqrt(rank)
    self.noise = scale * noise

  def covariance(self, c: int) -> np.ndarray:
    A = self.factors[c]
    return A @ A.T + self.noise**2 * np.eye(self.dim)

  def sample(self, c: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, c])
    z = rng.normal(size=(n, self.factors.shape[2]))
    e = rng.normal(size=(n, self.dim))
    return (self.means[c] + z @ self.factors[c].T + self.noise * e).astype(np.float32)

  def save(self, path: str, per_class: int, seed: int = 1,
           names: Optional[Sequence[str]] = None) -> None:
    """Writes ``per_class`` draws of every class in the per-class ``.npz`` layout."""
    names = list(names) if names is not None else [f"class{c}" for c in range(self.num_classes)]
    np.savez(path, **{name: self.sample(c, per_class, seed) for c, name in enumerate(names)})
