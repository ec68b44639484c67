"""Face analysis shared by preprocessing and generation: landmarks, crop box, pose, gaze, mouth.

Detector: mediapipe 0.10.21's legacy FaceMesh with `refine_landmarks=True` (478 points: 468 face
mesh + 5 per iris), fully offline (models bundled in the wheel; see ../shared/DEPENDENCIES.md).
`FaceDetection` (short-range, then full-range model) boxes faces in single images
(`detect_faces`).

Coordinates: landmarks are `[478, 3]` float32 in *pixels* of the image they were found in
(x right, y down; z = mediapipe's relative depth scaled by the image width, negative towards the
camera). Crop boxes are `(x0, y0, x1, y1)` pixels, square.

Head pose (`head_pose`): `cv2.solvePnP` (iterative, started from a frontal pose) of six
landmarks (nose tip 1, chin 152, outer eye corners 33 / 263, mouth corners 61 / 291) against the
generic six-point 3D face model used in OpenCV head-pose tutorials (`MODEL_POINTS_3D`, arbitrary
units ~0.1 mm, nose tip at the origin) with a pinhole camera of focal length = image width and
the principal point at the image centre. Rotation R (model -> camera, x right, y down, z away
from the camera) is decomposed as R = Rz(roll) Ry(yaw) Rx(pitch); all angles are radians and 0
for a face looking straight into the camera. Signs (image-based, checked on the test clips):
yaw > 0 when the face turns towards the image's left (the subject's right), pitch > 0 when the
chin goes down (looking down), roll > 0 when the head tilts clockwise in the image. Typical
accuracy of six-point PnP with a generic model: a few degrees for near-frontal faces, worse (5-10
degrees) beyond 45 degrees of yaw where landmarks of the far side are guessed by the mesh model.

Gaze (`gaze`): eye-in-head direction from the iris centres (landmarks 468 and 473) relative to
each eye's corners (33/133 and 362/263) and lids (159/145, 386/374). The iris offset from the
eye centre, divided by the eye width, is converted to an angle with an eyeball radius of
`EYEBALL_RADIUS` eye widths (12 mm eyeball radius / ~28 mm palpebral fissure), with the same
sign convention as the head pose: yaw = asin(-dx / r) (> 0: looking towards the image's left),
pitch = asin(dy / r) (> 0: looking down); dx, dy are the iris offsets along / across the line
through the eye corners (x towards the image's right, y down); both eyes are averaged weighted
by their width (the more frontal eye counts more). Frames with closed eyes (opening < 0.12 eye
widths) take the value of the nearest open frame. No per-person
calibration and eyelids occlude the iris vertically, so expect roughly +-5 degrees horizontal and
+-10 degrees vertical error; it is a relative control signal, not a gaze tracker.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

NUM_LANDMARKS = 478

# Six-point PnP model (x right, y down, z away from the camera; nose tip at the origin).
PNP_LANDMARKS = (1, 152, 33, 263, 61, 291)
MODEL_POINTS_3D = np.array([
  [0.0, 0.0, 0.0],          # nose tip
  [0.0, 330.0, 65.0],       # chin
  [-225.0, -170.0, 135.0],  # outer corner of the eye on the image's left
  [225.0, -170.0, 135.0],   # outer corner of the eye on the image's right
  [-150.0, 150.0, 125.0],   # mouth corner, image left
  [150.0, 150.0, 125.0],    # mouth corner, image right
], np.float64)

# Eyes: (corner on image left, corner on image right, upper lid, lower lid, iris centre).
RIGHT_EYE = (33, 133, 159, 145, 468)   # subject's right eye (image left)
LEFT_EYE = (362, 263, 386, 374, 473)   # subject's left eye (image right)
EYEBALL_RADIUS = 0.43  # in eye widths
BLINK_OPENING = 0.12

# Outer and inner lip contour points.
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270,
        409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311,
        310, 415)

# A commonly used mediapipe -> iBUG 68-point correspondence (jaw 17, brows 10, nose 9, eyes 12,
# mouth 20). Approximate: the mesh has no exact iBUG definitions.
LANDMARKS_68 = (
  162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
  71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
  168, 197, 5, 4, 75, 97, 2, 326, 305,
  33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
  61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87)


# ----------------------------------------------------------------------------------------------
# Detection.
# ----------------------------------------------------------------------------------------------
def _protobuf_compat() -> None:
  """Gives protobuf >= 5.30's `MessageFactory` back the `GetPrototype` that mediapipe expects.

  mediapipe 0.10.21's C++ bindings (pybind11_protobuf) look up
  `google.protobuf.message_factory.MessageFactory(pool).GetPrototype` when they are imported.
  protobuf 5.30 removed that deprecated method (replaced by the module-level `GetMessageClass`,
  which is what it returned), and the pinned protobuf is 6.x (apache-beam and grain need it; see
  ../shared/DEPENDENCIES.md), so every `import mediapipe` printed
  `AttributeError: 'MessageFactory' object has no attribute 'GetPrototype'` to stderr, which users
  read as a crash. Adding the alias is what the bindings were written against; it hides nothing
  else (no stderr or warning filter), and is a no-op on a protobuf that still has the method.
  """
  from google.protobuf import message_factory  # pylint: disable=g-import-not-at-top
  if hasattr(message_factory.MessageFactory, "GetPrototype"):
    return

  def get_prototype(self, descriptor):
    del self
    return message_factory.GetMessageClass(descriptor)

  message_factory.MessageFactory.GetPrototype = get_prototype


def _mp():
  """The mediapipe module (heavy import, loaded lazily; the only place jaxtalk imports it)."""
  _protobuf_compat()  # Before the first `import mediapipe`: its bindings read it on import.
  import mediapipe as mp  # pylint: disable=g-import-not-at-top
  return mp


@dataclasses.dataclass
class Detection:
  """Largest face found in one frame.

  Attributes:
    landmarks: `[478, 3]` float32 pixels (see module docstring), or None if no face.
    num_faces: number of faces FaceMesh found in the frame.
  """
  landmarks: Optional[np.ndarray]
  num_faces: int


def _to_pixels(face_landmarks, width: int, height: int) -> np.ndarray:
  pts = np.array([[p.x, p.y, p.z] for p in face_landmarks.landmark], np.float32)
  return pts * np.array([width, height, width], np.float32)


class FaceMeshTracker:
  """mediapipe FaceMesh over the frames of one video (tracking mode) or single images.

  Keeps the largest face of each frame (by landmark bounding-box area) and reports how many faces
  were seen. In tracking mode the face followed in the previous frame is kept instead while it is
  at least `keep_ratio` as large as the largest one, so that two similar faces (an interview)
  do not make the crop jump between people. Use as a context manager or call `close()`.
  """

  def __init__(self, *, static_image_mode: bool = False, max_num_faces: int = 2,
               min_detection_confidence: float = 0.5, keep_ratio: float = 0.7):
    self._static = static_image_mode
    self._prev = None  # (cx, cy, size) of the face followed in the previous frame.
    self.keep_ratio = keep_ratio
    self._mesh = _mp().solutions.face_mesh.FaceMesh(
        static_image_mode=static_image_mode, max_num_faces=max_num_faces, refine_landmarks=True,
        min_detection_confidence=min_detection_confidence, min_tracking_confidence=0.5)

  def __call__(self, image: np.ndarray) -> Detection:
    """image: `[H, W, 3]` uint8 RGB."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
      raise ValueError(f"expected uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    result = self._mesh.process(np.ascontiguousarray(image))
    faces = result.multi_face_landmarks or []
    if not faces:
      self._prev = None
      return Detection(None, 0)
    h, w = image.shape[:2]
    pts = [_to_pixels(f, w, h) for f in faces]
    areas = np.array([np.ptp(p[:468, 0]) * np.ptp(p[:468, 1]) for p in pts])
    best = int(np.argmax(areas))
    if self._prev is not None and len(pts) > 1:
      # Continuity: stay with the face followed in the previous frame if it is still there and
      # nearly as large as the largest (two similar faces must not make the crop jump).
      centres = np.array([face_box(p)[:2] for p in pts])
      dist = np.linalg.norm(centres - self._prev[:2], axis=-1)
      near = int(np.argmin(dist))
      if dist[near] < 0.5 * self._prev[2] and areas[near] >= self.keep_ratio * areas[best]:
        best = near
    if not self._static:
      self._prev = face_box(pts[best])
    return Detection(pts[best], len(pts))

  def close(self):
    self._mesh.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def landmarks_from_image(image: np.ndarray, *, min_window: int = 256,
                         max_windows: int = 300) -> Detection:
  """Landmarks of the largest face of one RGB uint8 image (static mode), small faces included.

  FaceMesh's face detector sees the whole image scaled down to 128x128 px, so it misses faces
  smaller than about 1/6 of the image's longer side (measured: a 137 px face in a 1280x960
  image, a 400 px face in a 4000x3000 photo) and places the mesh of faces it barely finds badly
  (a 136 px face in a 1280x960 image: landmarks off by 7 px at 256 px scale; 0.7 px when
  measured in a window around the face). So:
  * when the whole image gives no face, it is searched again in overlapping square windows
    (stride half a window) of its shorter side, then half, a quarter, ... of it, down to
    `min_window` px (faces down to about 40 px) or to the scale that would need more than
    `max_windows` windows (4000x3000: down to 750 px windows, faces down to about 125 px); the
    first scale that finds a face ends the search;
  * the largest face found is measured once more in a square window 4x its size centred on it
    (when that is smaller than the image), so its landmarks never come from a face cut by a
    window border or seen too small.
  A portrait whose face fills a good part of the frame takes one or two FaceMesh calls; a
  4000x3000 image without any face takes about 90 (0.4 s here).

  Args:
    image: `[H, W, 3]` uint8 RGB.
    min_window: smallest search window, px.
    max_windows: largest number of windows searched at one scale.

  Returns:
    `Detection` with landmarks in pixels of `image`; `num_faces` counts the distinct faces seen
    at the scale that found one (a face seen in several overlapping windows counts once).
  """
  h, w = image.shape[:2]
  with FaceMeshTracker(static_image_mode=True, max_num_faces=4) as tracker:

    def in_window(x0, y0, side):
      d = tracker(image[y0:y0 + side, x0:x0 + side])
      if d.landmarks is None:
        return None
      return d.landmarks + np.array([x0, y0, 0], np.float32), d.num_faces

    det = tracker(image)
    if det.landmarks is not None:
      return _remeasured(image, [(det.landmarks, det.num_faces)], in_window)
    side = min(h, w)
    while True:
      starts = (_window_starts(h, side), _window_starts(w, side))
      if len(starts[0]) * len(starts[1]) > max_windows:
        break
      if side < max(h, w):  # (a window the size of the whole image was tried above)
        found = [r for y0 in starts[0] for x0 in starts[1]
                 if (r := in_window(x0, y0, side)) is not None]
        if found:
          return _remeasured(image, found, in_window)
      if side <= min_window:
        break
      side = max(side // 2, min_window)
  return Detection(None, 0)


def _window_starts(length: int, side: int) -> list[int]:
  """Start offsets of windows of `side` px over `length` px, overlapping by half a window."""
  if side >= length:
    return [0]
  n = int(np.ceil((length - side) / (side / 2))) + 1
  return sorted({int(round(v)) for v in np.linspace(0, length - side, n)})


def _remeasured(image, found, in_window) -> Detection:
  """The largest of `found` [(landmarks, num_faces)], re-measured in a window centred on it."""
  h, w = image.shape[:2]
  boxes = np.array([face_box(lm) for lm, _ in found])
  order = np.argsort(-boxes[:, 2])
  distinct = []  # the same face seen in overlapping windows counts once.
  for i in order:
    if all(np.hypot(*(boxes[i, :2] - boxes[j, :2])) > 0.5 * boxes[j, 2] for j in distinct):
      distinct.append(i)
  best = int(order[0])
  landmarks, num_faces = found[best]
  num_faces = max(len(distinct), num_faces)
  cx, cy, size = boxes[best]
  side = int(round(4 * size))
  if side < max(h, w) and side <= min(h, w):
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    centred = in_window(x0, y0, side)
    if centred is not None and np.hypot(*(face_box(centred[0])[:2] - (cx, cy))) < 0.5 * size:
      landmarks = centred[0]
  return Detection(np.asarray(landmarks, np.float32), num_faces)


def detect_faces(image: np.ndarray, min_confidence: float = 0.5) -> np.ndarray:
  """Face boxes in an RGB uint8 image with mediapipe FaceDetection.

  The short-range model (faces filling a good part of the image: portraits, face crops) is tried
  first; if it finds nothing, the full-range model (small faces in a wide frame).

  Returns:
    float32 `[F, 5]`: (x0, y0, x1, y1) pixels and the score, largest box first; F may be 0.
  """
  mp = _mp()
  h, w = image.shape[:2]
  boxes = []
  for model in (0, 1):
    with mp.solutions.face_detection.FaceDetection(
        model_selection=model, min_detection_confidence=min_confidence) as det:
      result = det.process(np.ascontiguousarray(image))
    for d in result.detections or []:
      b = d.location_data.relative_bounding_box
      boxes.append([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h,
                    d.score[0]])
    if boxes:
      break
  boxes = np.array(boxes, np.float32).reshape(-1, 5)
  order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
  return boxes[order]


# ----------------------------------------------------------------------------------------------
# Temporal helpers.
# ----------------------------------------------------------------------------------------------
def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian smoothing along axis 0 (time), edges replicated; sigma in frames (0: copy)."""
  x = np.asarray(x, np.float64)
  if sigma <= 0 or x.shape[0] < 2:
    return x.copy()
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  return ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest")


def fill_gaps(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """Linearly interpolates rows of `x [T, ...]` where `valid [T]` is False (edges: nearest).

  Raises:
    ValueError: if no row is valid.
  """
  valid = np.asarray(valid, bool)
  if not valid.any():
    raise ValueError("fill_gaps: no valid rows")
  x = np.asarray(x, np.float64)
  if valid.all():
    return x.copy()
  t = np.arange(x.shape[0])
  flat = x.reshape(x.shape[0], -1)
  out = np.stack([np.interp(t, t[valid], flat[valid, j]) for j in range(flat.shape[1])], -1)
  return out.reshape(x.shape)


# ----------------------------------------------------------------------------------------------
# Crop box and alignment.
# ----------------------------------------------------------------------------------------------
def face_box(landmarks: np.ndarray) -> np.ndarray:
  """(cx, cy, size) of the 468 mesh points' bounding box: centre and max(width, height), px."""
  pts = np.asarray(landmarks)[..., :468, :2]
  lo, hi = pts.min(axis=-2), pts.max(axis=-2)
  centre = (lo + hi) / 2
  size = (hi - lo).max(axis=-1)
  return np.concatenate([centre, size[..., None]], axis=-1)


def smoothed_crop_boxes(landmarks: np.ndarray, *, crop_scale: float = 1.6,
                        sigma_frames: float = 25.0) -> np.ndarray:
  """Square crop boxes that follow the face slowly (no jitter).

  Args:
    landmarks: `[T, 478, 3]` pixels (gaps already filled).
    crop_scale: crop side = crop_scale x face size (face size = larger side of the mesh box).
    sigma_frames: Gaussian smoothing of centre and size over time (25 = 1 s at 25 fps), so the
      crop drifts with slow head translation and the remaining head motion shows up in
      (tx, ty, scale) of the pose.

  Returns:
    float32 `[T, 4]` (x0, y0, x1, y1) pixels, square.
  """
  box = smooth(face_box(landmarks), sigma_frames)
  half = box[:, 2] * crop_scale / 2
  return np.stack([box[:, 0] - half, box[:, 1] - half, box[:, 0] + half, box[:, 1] + half],
                  -1).astype(np.float32)


def crop_image(image: np.ndarray, box: Sequence[float], resolution: int) -> np.ndarray:
  """Crops the square `box` (x0, y0, x1, y1 px) from `image` and resizes to `resolution`.

  Pixels outside the image are edge-replicated. Returns uint8 `[R, R, 3]`.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  x0, y0, x1, y1 = [float(v) for v in box]
  side = max(x1 - x0, 1e-6)
  # Downscaling: crop at (about) native resolution first, then area-resize (no aliasing).
  out_size = resolution if side <= resolution else max(int(round(side)), resolution)
  s = out_size / side
  # Output pixel u (centre u + 0.5) samples source pixel index x0 + (u + 0.5) / s - 0.5.
  m = np.array([[s, 0, -s * x0 + 0.5 * (s - 1)], [0, s, -s * y0 + 0.5 * (s - 1)]], np.float64)
  out = cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
  if out_size != resolution:
    out = cv2.resize(out, (resolution, resolution), interpolation=cv2.INTER_AREA)
  return out


def to_crop_coords(landmarks: np.ndarray, box: np.ndarray) -> np.ndarray:
  """Pixel landmarks `[..., K, 3]` -> crop coordinates (x, y in [0, 1] of the crop, z / side)."""
  box = np.asarray(box, np.float64)
  side = (box[..., 2] - box[..., 0])[..., None]
  out = np.asarray(landmarks, np.float64).copy()
  out[..., 0] = (out[..., 0] - box[..., 0, None]) / side
  out[..., 1] = (out[..., 1] - box[..., 1, None]) / side
  out[..., 2] = out[..., 2] / side
  return out


def mouth_box(crop_landmarks: np.ndarray, margin: float = 0.15) -> np.ndarray:
  """Mouth box `[..., 4]` (x0, y0, x1, y1) in [0, 1] crop coordinates from crop landmarks.

  The lip points' bounding box grown by `margin` x its width on every side, clipped to [0, 1].
  """
  lips = np.asarray(crop_landmarks)[..., LIPS, :2]
  lo, hi = lips.min(axis=-2), lips.max(axis=-2)
  pad = margin * (hi[..., :1] - lo[..., :1])
  return np.clip(np.concatenate([lo - pad, hi + pad], -1), 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Head pose and gaze.
# ----------------------------------------------------------------------------------------------
def rotation_to_euler(r: np.ndarray) -> np.ndarray:
  """R = Rz(roll) Ry(yaw) Rx(pitch) -> (yaw, pitch, roll) radians."""
  yaw = np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2]))
  pitch = np.arctan2(r[2, 1], r[2, 2])
  roll = np.arctan2(r[1, 0], r[0, 0])
  return np.array([yaw, pitch, roll])


def camera_matrix(width: int, height: int) -> np.ndarray:
  return np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)


def head_rotation(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
  """(yaw, pitch, roll) radians of one face by six-point PnP (see module docstring).

  Args:
    landmarks: `[478, 3]` (or at least the PnP indices) pixels in an image of
      `image_size = (width, height)`.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  w, h = image_size
  img_pts = np.asarray(landmarks, np.float64)[list(PNP_LANDMARKS), :2]
  cam = camera_matrix(w, h)
  # Frontal start at a distance where the model's eye span matches the image eye span.
  eye_span = max(np.linalg.norm(img_pts[3] - img_pts[2]), 1.0)
  dist = cam[0, 0] * 450.0 / eye_span
  rvec = np.zeros([3, 1])
  tvec = np.array([[img_pts[0, 0] - cam[0, 2]], [img_pts[0, 1] - cam[1, 2]],
                   [cam[0, 0]]]) * (dist / cam[0, 0])
  tvec[2, 0] = dist
  ok, rvec, tvec = cv2.solvePnP(MODEL_POINTS_3D, img_pts, cam, None, rvec, tvec,
                                useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
  if not ok:
    return np.full([3], np.nan)
  rot, _ = cv2.Rodrigues(rvec)
  return rotation_to_euler(rot)


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int], crop_boxes: np.ndarray,
              *, sigma_frames: float = 1.5) -> np.ndarray:
  """Per-frame 6-D pose, temporally smoothed.

  Args:
    landmarks: `[T, 478, 3]` pixels of the source video frames.
    image_size: (width, height) of the source frames.
    crop_boxes: `[T, 4]` crop boxes in pixels (see `smoothed_crop_boxes`).
    sigma_frames: Gaussian smoothing of every component over time (frames).

  Returns:
    float32 `[T, 6]`: yaw, pitch, roll (radians); tx, ty = face-box centre minus crop centre in
    crop widths; scale = face size / crop side (see `face_box`).
  """
  rot = np.stack([head_rotation(lm, image_size) for lm in landmarks])
  bad = ~np.isfinite(rot).all(-1)
  if bad.all():
    rot = np.zeros_like(rot)
  elif bad.any():
    rot = fill_gaps(rot, ~bad)
  rot = np.unwrap(rot, axis=0)
  fb = face_box(landmarks)
  side = crop_boxes[:, 2] - crop_boxes[:, 0]
  tx = (fb[:, 0] - (crop_boxes[:, 0] + crop_boxes[:, 2]) / 2) / side
  ty = (fb[:, 1] - (crop_boxes[:, 1] + crop_boxes[:, 3]) / 2) / side
  scale = fb[:, 2] / side
  pose = np.concatenate([rot, np.stack([tx, ty, scale], -1)], -1)
  return smooth(pose, sigma_frames).astype(np.float32)


def eye_measures(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-eye normalised iris offset, opening and width.

  Args:
    landmarks: `[..., 478, 2+]` (any consistent unit).

  Returns:
    offsets `[..., 2 eyes, 2]` (dx, dy) in eye widths (x along the corner line towards the image
    right, y perpendicular, down), opening `[..., 2]` (lid distance / eye width), width `[..., 2]`.
  """
  lm = np.asarray(landmarks, np.float64)[..., :2]
  offs, opens, widths = [], [], []
  for a, b, up, lo, iris in (RIGHT_EYE, LEFT_EYE):
    pa, pb = lm[..., a, :], lm[..., b, :]
    width = np.linalg.norm(pb - pa, axis=-1)
    u = (pb - pa) / np.maximum(width[..., None], 1e-6)
    v = np.stack([-u[..., 1], u[..., 0]], -1)
    centre_x = (pa + pb) / 2
    centre_y = (lm[..., up, :] + lm[..., lo, :]) / 2
    d = lm[..., iris, :]
    dx = np.sum((d - centre_x) * u, -1) / np.maximum(width, 1e-6)
    dy = np.sum((d - centre_y) * v, -1) / np.maximum(width, 1e-6)
    offs.append(np.stack([dx, dy], -1))
    opens.append(np.linalg.norm(lm[..., up, :] - lm[..., lo, :], axis=-1) /
                 np.maximum(width, 1e-6))
    widths.append(width)
  return np.stack(offs, -2), np.stack(opens, -1), np.stack(widths, -1)


def gaze(landmarks: np.ndarray, *, sigma_frames: float = 1.0) -> np.ndarray:
  """Eye-in-head gaze (pitch, yaw) radians per frame (see module docstring for the method).

  Args:
    landmarks: `[T, 478, 2+]` landmarks (pixels or crop coordinates).
    sigma_frames: Gaussian smoothing over time, after blink frames are filled in.

  Returns:
    float32 `[T, 2]` (pitch > 0 looking down, yaw > 0 looking towards the image's left), the
    head-pose sign convention.
  """
  offs, opening, width = eye_measures(landmarks)
  wsum = np.maximum(width.sum(-1, keepdims=True), 1e-6)
  off = (offs * (width / wsum)[..., None]).sum(-2)  # [T, 2]
  yaw = np.arcsin(np.clip(-off[:, 0] / EYEBALL_RADIUS, -1, 1))
  pitch = np.arcsin(np.clip(off[:, 1] / EYEBALL_RADIUS, -1, 1))
  g = np.stack([pitch, yaw], -1)
  is_open = opening.max(-1) >= BLINK_OPENING
  if is_open.any() and not is_open.all():
    g = fill_gaps(g, is_open)
  return smooth(g, sigma_frames).astype(np.float32)
