"""The `Motion` pytree: per-frame motion descriptors joining motion generators and renderers.

A motion generator (PLD, GoHD's pose diffusion, PC-Talk's lip transformer) produces a `Motion`;
a renderer (PoseTalk's CoarseNet/RefineNet/Enhancer, ...) consumes one. Controls (pose templates,
poses from a reference video, gaze override, smoothing) act on `Motion` in between, so every
control works with every renderer that reads that descriptor (see ../shared/DESIGN.md).

All fields are at 25 fps with shape `[B, T, ...]`:
  pose        [B, T, 6] float32: yaw, pitch, roll (radians), tx, ty (crop-relative offset of the
              face centre, in units of the crop size), scale (face size / crop size).
  gaze        [B, T, 2] float32: pitch, yaw (radians).
  expression  [B, T, E] float32 or None (GoHD / PC-Talk expression coefficients).
  keypoints   [B, T, K, 3] float32 or None (PC-Talk implicit keypoints).
Values are *raw* (not normalised); `normalize`/`denormalize` convert with dataset statistics.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

FPS = 25
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


def override_gaze(motion: Motion, pitch: float, yaw: float) -> Motion:
  """Returns `motion` with gaze fixed to (pitch, yaw) radians on every frame."""
  gaze = jnp.broadcast_to(jnp.asarray([pitch, yaw], motion.gaze.dtype), motion.gaze.shape)
  return motion.replace(gaze=gaze)


# ----------------------------------------------------------------------------------------------
# Pose templates: named, procedurally defined head-motion patterns (PoseTalk Fig. 9: the renderer
# can be driven by "poses ... sampled from templates").
# ----------------------------------------------------------------------------------------------

POSE_TEMPLATES = ("still", "nod", "shake", "turn_left", "turn_right", "tilt")


def pose_template(name: str, num_frames: int, base_pose=None, *, amplitude: float = 1.0):
  """Raw pose sequence `[T, 6]` float32 for a named head-motion template at 25 fps.

  Args:
    name: one of `POSE_TEMPLATES`. "nod": pitch oscillation 0.6 Hz, 0.12 rad; "shake": yaw
      oscillation 0.6 Hz, 0.2 rad; "turn_left"/"turn_right": yaw ramps to +/-0.35 rad over the
      first 3 s and holds; "tilt": roll oscillation 0.4 Hz, 0.1 rad; "still": the base pose.
      Positive yaw turns the head to the subject's left (the convention of the preprocessing PnP).
    num_frames: T.
    base_pose: `[6]` raw pose the motion is added to (default zeros: frontal, centred; tx, ty and
      scale of the source portrait should be passed so the face stays where it is).
    amplitude: multiplies the angles.

  Raises:
    ValueError: unknown template name.
  """
  if name not in POSE_TEMPLATES:
    raise ValueError(f"unknown pose template {name!r}; available: {', '.join(POSE_TEMPLATES)}")
  t = np.arange(num_frames, dtype=np.float32) / FPS
  d = np.zeros((num_frames, POSE_DIM), np.float32)
  if name == "nod":
    d[:, 1] = 0.12 * np.sin(2 * np.pi * 0.6 * t)
  elif name == "shake":
    d[:, 0] = 0.2 * np.sin(2 * np.pi * 0.6 * t)
  elif name in ("turn_left", "turn_right"):
    d[:, 0] = (0.35 if name == "turn_left" else -0.35) * np.clip(t / 3.0, 0, 1)
  elif name == "tilt":
    d[:, 2] = 0.1 * np.sin(2 * np.pi * 0.4 * t)
  d[:, :3] *= amplitude
  base = np.zeros(POSE_DIM, np.float32) if base_pose is None else np.asarray(base_pose, np.float32)
  return base[None] + d


def smooth(x, sigma_frames: float = 1.5):
  """Gaussian temporal smoothing of `[..., T, D]` sequences along T (edge-replicated), numpy."""
  x = np.asarray(x, np.float32)
  if sigma_frames <= 0 or x.shape[-2] < 2:
    return x
  radius = int(np.ceil(3 * sigma_frames))
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
  k /= k.sum()
  pad = [(0, 0)] * x.ndim
  pad[-2] = (radius, radius)
  xp = np.pad(x, pad, mode="edge")
  out = np.zeros_like(x)
  for i, w in enumerate(k):
    out += w * np.take(xp, np.arange(i, i + x.shape[-2]), axis=-2)
  return out
