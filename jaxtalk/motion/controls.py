"""Controls: functions `Motion -> Motion` (or that make one), shared by every method.

A control edits the descriptors a motion generator produced (or replaces the generator), so it
works with every renderer that reads those descriptors: pose templates (PoseTalk Fig. 9: poses
"sampled from templates"), poses of a reference video re-framed to the portrait, a fixed gaze
(GoHD's gaze control), temporal smoothing, GoHD's `pose_scale` / `exp_scale` (`scale_pose`,
`scale_expression`; declared for methods as `SCALE_CONTROLS`). Lip scale and emotion (PC-Talk)
will live here too.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxtalk import methods
from jaxtalk.motion import FPS, POSE_DIM, Motion


def override_gaze(motion: Motion, pitch: float, yaw: float) -> Motion:
  """Returns `motion` with gaze fixed to (pitch, yaw) radians on every frame."""
  gaze = jnp.broadcast_to(jnp.asarray([pitch, yaw], motion.gaze.dtype), motion.gaze.shape)
  return motion.replace(gaze=gaze)


# GoHD's release gaze modes (its freeze / centre / left / right) and the Motion's own gaze.
GAZE_MODES = ("generated", "freeze", "centre", "left", "right")
GAZE_PRESET_YAW = 0.3  # radians of the "left" / "right" presets (about the eyes' usual range)


def gaze_mode(motion: Motion, mode: str, source_gaze=None) -> Motion:
  """GoHD's gaze control: the gaze of every frame by `mode`.

  Args:
    motion: raw `Motion` `[B, T, ...]`.
    mode: "generated" (the Motion's own per-frame gaze: the generator's or a reference video's),
      "freeze" (the source portrait's gaze held: `source_gaze`), "centre" (looking into the
      camera, (0, 0)), "left" / "right" (looking towards the image's left / right: yaw
      +/- `GAZE_PRESET_YAW` rad, pitch 0; `features.face.gaze`: yaw > 0 towards the image's
      left).
    source_gaze: `[2]` raw (pitch, yaw) of the portrait; required for "freeze".

  Raises:
    ValueError: unknown mode, or "freeze" without `source_gaze`.
  """
  if mode not in GAZE_MODES:
    raise ValueError(f"unknown gaze mode {mode!r}; available: {', '.join(GAZE_MODES)}")
  if mode == "generated":
    return motion
  if mode == "freeze":
    if source_gaze is None:
      raise ValueError("gaze mode 'freeze' needs the source portrait's gaze")
    pitch, yaw = (float(v) for v in np.asarray(source_gaze, np.float32).reshape(2))
  else:
    pitch, yaw = 0.0, {"centre": 0.0, "left": GAZE_PRESET_YAW, "right": -GAZE_PRESET_YAW}[mode]
  return override_gaze(motion, pitch, yaw)


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


def scale_pose(motion: Motion, scale: float, source_pose=None) -> Motion:
  """GoHD's `pose_scale`: multiplies the head pose's deviation from the source pose.

  pose' = p_0 + scale · (pose − p_0) on all six dimensions (yaw, pitch, roll, tx, ty, scale), so
  rotations and the face's position and size move `scale` times as far from p_0; gaze and
  expression are unchanged. p_0 is `source_pose` (the portrait's pose, GoHD's p_0 of eqs. 1-4)
  when given, otherwise each sequence's FIRST frame (which is p_0 for GoHD's sampler, whose
  residuals start at zero). scale 1 is the identity, 0 holds p_0 on every frame.

  Args:
    motion: raw `Motion` `[B, T, ...]`.
    scale: the factor (>= 0 in the front ends; any float works).
    source_pose: optional `[6]` or `[B, 6]` raw pose p_0.

  Raises:
    ValueError: `source_pose` of another shape.
  """
  pose = jnp.asarray(motion.pose)
  if source_pose is None:
    ref = pose[:, :1]
  else:
    ref = jnp.asarray(source_pose, pose.dtype)
    if ref.shape not in ((POSE_DIM,), (pose.shape[0], POSE_DIM)):
      raise ValueError(f"scale_pose: source_pose must be [{POSE_DIM}] or [B, {POSE_DIM}] with "
                       f"B = {pose.shape[0]}, got {ref.shape}")
    ref = ref.reshape(-1, 1, POSE_DIM)
  return motion.replace(pose=(ref + scale * (pose - ref)).astype(pose.dtype))


def scale_expression(motion: Motion, scale: float, source_expression=None) -> Motion:
  """GoHD's `exp_scale`: multiplies the expression coefficients' deviation from the source's.

  e' = e_0 + scale · (e − e_0) over `Motion.expression [B, T, E]` (E = 64 for GoHD), e_0 =
  `source_expression` (the portrait's coefficients) when given, otherwise each sequence's first
  frame. scale 1 is the identity, 0 holds e_0 (a still face), 2 doubles every movement.

  A Motion without expression (PoseTalk's): scale 1 returns it unchanged (the control's default
  is then harmless); any other scale raises, since nothing would be scaled.

  Args:
    motion: raw `Motion` `[B, T, ...]`.
    scale: the factor.
    source_expression: optional `[E]` or `[B, E]` coefficients e_0.

  Raises:
    ValueError: scale != 1 on a Motion with `expression=None`, or a `source_expression` of
      another shape.
  """
  if motion.expression is None:
    if scale == 1:
      return motion
    raise ValueError(f"exp_scale={scale}: this Motion has no expression coefficients (its "
                     "method generates pose and gaze only); exp_scale needs a method that "
                     "predicts expressions (GoHD)")
  e = jnp.asarray(motion.expression)
  if source_expression is None:
    ref = e[:, :1]
  else:
    ref = jnp.asarray(source_expression, e.dtype)
    if ref.shape not in ((e.shape[-1],), (e.shape[0], e.shape[-1])):
      raise ValueError(f"scale_expression: source_expression must be [{e.shape[-1]}] or "
                       f"[B, {e.shape[-1]}] with B = {e.shape[0]}, got {ref.shape}")
    ref = ref.reshape(-1, 1, e.shape[-1])
  return motion.replace(expression=(ref + scale * (e - ref)).astype(e.dtype))


# Declarations for a method's `controls` (`jaxtalk.methods.Control`): GoHD's release flags.
SCALE_CONTROLS = (
    methods.Control("pose_scale", float, 1.0,
                    "head-motion amplitude: multiplies the pose's deviation from the source "
                    "pose (GoHD)", range=(0.0, 3.0)),
    methods.Control("exp_scale", float, 1.0,
                    "expression amplitude: multiplies the expression coefficients' deviation "
                    "from the source's (GoHD)", range=(0.0, 3.0)),
)
