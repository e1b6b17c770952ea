"""experiments.data.latents: per-class latent files (eager and lazy), their errors, and
the synthetic stand-in."""
import io
import zipfile

import numpy as np
import pytest

from sdrift_jax.evaluation import frechet
from experiments.data import latents as latents_lib


def test_per_class_npz_round_trip_and_order(tmp_path):
  syn = latents_lib.SyntheticLatents(num_classes=3, dim=8, rank=2, seed=0)
  path = str(tmp_path / "lat.npz")
  syn.save(path, per_class=10, names=["b_old", "a_child", "c_adult"])
  per_class, names = latents_lib.load_latents(path)
  assert names == ["a_child", "b_old", "c_adult"]  # sorted keys
  np.testing.assert_array_equal(per_class[1], syn.sample(0, 10, 1))
  per_class, names = latents_lib.load_latents(path, class_keys=["c_adult", "b_old"])
  assert names == ["c_adult", "b_old"] and per_class[0].shape == (10, 8)


def test_latents_and_labels_layout(tmp_path):
  rng = np.random.default_rng(3)
  lat = rng.normal(size=(30, 4)).astype(np.float32)
  lab = np.repeat(np.arange(3), 10)
  rng.shuffle(lab)
  path = str(tmp_path / "ll.npz")
  np.savez(path, latents=lat, labels=lab)
  per_class, names = latents_lib.load_latents(path)
  assert names == ["0", "1", "2"]
  for c in range(3):
    np.testing.assert_array_equal(per_class[c], lat[lab == c])


@pytest.mark.parametrize("arrays,kwargs,match", [
    (dict(a=np.zeros((5, 4), np.float32), b=np.zeros((5, 3), np.float32)), {}, "ragged"),
    (dict(a=np.full((5, 4), np.nan, np.float32)), {}, "NaN"),
    (dict(a=np.zeros((5, 4), np.float32)), dict(min_per_class=8), "fewer than the 8"),
    (dict(a=np.zeros((5, 4), np.float32)), dict(class_keys=["a", "zz"]), "missing class key"),
    (dict(latents=np.zeros((5, 4), np.float32)), {}, "not labels"),
    (dict(latents=np.zeros((5, 4), np.float32), labels=np.zeros(4, np.int64)), {}, "labels"),
    (dict(a=np.zeros((5,), np.float32)), {}, r"\[N_c, D\]"),
])
def test_bad_latent_files_name_the_problem(tmp_path, arrays, kwargs, match):
  path = str(tmp_path / "bad.npz")
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=match) as e:
    latents_lib.load_latents(path, **kwargs)
  assert str(e.value).startswith(f"{path}: ")


def _npz_with_header(path, shape, compress, data=np.zeros((5, 4), np.float32)):
  """An ``.npz`` whose member ``a.npy`` declares ``shape`` but holds ``data``."""
  buf = io.BytesIO()
  np.lib.format.write_array_header_1_0(buf, dict(descr="<f4", fortran_order=False,
                                                 shape=shape))
  buf.write(data.tobytes())
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
    z.writestr("a.npy", buf.getvalue())


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("compress", [False, True])
def test_a_member_declaring_a_huge_shape_is_refused_before_allocating(tmp_path, compress,
                                                                       lazy):
  path = str(tmp_path / "huge.npz")
  _npz_with_header(path, (10**9, 512), compress)  # 2 TB declared, 80 bytes held
  with pytest.raises(ValueError) as e:  # not numpy's MemoryError, nor mmap's ValueError
    latents_lib.load_latents(path, lazy=lazy)
  assert str(e.value) == (
      f"{path}: array 'a' declares shape (1000000000, 512) of float32 "
      "(2,048,000,000,000 bytes) but holds 80 bytes; the file is damaged or not written "
      "by numpy.savez")


@pytest.mark.parametrize("damage", ["truncated", "bad_magic", "bad_crc"])
def test_a_damaged_member_names_the_file_and_the_member(tmp_path, damage):
  path = tmp_path / "lat.npz"
  np.savez_compressed(path, a=np.arange(4000, dtype=np.float32).reshape(1000, 4))
  raw = bytearray(path.read_bytes())
  if damage == "truncated":  # the archive's directory is gone: not a zip file
    raw = raw[: len(raw) // 2]
  elif damage == "bad_magic":
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
      z.writestr("a.npy", b"\x00" * 200)
    raw = bytearray(path.read_bytes())
  else:
    raw[200] ^= 0xFF  # inside the compressed data
  path.write_bytes(bytes(raw))
  with pytest.raises(ValueError) as e:
    latents_lib.load_latents(str(path))
  assert str(e.value).startswith(f"{path}: ")
  assert damage == "truncated" or "cannot read array 'a'" in str(e.value)


def test_missing_latent_file():
  with pytest.raises(FileNotFoundError, match="does not exist"):
    latents_lib.load_latents("/nonexistent/latents.npz")


def test_synthetic_latents_follow_their_stated_distribution():
  syn = latents_lib.SyntheticLatents(num_classes=2, dim=6, rank=2, seed=4)
  x = syn.sample(1, 40000, seed=5).astype(np.float64)
  np.testing.assert_allclose(x.mean(0), syn.means[1], atol=0.05)
  np.testing.assert_allclose(np.cov(x, rowvar=False), syn.covariance(1), atol=0.05)
  # Fresh draws of one class are Frechet-close; the two classes are far apart.
  y = syn.sample(1, 40000, seed=6)
  assert frechet.frechet_distance(x, y) < 0.01
  assert frechet.frechet_distance(x, syn.sample(0, 40000, seed=6)) > 10


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_lazy_npz_reads_rows_on_demand(tmp_path, save):
  rng = np.random.default_rng(5)
  a = rng.normal(size=(50, 6)).astype(np.float32)
  b = np.asfortranarray(rng.normal(size=(40, 6)))  # float64, Fortran order
  path = str(tmp_path / "lazy.npz")
  save(path, a=a, b=b)
  views, names = latents_lib.load_latents(path, lazy=True)
  assert names == ["a", "b"] and views[0].shape == (50, 6) and len(views[1]) == 40
  # Uncompressed members are memory-mapped, compressed ones read whole.
  assert isinstance(views[0]._base, np.memmap) == (save is np.savez)
  np.testing.assert_array_equal(views[0][10:20], a[10:20])
  np.testing.assert_array_equal(views[1][[7, 3, 39]], b[[7, 3, 39]].astype(np.float32))
  sub = views[0].subset(np.array([9, 2, 30]))
  np.testing.assert_array_equal(sub[1:], a[[2, 30]])
  np.testing.assert_array_equal(np.asarray(sub.subset(slice(0, 2))), a[[9, 2]])
  eager, _ = latents_lib.load_latents(path)
  np.testing.assert_array_equal(eager[1], b.astype(np.float32))


def test_lazy_labels_layout_and_nan_reported_when_read(tmp_path):
  lat = np.arange(40, dtype=np.float32).reshape(10, 4)
  lat[7, 2] = np.nan
  lab = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
  path = str(tmp_path / "ll.npz")
  np.savez(path, latents=lat, labels=lab)
  views, names = latents_lib.load_latents(path, lazy=True)  # headers only: no error yet
  np.testing.assert_array_equal(views[0][:], lat[lab == 0])
  np.testing.assert_array_equal(views[1][:3], lat[[1, 3, 5]])
  with pytest.raises(ValueError, match=f"^{path}: class '1': 1 latent"):
    views[1][2:4]
  with pytest.raises(ValueError, match="NaN"):
    latents_lib.load_latents(path)


def test_not_an_npz(tmp_path):
  path = tmp_path / "x.npz"
  path.write_text("hello")
  with pytest.raises(ValueError, match="not an .npz"):
    latents_lib.load_latents(str(path))
