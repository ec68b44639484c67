"""A differentiable mouth image of 68 landmarks: what GoHD's lip-reading loss sees.

GoHD's L_read (supplementary B.2, eq. 23) compares a lip-reading network's features of "the
rendered images of facial meshes reconstructed from the expression coefficients" (r_t of the
ground-truth e_t, r̃_t of the predicted ẽ_t). jaxtalk's expression-only meshes are landmark sets
(the FaceMesh basis, or BFM's 68 keypoints), so it renders the mouth region from the 68 landmarks
of the mesh as a grey-level image whose gradient reaches the landmarks:

  I(q) = skin − lip · S_outer(q) − interior · S_inner(q)

S_P(q) = sigmoid(s · ±dist(q, ∂P)): a soft inside-test of pixel centre q against the polygon P,
with the sign from the even-odd rule and the distance to P's nearest edge (differentiable in the
vertices; SoftRas-like). P_outer = the outer lip contour (68-pt 48-59), P_inner = the inner lip
contour (60-67). The crop is fixed in the mesh's canonical frame (no pose): a square of
`width` IOD centred on the reference mesh's mouth, so the image moves only with the expression.
Grey levels and the 88-px size follow the mouth ROIs of lip readers (Ma et al. 2022 feed 88x88
grey mouth crops).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

OUTER_LIPS_68 = tuple(range(48, 60))
INNER_LIPS_68 = tuple(range(60, 68))
MOUTH_68 = tuple(range(48, 68))
SIZE = 88            # px, the lip readers' mouth ROI.
WIDTH_IOD = 1.2      # crop side in inter-ocular distances (the mouth is ~0.8 IOD wide).
SKIN, LIP, INTERIOR = 0.8, 0.35, 0.45


def mouth_center(l68_ref) -> jnp.ndarray:
  """`[2]` (x, y) centre of the reference landmarks' mouth (68-pt 48-67), IOD units."""
  return jnp.mean(jnp.asarray(l68_ref, jnp.float32)[..., list(MOUTH_68), :2], axis=-2)


def _segment_distance(q, a, b):
  """Distance `[..., H, W, E]` from pixels q `[H, W, 2]` to segments a→b `[..., E, 2]`."""
  q = q[..., None, :]
  a, b = a[..., None, None, :, :], b[..., None, None, :, :]
  ab = b - a
  t = jnp.clip(jnp.sum((q - a) * ab, -1) / jnp.maximum(jnp.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
  d = q - (a + t[..., None] * ab)
  return jnp.sqrt(jnp.sum(d * d, -1) + 1e-12)


def soft_polygon(points, grid, sharpness: float):
  """Soft inside-test of pixel centres against a closed polygon.

  Args:
    points: `[..., P, 2]` polygon vertices in order (closed implicitly), the grid's units.
    grid: `[H, W, 2]` pixel centres (x, y).
    sharpness: s, in 1 / grid unit: the sigmoid's slope (larger = harder edges).

  Returns:
    `[..., H, W]` float32 in (0, 1): ~1 inside, 0.5 on the boundary, ~0 outside.
  """
  a = points
  b = jnp.roll(points, -1, axis=-2)
  dist = jnp.min(_segment_distance(grid, a, b), axis=-1)
  # Even-odd rule: a ray from q towards +x crosses edge (a, b) when q's y lies between theirs.
  qx, qy = grid[..., 0][..., None], grid[..., 1][..., None]
  ax, ay = a[..., None, None, :, 0], a[..., None, None, :, 1]
  bx, by = b[..., None, None, :, 0], b[..., None, None, :, 1]
  straddles = (ay > qy) != (by > qy)
  x_cross = ax + (qy - ay) * (bx - ax) / jnp.where(by == ay, 1e-12, by - ay)
  inside = jnp.sum(straddles & (qx < x_cross), -1) % 2 == 1
  return jax.nn.sigmoid(jnp.where(inside, dist, -dist) * sharpness)


def render_mouth(l68, center, *, size: int = SIZE, width: float = WIDTH_IOD,
                 sharpness: float = 0.0):
  """The grey mouth image r_t of GoHD eq. 23 (module docstring).

  Args:
    l68: `[..., 68, 2 or 3]` landmarks of expression-only meshes, IOD units, x right, y down
      (`features.expression.landmarks_68`; z is ignored). jax or numpy; differentiable.
    center: `[2]` crop centre (`mouth_center` of the reference landmarks).
    size: output side, px. width: crop side, IOD.
    sharpness: the soft edge's slope in 1 / IOD (0: one pixel of the crop, `size / width`).

  Returns:
    `[..., size, size]` float32 in [0, 1]: skin 0.8, lips 0.45, mouth interior 0.0.

  Raises:
    ValueError: l68 is not `[..., 68, 2|3]`.
  """
  l68 = jnp.asarray(l68, jnp.float32)
  if l68.ndim < 2 or l68.shape[-2] != 68 or l68.shape[-1] not in (2, 3):
    raise ValueError(f"render_mouth: expected landmarks [..., 68, 2|3], got {l68.shape}")
  c = jnp.asarray(center, jnp.float32)
  ticks = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * width - width / 2
  grid = jnp.stack(jnp.meshgrid(c[0] + ticks, c[1] + ticks, indexing="xy"), -1)
  s = float(sharpness) or size / width
  xy = l68[..., :2]
  outer = soft_polygon(xy[..., list(OUTER_LIPS_68), :], grid, s)
  inner = soft_polygon(xy[..., list(INNER_LIPS_68), :], grid, s)
  return SKIN - LIP * outer - INTERIOR * inner
