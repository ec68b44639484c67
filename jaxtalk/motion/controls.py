"""Controls: functions `Motion -> Motion` (or that make one), shared by every method.

A control edits the descriptors a motion generator produced (or replaces the generator), so it
works with every renderer that reads those descriptors: pose templates (PoseTalk Fig. 9: poses
"sampled from templates"), poses of a reference video re-framed to the portrait, a fixed gaze
(GoHD's gaze control), temporal smoothing. Lip scale and emotion (PC-Talk) will live here too.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxtalk.motion import FPS, POSE_DIM, Motion


def override_gaze(motion: Motion, pitch: float, yaw: float) -> Motion:
  """Returns `motion` with gaze fixed to (pitch, yaw) radians on every frame."""
  gaze = jnp.broadcast_to(jnp.asarray([pitch, yaw], motion.gaze.dtype), motion.gaze.shape)
  return motion.replace(gaze=gaze)


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


def reframe(motion: Motion, source_pose) -> Motion:
  """Keeps `motion`'s head movement but the source portrait's framing (mouth re-talking from a
  reference video): tx, ty, scale become `source_pose[3:]` plus their change since frame 0.

  Args:
    motion: raw `Motion` `[B, T, ...]`.
    source_pose: `[6]` raw pose of the portrait.
  """
  pose = np.array(motion.pose, np.float32)
  base = np.asarray(source_pose, np.float32)[3:]
  pose[..., 3:] = pose[..., 3:] - pose[..., :1, 3:] + base
  return motion.replace(pose=pose)


def smooth(motion: Motion, sigma_frames: float = 1.5) -> Motion:
  """Gaussian temporal smoothing of pose and gaze over T (edge-replicated; `face.smooth`)."""
  from jaxtalk.features import face  # pylint: disable=g-import-not-at-top

  def one(x):
    x = np.asarray(x, np.float32)
    return np.stack([face.smooth(b, sigma_frames) for b in x]).astype(np.float32)

  return motion.replace(pose=one(motion.pose), gaze=one(motion.gaze))
