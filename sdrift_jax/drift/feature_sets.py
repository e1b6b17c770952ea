"""Feature sets from the feature maps of a frozen image encoder (Deng et al., App. A.5).

A feature set is an array ``[N, L, C]``: ``L`` vectors of dimension ``C`` per sample; the
drift loss (:func:`sdrift_jax.feature_sets_loss`) gives each set its own feature scale
and its own loss term, and treats its ``L`` locations as separate drift problems.

For a feature map ``f`` ``[N, H, W, C]`` named ``name``, with ``std`` the biased standard
deviation ``std(v) = sqrt(mean((v - mean(v))^2) + EPS)``, ``EPS = 1e-6``:

* ``name/loc`` ``[N, H*W, C]``: the vector at each location, row-major (``h * W + w``).
* ``name/mean``, ``name/std`` ``[N, 1, C]``: per-channel mean and std over all ``H*W``
  locations.
* ``name/patch{s}_mean``, ``name/patch{s}_std`` ``[N, (H/s)*(W/s), C]``: per-channel mean
  and std over each non-overlapping ``s x s`` patch (``s*s`` locations), one vector per
  patch, patches in row-major order over the ``(H/s, W/s)`` patch grid. Only made when
  ``s`` divides both ``H`` and ``W``; otherwise (in particular when ``s > H`` or
  ``s > W``) both sets are skipped for that map, nothing is cropped or padded.

For the images ``x`` ``[N, H, W, C_in]`` given to the encoder:

* ``input/rms`` ``[N, 1, C_in]``: ``sqrt(mean_{h,w} x^2 + EPS)`` per channel.

This follows the reference code of Deng et al. (github.com/lambertae/drifting),
``models/mae_model.py``, ``safe_std`` (lines 217-221) and ``get_activations`` (lines
321-340): the same sets (there ``name``, ``name_mean``, ``name_std``, ``name_mean_{s}``,
``name_std_{s}``), each mean and each std a set of its own, so with its own scale and
loss term (``train.py``, lines 119-143); the biased std with ``EPS`` inside the square
root; patches only for sizes dividing both sides (lines 333, 338); and the input's
``norm_x`` (line 322, also line 458), ``sqrt(mean x^2 + EPS)``, not the bare mean of
squares. Departures: all is computed in at least float32 (the reference casts only the
std to float32, float64 input included); the reference takes ``norm_x`` after an
optional space-to-depth of the input (``input_patch_size``, 1 by default); and the
encoder-specific parts (which maps, the ConvNeXt's per-location channel normalization
before the statistics in ``models/convnext.py``, the raw input as one set ``global``)
are left to the caller.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

__all__ = ["EPS", "feature_sets"]

EPS = 1e-6  # added to the variance (and to the input's mean square) before the sqrt


def _std(v, axis):
  """Biased std over ``axis``, ``sqrt(var + EPS)``: finite gradient at zero variance."""
  mu = jnp.mean(v, axis=axis, keepdims=True)
  return jnp.sqrt(jnp.mean(jnp.square(v - mu), axis=axis) + EPS)


def _as_image_batch(v, what, n=None):
  """``v`` as a 4-d floating array with no empty axis (and ``n`` samples if given)."""
  v = jnp.asarray(v)
  if v.ndim != 4:
    raise ValueError(f"{what} must be 4-d [N, H, W, C], got shape {v.shape}")
  if not jnp.issubdtype(v.dtype, jnp.floating):
    raise ValueError(f"{what} must be a floating array, got dtype {v.dtype}")
  if 0 in v.shape:
    raise ValueError(f"{what} must have no empty axis, got shape {v.shape}")
  if n is not None and v.shape[0] != n:
    raise ValueError(f"{what} has {v.shape[0]} samples, expected {n} (as the first map)")
  return v.astype(jnp.promote_types(v.dtype, jnp.float32))


def _check_patch_sizes(patch_sizes):
  if isinstance(patch_sizes, (str, bytes)) or not isinstance(patch_sizes, Sequence):
    raise ValueError(f"patch_sizes must be a sequence of ints, got {patch_sizes!r}")
  for s in patch_sizes:
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
      raise ValueError(f"patch_sizes must hold positive ints, got {s!r}")
  if len(set(patch_sizes)) != len(patch_sizes):
    raise ValueError(f"patch_sizes has a repeated size: {tuple(patch_sizes)}")
  return tuple(patch_sizes)


def feature_sets(maps: Mapping[str, jax.Array], images: Optional[jax.Array] = None, *,
                 per_location: bool = True, global_stats: bool = True,
                 patch_sizes: Sequence[int] = (2, 4), input_rms: bool = True
                 ) -> dict[str, jax.Array]:
  """The feature sets of the module docstring, from an encoder's feature maps.

  Args:
    maps: ``{name: [N, H, W, C]}`` feature maps (NHWC), floating, all with the same
      ``N``; sizes ``H, W, C`` may differ between maps. Names are strings.
    images: optional encoder input ``[N, H, W, C_in]``, floating, same ``N``.
    per_location: make ``name/loc``.
    global_stats: make ``name/mean`` and ``name/std``.
    patch_sizes: the patch sides ``s`` of ``name/patch{s}_mean`` and
      ``name/patch{s}_std`` (distinct positive ints; a size not dividing both ``H`` and
      ``W`` of a map is skipped for that map); ``()`` for none.
    input_rms: make ``input/rms`` (only when ``images`` is given).

  Returns:
    ``{key: [N, L, C]}`` in float32 (float64 for float64 input), keys sorted (as
    ``jax.jit`` returns a dict, so eager and jitted calls agree).

  Raises:
    ValueError: on an empty or non-mapping ``maps``, a non-string name, an array that is
      not 4-d floating with no empty axis, differing ``N``, or bad ``patch_sizes``.
  """
  if not isinstance(maps, Mapping) or not maps:
    raise ValueError("maps must be a non-empty mapping of name -> [N, H, W, C] array")
  sizes = _check_patch_sizes(patch_sizes)
  n = None
  checked = {}
  for name, f in maps.items():
    if not isinstance(name, str):
      raise ValueError(f"maps names must be strings, got {name!r}")
    checked[name] = _as_image_batch(f, f"maps[{name!r}]", n)
    n = checked[name].shape[0]
  if images is not None:
    images = _as_image_batch(images, "images", n)

  out = {}
  for name, f in checked.items():
    _, h, w, c = f.shape
    if per_location:
      out[f"{name}/loc"] = f.reshape(n, h * w, c)
    if global_stats:
      out[f"{name}/mean"] = jnp.mean(f, axis=(1, 2))[:, None, :]
      out[f"{name}/std"] = _std(f, axis=(1, 2))[:, None, :]
    for s in sizes:
      if h % s or w % s:
        continue
      # [N, H/s, s, W/s, s, C] -> [N, H/s, W/s, s, s, C] -> [N, patches, s*s, C]
      p = f.reshape(n, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
      p = p.reshape(n, (h // s) * (w // s), s * s, c)
      out[f"{name}/patch{s}_mean"] = jnp.mean(p, axis=2)
      out[f"{name}/patch{s}_std"] = _std(p, axis=2)
  if images is not None and input_rms:
    out["input/rms"] = jnp.sqrt(jnp.mean(jnp.square(images), axis=(1, 2)) + EPS)[:, None, :]
  return dict(sorted(out.items()))
