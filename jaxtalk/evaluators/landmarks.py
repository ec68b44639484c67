"""Landmark metrics of generated frames with jaxtalk's mediapipe FaceMesh landmarks: the mouth
landmark distance (LMD, Chen et al. 2019) and the measured gaze (GoHD Tables 1, 3: gaze error).

For generated and ground-truth frames of the same clip (same crop, same resolution), the 40
lip-contour points of `jaxtalk.features.face.LIPS` are found by FaceMesh (static-image mode, each
frame on
its own; frames smaller than `min_size` are upscaled first and the points scaled back), and

  LMD = mean over frames where both faces were found, of mean_k || p_k - g_k ||_2   (pixels)

`lmd_norm` divides by the frame width (so 0.01 = 1% of the crop; x256 gives pixels at 256 px).
No per-frame alignment is applied: in self-reenactment both frames share the crop.

Pose: `measured_pose` measures the head rotation of each frame as preprocessing does (PC-Talk's
video-driving check: the pose measured back on the output follows the driving video).

Gaze: `measured_gaze` measures the eye-in-head gaze (pitch, yaw) of each frame exactly as
preprocessing measures it for the records (`features.face.gaze` on the frame's FaceMesh
landmarks, without temporal smoothing); `gaze_error` is the mean |measured − requested| in radians,
per angle, over the frames where a face was found (GoHD's gaze error compares the output's gaze,
measured by L2CS-Net, with the driving one; here FaceMesh's iris-based estimate stands in).
"""

from __future__ import annotations

import numpy as np

from jaxtalk.features import face as face_lib
from jaxtalk.evaluators.identity import to_uint8

LIPS = np.asarray(face_lib.LIPS)


class MouthLandmarks:
  """Lip landmarks of single frames with FaceMesh. Use as a context manager or `close()`.

  Attributes:
    min_size: frames are upscaled (bilinear) to at least this short side before detection.
  """

  def __init__(self, min_size: int = 256):
    self.min_size = int(min_size)
    self._tracker = face_lib.FaceMeshTracker(static_image_mode=True, max_num_faces=1)

  def __call__(self, image) -> np.ndarray | None:
    """image `[H, W, 3]` (uint8 or float in [-1, 1]) -> float32 `[40, 2]` (x, y) pixels of the
    input image, or None if no face was found."""
    lm = self.landmarks(image)
    return None if lm is None else lm[LIPS]

  def landmarks(self, image) -> np.ndarray | None:
    """image `[H, W, 3]` (uint8 or float in [-1, 1]) -> float32 `[478, 2]` (x, y) pixels of the
    input image (all FaceMesh points, irises included), or None if no face was found."""
    img = to_uint8(image)
    h, w = img.shape[:2]
    s = 1.0
    if min(h, w) < self.min_size:
      import cv2  # pylint: disable=g-import-not-at-top
      s = self.min_size / min(h, w)
      img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
    det = self._tracker(img)
    if det.landmarks is None:
      return None
    return (det.landmarks[:, :2] / s).astype(np.float32)

  def close(self):
    self._tracker.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def mouth_lmd(detector: MouthLandmarks, pred, target) -> dict:
  """LMD between `pred` and `target` frames `[T, H, W, 3]`.

  Returns:
    {"lmd": pixels (NaN if no frame pair had both faces), "lmd_norm": lmd / W,
     "per_frame": [T] (NaN where missing), "found_fraction": fraction of frames with both}.
  """
  pred, target = np.asarray(pred), np.asarray(target)
  if pred.shape != target.shape or pred.ndim != 4:
    raise ValueError(f"mouth_lmd: pred {pred.shape} / target {target.shape}; expected equal "
                     "[T, H, W, 3]")
  per = np.full([pred.shape[0]], np.nan)
  for t in range(pred.shape[0]):
    p, g = detector(pred[t]), detector(target[t])
    if p is not None and g is not None:
      per[t] = float(np.mean(np.linalg.norm(p - g, axis=-1)))
  found = ~np.isnan(per)
  lmd = float(np.mean(per[found])) if found.any() else float("nan")
  return {"lmd": lmd, "lmd_norm": lmd / pred.shape[2], "per_frame": per,
          "found_fraction": float(np.mean(found))}


def measured_gaze(detector: MouthLandmarks, frames) -> np.ndarray:
  """Gaze (pitch, yaw) of each frame `[T, H, W, 3]` as preprocessing measures it (module
  docstring): float32 `[T, 2]` radians (pitch > 0 looking down, yaw > 0 towards the image's
  left), NaN rows where FaceMesh found no face."""
  frames = np.asarray(frames)
  if frames.ndim != 4:
    raise ValueError(f"measured_gaze: frames {frames.shape}; expected [T, H, W, 3]")
  out = np.full([frames.shape[0], 2], np.nan, np.float32)
  for t in range(frames.shape[0]):
    lm = detector.landmarks(frames[t])
    if lm is not None:
      out[t] = face_lib.gaze(lm[None], sigma_frames=0.0)[0]
  return out


def measured_pose(detector: MouthLandmarks, frames) -> np.ndarray:
  """Head rotation (yaw, pitch, roll) of each frame `[T, H, W, 3]` as preprocessing measures it
  (`features.face.head_rotation`: six-point PnP on the frame's FaceMesh landmarks, no temporal
  smoothing): float32 `[T, 3]` radians (signs of `features.face`), NaN rows where FaceMesh found
  no face."""
  frames = np.asarray(frames)
  if frames.ndim != 4:
    raise ValueError(f"measured_pose: frames {frames.shape}; expected [T, H, W, 3]")
  out = np.full([frames.shape[0], 3], np.nan, np.float32)
  size = (frames.shape[2], frames.shape[1])
  for t in range(frames.shape[0]):
    lm = detector.landmarks(frames[t])
    if lm is not None:
      out[t] = face_lib.head_rotation(lm, size)
  return out


def gaze_error(detector: MouthLandmarks, frames, requested) -> dict:
  """Mean |measured − requested| gaze of frames `[T, H, W, 3]` against `requested` `[T, 2]`
  (pitch, yaw) radians.

  Returns:
    {"pitch_error", "yaw_error": radians (NaN if no face was found), "measured": `[T, 2]` (NaN
     rows where missing), "found_fraction"}.
  """
  g = measured_gaze(detector, frames)
  req = np.asarray(requested, np.float32)
  if req.shape != g.shape:
    raise ValueError(f"gaze_error: requested {req.shape}; expected {g.shape}")
  found = ~np.isnan(g[:, 0])
  err = np.abs(g[found] - req[found]).mean(0) if found.any() else np.full([2], np.nan)
  return {"pitch_error": float(err[0]), "yaw_error": float(err[1]), "measured": g,
          "found_fraction": float(np.mean(found))}
