"""PC-Talk's implicit 3-D keypoints (section 3.1, eqs. 1-2; supplementary A), LivePortrait-style.

Keypoint space: K points `[..., K, 3]` float32 with x along the image width (columns, right),
y along the height (rows, down), both in [-1, 1] over the crop (−1 / 1: the centres of the
first / last pixel, the `align_corners=True` convention of `layers.trilinear_sample`), and z a
depth in the same units (towards the camera is negative, as FaceMesh's z). The renderer's
feature volume spans [-1, 1]³ in these units, so a keypoint's 2-D projection is orthographic:
(x, y) -> pixel ((x + 1) / 2 · (R − 1), (y + 1) / 2 · (R − 1)), crop units (x + 1) / 2.

Eq. 1 (motion extractor output -> keypoints):

    K = s · (K_c Rᵀ + δ) + t

K_c `[K, 3]` canonical keypoints of the identity, δ `[K, 3]` the expression deformation, R the
head rotation, t = (t_x, t_y, 0) (LivePortrait zeroes t_z), s the scale. PC-Talk writes K_c·R
with row vectors; here R is the column-vector rotation of preprocessing's head pose
(`jaxtalk.features.face`: R = Rz(roll) Ry(yaw) Rx(pitch), model -> camera, x right, y down), so
the stored pose supervises the rotation that moves K_c, and `Motion.pose` maps to (R, t, s)
without conversion (`pose_to_rts`).

Eq. 2 (driven keypoints): K_d = K_ori + D_l + D_e, K_ori the source's eq. 1 keypoints.

Region keypoints (supplementary A, LivePortrait's landmark-guided loss): `LANDMARK_KEYPOINTS`
ties 12 of the 21 keypoints to FaceMesh landmarks (`LANDMARK_INDICES`): 6 lip points, 4 eyelid
points, 2 brow points; `landmark_loss` pulls their 2-D projections onto the landmarks, so "lip
keypoints" (`LIP_KEYPOINTS`) and "eye keypoints" (`EYE_KEYPOINTS`) mean what PC-Talk's lip and
emotion controls rely on. The other 9 keypoints are free (LivePortrait leaves 11 free).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NUM_KEYPOINTS = 21

# (keypoint index, FaceMesh landmark index). FaceMesh 61 / 291: mouth corners (image left /
# right), 0 / 17: outer upper / lower lip centre, 13 / 14: inner upper / lower lip centre,
# 159 / 145: right eye's upper / lower lid, 386 / 374: left eye's, 105 / 334: right / left brow.
_LIP_PAIRS = ((0, 61), (1, 291), (2, 0), (3, 17), (4, 13), (5, 14))
_EYE_PAIRS = ((6, 159), (7, 145), (8, 386), (9, 374))
_BROW_PAIRS = ((10, 105), (11, 334))
LIP_KEYPOINTS = tuple(k for k, _ in _LIP_PAIRS)
EYE_KEYPOINTS = tuple(k for k, _ in _EYE_PAIRS)
BROW_KEYPOINTS = tuple(k for k, _ in _BROW_PAIRS)
LANDMARK_KEYPOINTS = LIP_KEYPOINTS + EYE_KEYPOINTS + BROW_KEYPOINTS
LANDMARK_INDICES = tuple(m for _, m in _LIP_PAIRS + _EYE_PAIRS + _BROW_PAIRS)
REGION_KEYPOINTS = {"lips": LIP_KEYPOINTS, "eyes": EYE_KEYPOINTS, "brows": BROW_KEYPOINTS}


def rotation_matrix(yaw, pitch, roll) -> jax.Array:
  """R = Rz(roll) Ry(yaw) Rx(pitch) `[..., 3, 3]` float32 from angles `[...]` in radians.

  The decomposition of `jaxtalk.features.face.rotation_to_euler` (its inverse): yaw > 0 turns
  the face towards the image's left, pitch > 0 moves the chin down, roll > 0 tilts clockwise.
  """
  y, p, r = (jnp.asarray(a, jnp.float32) for a in (yaw, pitch, roll))
  one, zero = jnp.ones_like(y), jnp.zeros_like(y)
  rx = jnp.stack([jnp.stack([one, zero, zero], -1),
                  jnp.stack([zero, jnp.cos(p), -jnp.sin(p)], -1),
                  jnp.stack([zero, jnp.sin(p), jnp.cos(p)], -1)], -2)
  ry = jnp.stack([jnp.stack([jnp.cos(y), zero, jnp.sin(y)], -1),
                  jnp.stack([zero, one, zero], -1),
                  jnp.stack([-jnp.sin(y), zero, jnp.cos(y)], -1)], -2)
  rz = jnp.stack([jnp.stack([jnp.cos(r), -jnp.sin(r), zero], -1),
                  jnp.stack([jnp.sin(r), jnp.cos(r), zero], -1),
                  jnp.stack([zero, zero, one], -1)], -2)
  return rz @ ry @ rx


def transform_keypoints(canonical, rotation, translation, scale, delta) -> jax.Array:
  """Eq. 1: K = s · (K_c Rᵀ + δ) + t.

  Args:
    canonical: K_c `[..., K, 3]`.
    rotation: R `[..., 3, 3]` (column-vector convention, `rotation_matrix`).
    translation: t `[..., 3]` (keypoint units; pass t_z = 0 as LivePortrait).
    scale: s `[...]` or `[..., 1]`.
    delta: δ `[..., K, 3]`.

  Returns:
    K `[..., K, 3]` float32.
  """
  s = jnp.asarray(scale, jnp.float32)
  s = s if s.ndim == canonical.ndim - 1 and s.shape[-1:] == (1,) else s[..., None]
  rotated = jnp.einsum("...kj,...ij->...ki", canonical.astype(jnp.float32),
                       rotation.astype(jnp.float32))
  return s[..., None] * (rotated + delta) + translation[..., None, :]


def pose_to_rts(pose):
  """`Motion.pose` `[..., 6]` (yaw, pitch, roll rad, tx, ty crop units, scale face/crop) ->
  (R `[..., 3, 3]`, t `[..., 3]` = (2·tx, 2·ty, 0) in keypoint units, s `[...]` = scale).

  The motion extractor's pose head is supervised with these very targets (`pose_targets`), so
  any `Motion` pose source drives the renderer directly.
  """
  pose = jnp.asarray(pose, jnp.float32)
  rot = rotation_matrix(pose[..., 0], pose[..., 1], pose[..., 2])
  t = jnp.stack([2.0 * pose[..., 3], 2.0 * pose[..., 4], jnp.zeros_like(pose[..., 3])], -1)
  return rot, t, pose[..., 5]


def project(keypoints) -> jax.Array:
  """Orthographic 2-D projection `[..., K, 2]` in crop units [0, 1] of keypoints `[..., K, 3]`."""
  return (keypoints[..., :2] + 1.0) / 2.0


def landmark_loss(keypoints, landmarks, weights=None) -> jax.Array:
  """Landmark-guided loss (supplementary A): mean L1 between the projections of the
  `LANDMARK_KEYPOINTS` and their FaceMesh landmarks (LivePortrait uses a Wing loss; L1 here).

  Args:
    keypoints: `[N, K, 3]` driven keypoints (eq. 1) of N frames.
    landmarks: `[N, 478, 2|3]` FaceMesh landmarks in crop units [0, 1] (x, y used).
    weights: optional `[N]` frame weights (0 = padding).

  Returns:
    float32 scalar, crop units; 0 when the keypoints project exactly onto the landmarks.
  """
  pred = project(keypoints[:, jnp.asarray(LANDMARK_KEYPOINTS)])
  target = landmarks[:, jnp.asarray(LANDMARK_INDICES), :2].astype(jnp.float32)
  per = jnp.mean(jnp.abs(pred - target), (1, 2))
  if weights is None:
    return jnp.mean(per)
  w = weights.astype(jnp.float32)
  return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


def keypoint_prior_loss(keypoints, distance: float = 0.1, depth: float = 0.33) -> jax.Array:
  """face-vid2vid's keypoint prior: Σ_{i≠j} max(0, D − ‖K_i − K_j‖²) / K² + |mean_i z_i − z_t|,
  spreading keypoints apart (D = 0.1) and holding their mean depth near z_t = 0.33 (the
  published values). `keypoints [N, K, 3]`; float32 scalar (mean over N)."""
  k = keypoints.astype(jnp.float32)
  d2 = jnp.sum(jnp.square(k[:, :, None] - k[:, None, :]), -1)
  off = 1.0 - jnp.eye(k.shape[1])
  spread = jnp.sum(jnp.maximum(0.0, distance - d2) * off, (1, 2)) / k.shape[1] ** 2
  return jnp.mean(spread + jnp.abs(jnp.mean(k[..., 2], -1) - depth))


def lip_open_ratio(landmarks) -> jax.Array:
  """Lip-open ratio `[...]` of FaceMesh landmarks `[..., 478, 2|3]`: inner-lip gap (13-14)
  over mouth width (61-291), LivePortrait's lip retargeting condition (0: closed, ~0.5 wide)."""
  gap = jnp.linalg.norm(landmarks[..., 13, :2] - landmarks[..., 14, :2], axis=-1)
  width = jnp.linalg.norm(landmarks[..., 61, :2] - landmarks[..., 291, :2], axis=-1)
  return gap / jnp.maximum(width, 1e-6)


def eye_open_ratio(landmarks) -> jax.Array:
  """Eye-open ratios `[..., 2]` (right, left) of FaceMesh landmarks: lid gap (159-145, 386-374)
  over eye width (33-133, 362-263), LivePortrait's eye retargeting condition (0: closed)."""
  def one(a, b, c, d):
    gap = jnp.linalg.norm(landmarks[..., a, :2] - landmarks[..., b, :2], axis=-1)
    return gap / jnp.maximum(jnp.linalg.norm(landmarks[..., c, :2] - landmarks[..., d, :2],
                                             axis=-1), 1e-6)
  return jnp.stack([one(159, 145, 33, 133), one(386, 374, 362, 263)], -1)


# Eye width (FaceMesh 33-133, 362-263) over the distance between the two upper lids (159-386):
# 0.412 ± 0.019 over the 1445 frames of the shared clips' FaceMesh landmarks. The eye corners
# are not tied to keypoints, so `keypoint_eye_ratio` measures the width with this constant.
EYE_WIDTH_PER_LID_SPAN = 0.412


def keypoint_lip_ratio(keypoints) -> jax.Array:
  """`lip_open_ratio` measured on the projected lip keypoints `[..., K, 3]` -> `[...]`: the
  inner-lip gap (keypoints 4-5 ↔ FaceMesh 13-14) over the mouth width (0-1 ↔ 61-291). Equal to
  `lip_open_ratio` of the landmarks when `landmark_loss` is 0 (0 closed; 0-0.4 on the shared
  clips)."""
  p = project(keypoints)
  gap = jnp.linalg.norm(p[..., 4, :] - p[..., 5, :], axis=-1)
  return gap / jnp.maximum(jnp.linalg.norm(p[..., 0, :] - p[..., 1, :], axis=-1), 1e-6)


def keypoint_eye_ratio(keypoints) -> jax.Array:
  """`eye_open_ratio` measured on the projected eye keypoints `[..., K, 3]` -> `[..., 2]`
  (right, left): lid gap (6-7 ↔ 159-145, 8-9 ↔ 386-374) over the eye width, taken as
  `EYE_WIDTH_PER_LID_SPAN` x the distance between the upper lids (6-8). 0 closed; 0.06-0.54 on
  the shared clips."""
  p = project(keypoints)
  width = EYE_WIDTH_PER_LID_SPAN * jnp.linalg.norm(p[..., 6, :] - p[..., 8, :], axis=-1)
  gaps = jnp.stack([jnp.linalg.norm(p[..., 6, :] - p[..., 7, :], axis=-1),
                    jnp.linalg.norm(p[..., 8, :] - p[..., 9, :], axis=-1)], -1)
  return gaps / jnp.maximum(width, 1e-6)[..., None]
