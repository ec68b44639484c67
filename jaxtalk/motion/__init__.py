"""The `Motion` pytree: per-frame motion descriptors joining motion generators and renderers.

A motion generator (PLD, GoHD's pose diffusion, PC-Talk's lip transformer) produces a `Motion`;
a renderer (PoseTalk's CoarseNet/RefineNet/Enhancer, ...) consumes one. Controls
(`jaxtalk.motion.controls`: pose templates, poses from a reference video re-framed to the
portrait, gaze override, smoothing, GoHD's pose_scale / exp_scale) are functions
`Motion -> Motion` in between, so every control works with every renderer that reads that
descriptor (see ../shared/DESIGN.md).

All fields are at 25 fps with shape `[B, T, ...]`:
  pose        [B, T, 6] float32: yaw, pitch, roll (radians), tx, ty (crop-relative offset of the
              face centre, in units of the crop size), scale (face size / crop size).
  gaze        [B, T, 2] float32: pitch, yaw (radians).
  expression  [B, T, E] float32 or None (GoHD / PC-Talk expression coefficients).
  keypoints   [B, T, K, 3] float32 or None: PC-Talk's expression deformation δ of eq. 1
              (K = s·(K_c Rᵀ + δ) + t; 21 implicit keypoints in the units of the renderer's
              motion extractor, `jaxtalk.models.pctalk.keypoints`), NOT the driven keypoints K:
              the head pose lives in `pose` alone (R, t, s by `keypoints.pose_to_rts`) and the
              identity in the source's K_c, so pose controls (templates, --pose-scale,
              reframing) act on `pose` and expression controls on δ without undoing each
              other, and any pose source drives the renderer. None: the portrait's own δ held.
Values are *raw* (not normalised); `normalize`/`denormalize` convert with dataset statistics.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.features.audio import FPS  # pylint: disable=g-importing-member
POSE_DIM = 6
GAZE_DIM = 2
POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "scale")
GAZE_NAMES = ("gaze_pitch", "gaze_yaw")


@flax.struct.dataclass
class Motion:
  """Per-frame motion descriptors (see module docstring for shapes and units)."""

  pose: jax.Array
  gaze: jax.Array
  expression: Optional[jax.Array] = None
  keypoints: Optional[jax.Array] = None

  @property
  def num_frames(self) -> int:
    return int(self.pose.shape[1])

  def as_features(self) -> jax.Array:
    """`[B, T, 8]` concatenation of pose and gaze (the PoseTalk pose-VAE input, raw units)."""
    return jnp.concatenate([self.pose, self.gaze], axis=-1)

  @classmethod
  def from_features(cls, x) -> "Motion":
    """Inverse of `as_features`: `x[..., :6]` is pose, `x[..., 6:8]` gaze."""
    if x.shape[-1] != POSE_DIM + GAZE_DIM:
      raise ValueError(f"expected last dim {POSE_DIM + GAZE_DIM}, got shape {x.shape}")
    return cls(pose=x[..., :POSE_DIM], gaze=x[..., POSE_DIM:])


def normalize(x, mean, std):
  """`(x - mean) / std` with std floored at 1e-6; mean/std broadcast over the last dim."""
  return (x - mean) / np.maximum(np.asarray(std), 1e-6)


def denormalize(x, mean, std):
  """Inverse of `normalize`."""
  return x * np.maximum(np.asarray(std), 1e-6) + mean
