"""Face regions from FaceMesh landmarks: parsing labels and GoHD's lip & eye weight mask.

GoHD's animator losses need two things from a face parser (supplementary B.1): the weighted mask
M_lip&eye of eq. 11/12 ("facial landmark detection is utilized to derive bounding boxes for the
corresponding regions") and, for the parsing loss (eq. 15), a BiSeNet segmentation. jaxtalk has
no BiSeNet weights, so its substitute parser (`jaxtalk.models.gohd.face_analysis`) is trained on
labels rasterised here from the shards' FaceMesh landmarks.

Landmarks: `[..., 478, 2]` (or `[..., 478, 3]`, z ignored) in crop coordinates, x, y in [0, 1]
(x right, y down), as `data_pipelines/schema.py` stores them and the batch key `landmarks`
carries them. Pixel (row i, column j) of an R x R mask has its centre at
((j + 0.5) / R, (i + 0.5) / R); it is inside a polygon when its centre is (crossing number).

`REGIONS` (label index = position in the tuple):
  0 background  everything outside the face oval (hair, neck, ears, clothes, the scene: FaceMesh
                has no points on them, so BiSeNet's hair / neck / ear / cloth classes are not
                available and all fall here)
  1 skin        inside the face oval and none of the below (nose and cheeks included: BiSeNet
                separates the nose, FaceMesh's nose is not a closed contour we use)
  2 brows       the two eyebrow polygons (upper and lower brow rows of FaceMesh)
  3 eyes        the two eye polygons (lid contours; iris and sclera together)
  4 lips        between the outer and the inner lip contour
  5 mouth       inside the inner lip contour (teeth, tongue, the dark of an open mouth)
Later regions are painted over earlier ones in this order, so every pixel has exactly one label.

The index lists are the closed contours of mediapipe's `FACEMESH_FACE_OVAL`, `FACEMESH_LEFT_EYE`,
`FACEMESH_RIGHT_EYE`, `FACEMESH_LEFT_EYEBROW`, `FACEMESH_RIGHT_EYEBROW` and `FACEMESH_LIPS`
(outer and inner rings) connection sets, ordered around each contour ("left" = the subject's
left = the image's right, as in mediapipe).

Everything here is `jax.numpy` (runs inside a jitted loss on batch landmarks) and accepts numpy
input; outputs are not differentiable w.r.t. the landmarks (labels and masks are step functions).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

REGIONS = ("background", "skin", "brows", "eyes", "lips", "mouth")
NUM_REGIONS = len(REGIONS)

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
              40, 185)
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81,
              80, 191)
IRIS = (468, 469, 470, 471, 472, 473, 474, 475, 476, 477)  # centre + 4 per iris, right then left

# (label, polygons) painted in this order (later wins).
_PAINT = ((1, (FACE_OVAL,)), (2, (RIGHT_BROW, LEFT_BROW)), (3, (RIGHT_EYE, LEFT_EYE)),
          (4, (OUTER_LIPS,)), (5, (INNER_LIPS,)))


def _check(landmarks, name: str = "landmarks"):
  if landmarks.ndim < 2 or landmarks.shape[-2] != 478 or landmarks.shape[-1] not in (2, 3):
    raise ValueError(f"{name}: expected [..., 478, 2] (or 3) FaceMesh crop coordinates, got "
                     f"shape {tuple(landmarks.shape)}")
  return jnp.asarray(landmarks[..., :2], jnp.float32)


def pixel_centres(resolution: int) -> jax.Array:
  """`[R, R, 2]` float32 (x, y) of the pixel centres in [0, 1] crop coordinates."""
  c = (jnp.arange(resolution, dtype=jnp.float32) + 0.5) / resolution
  yy, xx = jnp.meshgrid(c, c, indexing="ij")
  return jnp.stack([xx, yy], -1)


def polygon_mask(vertices, resolution: int) -> jax.Array:
  """Pixels whose centre lies inside a closed polygon (even-odd crossing-number rule).

  Args:
    vertices: `[..., P, 2]` (x, y) in [0, 1] crop coordinates, in order around the contour (the
      last vertex connects back to the first); any orientation, may be non-convex.
    resolution: R.

  Returns:
    `[..., R, R]` bool.
  """
  v = jnp.asarray(vertices, jnp.float32)
  x0, y0 = v[..., :, 0], v[..., :, 1]
  x1, y1 = jnp.roll(x0, -1, axis=-1), jnp.roll(y0, -1, axis=-1)
  grid = pixel_centres(resolution)
  px = grid[..., 0][..., None]  # [R, R, 1]
  py = grid[..., 1][..., None]
  expand = lambda a: a[..., None, None, :]  # [..., 1, 1, P]
  x0, y0, x1, y1 = map(expand, (x0, y0, x1, y1))
  straddles = (y0 > py) != (y1 > py)
  dy = jnp.where(straddles, y1 - y0, 1.0)
  x_cross = x0 + (py - y0) * (x1 - x0) / dy
  crossings = jnp.sum(straddles & (px < x_cross), axis=-1)
  return (crossings % 2) == 1


def region_labels(landmarks, resolution: int) -> jax.Array:
  """Per-pixel region index (`REGIONS`) of FaceMesh landmarks.

  Args:
    landmarks: `[..., 478, 2|3]` crop coordinates (module docstring).
    resolution: R of the label map.

  Returns:
    `[..., R, R]` int32 in [0, NUM_REGIONS).

  Raises:
    ValueError: landmarks not `[..., 478, 2|3]`.
  """
  lm = _check(jnp.asarray(landmarks))
  labels = jnp.zeros(lm.shape[:-2] + (resolution, resolution), jnp.int32)
  for label, polygons in _PAINT:
    inside = jnp.zeros(labels.shape, bool)
    for poly in polygons:
      inside = inside | polygon_mask(lm[..., list(poly), :], resolution)
    labels = jnp.where(inside, label, labels)
  return labels


def region_masks(landmarks, resolution: int) -> jax.Array:
  """One-hot region masks of FaceMesh landmarks (`REGIONS`, module docstring).

  Args:
    landmarks: `[..., 478, 2|3]` crop coordinates, x, y in [0, 1].
    resolution: R.

  Returns:
    `[..., R, R, NUM_REGIONS]` float32 in {0, 1}, exactly one 1 per pixel.
  """
  return jax.nn.one_hot(region_labels(landmarks, resolution), NUM_REGIONS, dtype=jnp.float32)


def _box_mask(points, resolution: int, margin: float) -> jax.Array:
  """`[..., R, R]` bool: pixels inside the bounding box of `points [..., P, 2]`, grown on every
  side by `margin` x the box's width."""
  lo, hi = jnp.min(points, axis=-2), jnp.max(points, axis=-2)
  pad = margin * (hi[..., :1] - lo[..., :1])
  lo, hi = lo - pad, hi + pad
  grid = pixel_centres(resolution)
  e = lambda a: a[..., None, None, :]
  return jnp.all((grid >= e(lo)) & (grid <= e(hi)), axis=-1)


def lip_eye_weight_mask(landmarks, resolution: int, *, lip_weight: float = 1.0,
                        eye_weight: float = 1.0, margin: float = 0.15) -> jax.Array:
  """GoHD's M_lip&eye (supplementary B.1, eqs. 11-12: the loss is ‖I − Î‖₁ ⊙ (1 + M)).

  Bounding boxes, as the paper describes, of three landmark sets: the outer lip contour
  (`OUTER_LIPS`) and each eye together with its brow (`RIGHT_EYE` + `RIGHT_BROW`, `LEFT_EYE` +
  `LEFT_BROW`; GoHD's eye motions include frowns), each box grown on every side by `margin` x its
  width (the same rule as `jaxtalk.features.face.mouth_box`). Where boxes overlap the larger
  weight wins.

  Args:
    landmarks: `[..., 478, 2|3]` crop coordinates, x, y in [0, 1].
    resolution: R of the mask (the image's, or a feature map's for eq. 12).
    lip_weight / eye_weight: M inside the lip / eye boxes (0 elsewhere).
    margin: box growth, fraction of the box width.

  Returns:
    `[..., R, R]` float32 M (>= 0).

  Raises:
    ValueError: landmarks not `[..., 478, 2|3]`.
  """
  lm = _check(jnp.asarray(landmarks))
  lips = _box_mask(lm[..., list(OUTER_LIPS), :], resolution, margin)
  eyes = (_box_mask(lm[..., list(RIGHT_EYE + RIGHT_BROW), :], resolution, margin) |
          _box_mask(lm[..., list(LEFT_EYE + LEFT_BROW), :], resolution, margin))
  return jnp.maximum(jnp.where(lips, float(lip_weight), 0.0),
                     jnp.where(eyes, float(eye_weight), 0.0)).astype(jnp.float32)


def region_areas(labels, num_regions: int = NUM_REGIONS) -> np.ndarray:
  """Fraction of the pixels of each region, `[..., num_regions]` float32 (numpy), for checks."""
  labels = np.asarray(labels)
  flat = labels.reshape(labels.shape[:-2] + (-1,))
  return np.stack([np.mean(flat == r, axis=-1) for r in range(num_regions)], -1).astype(
      np.float32)


def all_region_indices() -> Sequence[int]:
  """Every FaceMesh index used by a region polygon (sorted, unique)."""
  return sorted({i for _, polys in _PAINT for p in polys for i in p})
