"""Class-conditional latent datasets (paper Sec. 5.4: FFHQ-ALAE latents).

Two on-disk layouts of an ``.npz`` are read:

* one key per class, each ``[N_c, D]`` (the reference FFHQ-ALAE latents' layout); the
  classes are the keys in sorted order, or ``class_keys`` in the order given;
* ``latents [N, D]`` plus integer ``labels [N]`` (classes ``0 .. C - 1``).

With ``lazy=True`` nothing but the array headers is read up front: each class is a
:class:`RowView` that reads the rows asked for, straight from the file when the member is
stored uncompressed (``np.savez``; a memory map), so a process of a multi-host job reads
only its share. Compressed members (``np.savez_compressed``) are read whole on first use.

Since the FFHQ-ALAE latents cannot ship, :func:`synthetic_latents` makes a stand-in of
the same shape whose distribution is known exactly (a Gaussian per class with a random
mean and a low-rank-plus-isotropic covariance), so that W2^2 and Frechet distances
against fresh draws measure something.
"""
from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from typing import Optional, Sequence

import numpy as np


def _check_finite(name: str, rows: np.ndarray, path: Optional[str] = None) -> np.ndarray:
  if not np.all(np.isfinite(rows)):
    bad = int(np.sum(~np.all(np.isfinite(rows), axis=1)))
    where = f"{path}: " if path else ""
    raise ValueError(f"{where}class {name!r}: {bad} latent(s) contain NaN or inf")
  return rows


class RowView:
  """The latents of one class, read on demand: ``view[rows]`` -> float32 ``[k, D]``.

  Reads (and checks for NaN/inf, naming the class) only the rows indexed. ``subset``
  gives a view of some of the rows (a train / held-out split) without reading them.
  ``np.asarray(view)`` reads all. ``path`` (the file) is named in its errors.
  """

  def __init__(self, name: str, base, index: Optional[np.ndarray] = None,
               path: Optional[str] = None):
    self.name, self._base, self.path = name, base, path
    self._index = None if index is None else np.asarray(index, np.int64)

  def __len__(self) -> int:
    return len(self._base) if self._index is None else len(self._index)

  @property
  def shape(self) -> tuple[int, int]:
    return (len(self), int(self._base.shape[1]))

  def subset(self, rows) -> "RowView":
    rows = np.arange(len(self))[rows]
    return RowView(self.name, self._base, rows if self._index is None else self._index[rows],
                   path=self.path)

  def __getitem__(self, rows) -> np.ndarray:
    if self._index is not None:
      rows = self._index[rows]
      # A memory map reads increasing rows fastest; keep the asked order.
      order = np.argsort(rows, kind="stable")
      out = np.empty((len(rows), self.shape[1]), np.float32)
      out[order] = np.asarray(self._base[rows[order]], np.float32)
    else:
      out = np.asarray(self._base[rows], np.float32)
    return _check_finite(self.name, out, self.path)

  def __array__(self, dtype=None, copy=None):
    out = self[:]
    return out if dtype is None else out.astype(dtype)


#: What reading a damaged member raises (zip, zlib and .npy header errors).
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, struct.error, zipfile.BadZipFile,
                zlib.error, MemoryError)


def _member(path: str, zf: zipfile.ZipFile, key: str):
  """The array ``key`` of an open ``.npz``: a read-only memory map when the member is
  stored uncompressed, else the array read whole.

  The size the member's ``.npy`` header declares (shape x item size) is checked against
  the member's actual size before anything is allocated or mapped.

  Raises:
    ValueError: naming the file and the member, for a member that cannot be read.
  """
  try:
    return _read_member(path, zf, key)
  except _READ_ERRORS as e:
    message = " ".join(str(e).split())
    if message.startswith(f"{path}: "):
      raise ValueError(message) from None
    raise ValueError(f"{path}: cannot read array {key!r} ({type(e).__name__}: {message}); "
                     "the file is damaged or not written by numpy.savez") from None


def _read_member(path: str, zf: zipfile.ZipFile, key: str):
  info = zf.getinfo(key + ".npy")
  with zf.open(info) as f:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
    header_len = f.tell()
  if dtype.hasobject:
    raise ValueError(f"{path}: array {key!r} holds Python objects; expected numbers")
  declared = math.prod(shape) * dtype.itemsize
  actual = info.file_size - header_len
  if declared != actual:
    raise ValueError(f"{path}: array {key!r} declares shape {shape} of {dtype} "
                     f"({declared:,} bytes) but holds {actual:,} bytes; the file is "
                     "damaged or not written by numpy.savez")
  if info.compress_type != zipfile.ZIP_STORED or not shape or 0 in shape:
    with zf.open(info) as f:
      return np.lib.format.read_array(f, allow_pickle=False)
  with open(path, "rb") as raw:  # the member's data start: its local header, then the .npy
    raw.seek(info.header_offset)
    local = raw.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
  offset = info.header_offset + 30 + name_len + extra_len + header_len
  if offset + declared > os.path.getsize(path):
    raise ValueError(f"{path}: array {key!r} ends {offset + declared - os.path.getsize(path):,} "
                     "bytes past the end of the file; the file is truncated")
  return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                   order="F" if fortran else "C")


def load_latents(path: str, *, class_keys: Optional[Sequence[str]] = None,
                 min_per_class: int = 1, lazy: bool = False
                 ) -> tuple[list, list[str]]:
  """Reads a class-conditional latent ``.npz``.

  Args:
    path: the ``.npz`` file.
    class_keys: for the per-class layout, the keys to use, in class order (default: all
      keys, sorted).
    min_per_class: the fewest latents a class may have (a train batch per class, say).
    lazy: return :class:`RowView` s that read rows on demand (NaN/inf are then reported
      when the rows are read) instead of float32 arrays read and checked now.

  Returns:
    ``(per_class, names)``: ``[N_c, D]`` float32 arrays (or row views) and class names.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a missing key, ragged dimensions, NaN/inf, bad labels, or a class with
      fewer than ``min_per_class`` latents; the message names the class.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"latent file {path!r} does not exist (expected an .npz with "
                            "one [N_c, D] array per class, or 'latents' and 'labels')")
  try:
    zf = zipfile.ZipFile(path)
  except zipfile.BadZipFile:
    raise ValueError(f"{path}: not an .npz (zip) file") from None
  with zf:
    keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    if "latents" in keys or "labels" in keys:
      if not ("latents" in keys and "labels" in keys):
        raise ValueError(f"{path}: has {'latents' if 'latents' in keys else 'labels'} but "
                         f"not {'labels' if 'latents' in keys else 'latents'}")
      latents = _member(path, zf, "latents")
      labels = np.asarray(_member(path, zf, "labels"))
      if labels.ndim != 1 or len(labels) != len(latents):
        raise ValueError(f"{path}: labels must have shape [{len(latents)}], got {labels.shape}")
      if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{path}: labels must be non-negative integers")
      names = [str(c) for c in range(int(labels.max()) + 1)]
      _check_layout(path, "latents", latents, None)
      views = [RowView(n, latents, np.flatnonzero(labels == c), path=path)
               for c, n in enumerate(names)]
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
      views = [RowView(n, _member(path, zf, n), path=path) for n in names]
  dim = None
  for view in views:
    _check_layout(path, view.name, view._base, dim)
    dim = view.shape[1]
    if len(view) < min_per_class:
      raise ValueError(f"{path}: class {view.name!r} has {len(view)} latents, fewer than the "
                       f"{min_per_class} one train batch per class needs")
  return (views if lazy else [np.asarray(v) for v in views]), names


def _check_layout(path: str, name: str, arr, dim: Optional[int]) -> None:
  if arr.ndim != 2:
    raise ValueError(f"{path}: class {name!r}: expected an array [N_c, D], got shape "
                     f"{arr.shape}")
  if not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(f"{path}: class {name!r}: expected floating latents, got dtype "
                     f"{arr.dtype}")
  if dim is not None and arr.shape[1] != dim:
    raise ValueError(f"{path}: ragged latent dimensions: class {name!r} has D = "
                     f"{arr.shape[1]}, the first class has D = {dim}")


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
