"""Feature sets from encoder feature maps against explicit float64 NumPy loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdrift_jax.drift.feature_sets import EPS, feature_sets

# float32 against float64 on data of size up to ~11 (offset 3, scale 2): measured max
# |error| 1.4e-6 over 20 seeds (the std sets); the bound, 1e-5 + 1e-6 |value|, is 7x
# that or more. The unbiased std (a relative change of at least sqrt(96/95) - 1 = 5e-3
# on the 8 x 12 map's 96 locations) or swapped mean and std are far outside it; a
# missing EPS (2.5e-7 at std ~2) is not, and is caught by the constant-map test.
_ATOL, _RTOL = 1e-5, 1e-6


def _maps(seed, shapes, offset=3.0, scale=2.0):
  rng = np.random.default_rng(seed)
  return {name: (offset + scale * rng.normal(size=shape)).astype(np.float32)
          for name, shape in shapes.items()}


def _std64(values):
  """Biased std of a list of float64 vectors (one per location), plus EPS, by hand."""
  values = np.asarray(values, np.float64)
  mu = sum(values) / len(values)
  return np.sqrt(sum((v - mu) ** 2 for v in values) / len(values) + EPS)


def _reference64(f, sizes):
  """The sets of one map [N, H, W, C], sample by sample and patch by patch."""
  f = f.astype(np.float64)
  n, h, w, c = f.shape
  out = {"loc": np.zeros((n, h * w, c)), "mean": np.zeros((n, 1, c)),
         "std": np.zeros((n, 1, c))}
  for i in range(n):
    vectors = [f[i, y, x] for y in range(h) for x in range(w)]
    out["loc"][i] = vectors
    out["mean"][i, 0] = sum(vectors) / len(vectors)
    out["std"][i, 0] = _std64(vectors)
  for s in sizes:
    if h % s or w % s:
      continue
    mean, std = np.zeros((n, (h // s) * (w // s), c)), np.zeros((n, (h // s) * (w // s), c))
    for i in range(n):
      for py in range(h // s):
        for px in range(w // s):
          patch = [f[i, py * s + dy, px * s + dx] for dy in range(s) for dx in range(s)]
          mean[i, py * (w // s) + px] = sum(patch) / len(patch)
          std[i, py * (w // s) + px] = _std64(patch)
    out[f"patch{s}_mean"], out[f"patch{s}_std"] = mean, std
  return out


def test_keys_order_and_shapes():
  maps = _maps(0, {"stage1": (3, 8, 8, 5), "stage2": (3, 4, 4, 6)})
  images = np.ones((3, 8, 8, 1), np.float32)
  sets = feature_sets(maps, images)
  want = {}
  for name, (hw, c) in (("stage1", (8, 5)), ("stage2", (4, 6))):
    want.update({f"{name}/loc": (3, hw * hw, c), f"{name}/mean": (3, 1, c),
                 f"{name}/std": (3, 1, c),
                 f"{name}/patch2_mean": (3, (hw // 2) ** 2, c),
                 f"{name}/patch2_std": (3, (hw // 2) ** 2, c),
                 f"{name}/patch4_mean": (3, (hw // 4) ** 2, c),
                 f"{name}/patch4_std": (3, (hw // 4) ** 2, c)})
  want["input/rms"] = (3, 1, 1)
  assert list(sets) == sorted(want)
  assert {k: v.shape for k, v in sets.items()} == want
  assert all(v.dtype == jnp.float32 for v in sets.values())
  # The switches, and the images' set only with images.
  assert list(feature_sets(maps, images, per_location=False, global_stats=False,
                           patch_sizes=(4,), input_rms=False)) == [
                               "stage1/patch4_mean", "stage1/patch4_std",
                               "stage2/patch4_mean", "stage2/patch4_std"]
  assert "input/rms" not in feature_sets(maps)
  assert list(feature_sets({"b": maps["stage2"], "a": maps["stage1"]}, patch_sizes=())) == [
      "a/loc", "a/mean", "a/std", "b/loc", "b/mean", "b/std"]


def test_values_match_float64_loops():
  """Non-square maps (8 x 12: a 2 x 3 grid of 4 x 4 patches) with a mean offset; the
  images have one negative and one positive channel. Also under jit."""
  maps = _maps(1, {"a": (3, 8, 12, 5), "b": (3, 4, 4, 6)})
  images = _maps(2, {"x": (3, 8, 8, 2)}, offset=0.0)["x"]
  images[..., 0] -= 2.0
  want = {}
  for name, f in maps.items():
    want.update({f"{name}/{k}": v for k, v in _reference64(f, (2, 4)).items()})
  want["input/rms"] = np.zeros((3, 1, 2))
  for i in range(3):
    for ch in range(2):
      sq = [float(images[i, y, x, ch]) ** 2 for y in range(8) for x in range(8)]
      want["input/rms"][i, 0, ch] = np.sqrt(sum(sq) / len(sq) + EPS)
  for sets in (feature_sets(maps, images), jax.jit(feature_sets)(maps, images)):
    assert list(sets) == sorted(want)
    for key, value in want.items():
      np.testing.assert_allclose(np.asarray(sets[key], np.float64), value, rtol=_RTOL,
                                 atol=_ATOL, err_msg=key)


def test_constant_patches_give_sqrt_eps_and_zero_input_too():
  """A constant map has std exactly sqrt(EPS) = 1e-3 everywhere (the EPS inside the
  square root, not added after it), and zero images have rms sqrt(EPS)."""
  f = np.full((2, 4, 4, 3), 5.0, np.float32)
  sets = feature_sets({"c": f}, np.zeros((2, 4, 4, 3), np.float32))
  for key in ("c/std", "c/patch2_std", "c/patch4_std", "input/rms"):
    np.testing.assert_allclose(sets[key], np.sqrt(EPS), rtol=1e-6, err_msg=key)
  for key in ("c/mean", "c/patch2_mean", "c/patch4_mean"):
    np.testing.assert_allclose(sets[key], 5.0, rtol=1e-7, err_msg=key)


def test_non_divisible_and_too_large_patch_sizes_are_skipped():
  """A size is kept for a map only if it divides both H and W: nothing is cropped."""
  maps = _maps(3, {"six": (2, 6, 6, 3), "seven": (2, 7, 7, 3), "two": (2, 2, 2, 3),
                   "wide": (2, 4, 6, 3), "one": (2, 1, 1, 3)})
  sets = feature_sets(maps, patch_sizes=(2, 4))
  patch_keys = {k: v.shape for k, v in sets.items() if "/patch" in k}
  assert patch_keys == {"six/patch2_mean": (2, 9, 3), "six/patch2_std": (2, 9, 3),
                        "two/patch2_mean": (2, 1, 3), "two/patch2_std": (2, 1, 3),
                        "wide/patch2_mean": (2, 6, 3), "wide/patch2_std": (2, 6, 3)}
  # The other sets are there for every map; one location has std sqrt(EPS).
  for name in maps:
    assert {f"{name}/loc", f"{name}/mean", f"{name}/std"} <= set(sets)
  np.testing.assert_allclose(sets["one/std"], np.sqrt(EPS), rtol=1e-6)
  # A single patch covering the whole map equals the global statistics.
  np.testing.assert_allclose(sets["two/patch2_std"], sets["two/std"], rtol=1e-6)
  np.testing.assert_allclose(sets["two/patch2_mean"], sets["two/mean"], rtol=1e-6)
  ref = _reference64(maps["wide"], (2, 4))
  assert "patch4_mean" not in ref
  np.testing.assert_allclose(sets["wide/patch2_std"], ref["patch2_std"], rtol=_RTOL,
                             atol=_ATOL)


def _total(f, images):
  return sum(jnp.sum(v) for v in feature_sets({"m": f}, images).values())


@pytest.mark.parametrize("constant", [False, True])
def test_gradients_are_finite(constant):
  """The gradient of the sum of all sets is finite, also where every std is at zero
  variance and the images are zero; there the std sets contribute exactly nothing."""
  f = (np.full((2, 4, 4, 3), 1.5, np.float32) if constant
       else _maps(4, {"m": (2, 4, 4, 3)})["m"])
  images = np.zeros((2, 4, 4, 1), np.float32) if constant else f[..., :1] + 0.0
  g_f, g_x = jax.grad(_total, argnums=(0, 1))(f, images)
  assert np.all(np.isfinite(g_f)) and np.all(np.isfinite(g_x))
  if constant:
    # loc: 1, mean: 1/16, patch2 mean: 1/4, patch4 mean: 1/16 per element.
    np.testing.assert_allclose(g_f, 1.0 + 1 / 16 + 1 / 4 + 1 / 16, rtol=1e-6)
    np.testing.assert_array_equal(g_x, 0.0)


def test_std_gradient_matches_float64_formula():
  """d std / d f_i = (f_i - mu) / (n std) over one map's H*W locations."""
  f = _maps(5, {"m": (2, 4, 8, 3)})["m"]
  grad = jax.grad(lambda v: jnp.sum(feature_sets({"m": v}, per_location=False,
                                                 patch_sizes=())["m/std"]))(f)
  x = f.astype(np.float64)
  mu = x.mean(axis=(1, 2), keepdims=True)
  std = np.sqrt(((x - mu) ** 2).mean(axis=(1, 2), keepdims=True) + EPS)
  np.testing.assert_allclose(grad, (x - mu) / (32 * std), rtol=1e-4, atol=1e-6)


_GOOD = np.zeros((2, 4, 4, 3), np.float32)


@pytest.mark.parametrize("maps, images, patch_sizes, match", [
    ({}, None, (2,), "maps must be a non-empty mapping"),
    ([_GOOD], None, (2,), "maps must be a non-empty mapping"),
    ({1: _GOOD}, None, (2,), "names must be strings"),
    ({"a": _GOOD[0]}, None, (2,), r"maps\['a'\] must be 4-d"),
    ({"a": _GOOD.astype(np.int32)}, None, (2,), r"maps\['a'\] must be a floating"),
    ({"a": _GOOD[:, :0]}, None, (2,), r"maps\['a'\] must have no empty axis"),
    ({"a": _GOOD, "b": _GOOD[:1]}, None, (2,), r"maps\['b'\] has 1 samples, expected 2"),
    ({"a": _GOOD}, _GOOD[0], (2,), "images must be 4-d"),
    ({"a": _GOOD}, _GOOD[:1], (2,), "images has 1 samples, expected 2"),
    ({"a": _GOOD}, _GOOD > 0, (2,), "images must be a floating"),
    ({"a": _GOOD}, None, 2, "patch_sizes must be a sequence"),
    ({"a": _GOOD}, None, (0,), "patch_sizes must hold positive ints"),
    ({"a": _GOOD}, None, (2.0,), "patch_sizes must hold positive ints"),
    ({"a": _GOOD}, None, (True,), "patch_sizes must hold positive ints"),
    ({"a": _GOOD}, None, (2, 2), "patch_sizes has a repeated size"),
])
def test_bad_inputs_raise(maps, images, patch_sizes, match):
  with pytest.raises(ValueError, match=match):
    feature_sets(maps, images, patch_sizes=patch_sizes)
