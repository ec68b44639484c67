"""Tests of jaxtalk/features/face.py: PnP pose, gaze geometry, crop boxes, crops, detection."""

import pathlib

import numpy as np
import pytest

from jaxtalk.features import face


def euler_to_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
  """Inverse of `face.rotation_to_euler`: Rz(roll) Ry(yaw) Rx(pitch), the tests' ground truth."""
  cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                            np.cos(roll), np.sin(roll))
  rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
  return rz @ ry @ rx


def _project(yaw, pitch, roll, w=512, h=512, dist=3000.0, shift=(0.0, 0.0)):
  """Pixel landmarks [478, 3] whose PnP points are the 3D model under a known rotation."""
  rot = euler_to_rotation(yaw, pitch, roll)
  pts = face.MODEL_POINTS_3D @ rot.T + np.array([shift[0], shift[1], dist])
  cam = face.camera_matrix(w, h)
  uv = (pts[:, :2] / pts[:, 2:]) * cam[0, 0] + cam[:2, 2]
  lm = np.zeros([478, 3], np.float32)
  lm[list(face.PNP_LANDMARKS), :2] = uv
  return lm


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (-0.4, 0.2, 0.1),
                                    (0.2, -0.3, -0.2)])
def test_pnp_recovers_known_rotation(angles):
  got = face.head_rotation(_project(*angles), (512, 512))
  np.testing.assert_allclose(got, angles, atol=0.02)


def test_euler_round_trip_and_sign_conventions():
  for angles in [(0.3, -0.2, 0.1), (-1.0, 0.5, -0.4)]:
    np.testing.assert_allclose(face.rotation_to_euler(euler_to_rotation(*angles)), angles,
                               atol=1e-9)
  # yaw > 0: the face turns towards the image's left (the nose tip, in front of the eye corners,
  # ends up left of their midpoint), e.g. vox2_00373 whose nose points to the image's left.
  lm = _project(0.4, 0.0, 0.0)
  assert lm[1, 0] < (lm[33, 0] + lm[263, 0]) / 2 - 5
  # pitch > 0: looking down (the chin, behind the nose tip, rises towards it in the image).
  down, up = _project(0, 0.3, 0), _project(0, -0.3, 0)
  assert (down[152, 1] - down[1, 1]) < (up[152, 1] - up[1, 1])
  # roll > 0: clockwise in the image (the image-right eye corner goes down).
  lm = _project(0, 0, 0.3)
  assert lm[263, 1] > lm[33, 1] + 10


def _eye_landmarks(dx, dy):
  """Landmarks with both eyes 40 px wide and the irises offset by (dx, dy) eye widths."""
  lm = np.zeros([478, 3], np.float32)
  for (a, b, up, lo, iris), cx in zip((face.RIGHT_EYE, face.LEFT_EYE), (200.0, 300.0)):
    lm[a, :2] = (cx - 20, 250)
    lm[b, :2] = (cx + 20, 250)
    lm[up, :2] = (cx, 242)
    lm[lo, :2] = (cx, 258)
    lm[iris, :2] = (cx + 40 * dx, 250 + 40 * dy)
  return lm


def test_gaze_geometry_and_blinks():
  centred = face.gaze(np.stack([_eye_landmarks(0, 0)] * 3), sigma_frames=0)
  np.testing.assert_allclose(centred, 0, atol=1e-6)
  right = face.gaze(np.stack([_eye_landmarks(0.1, 0)] * 3), sigma_frames=0)
  np.testing.assert_allclose(right[:, 1], -np.arcsin(0.1 / face.EYEBALL_RADIUS), atol=1e-5)
  assert np.all(right[:, 0] == 0)
  up = face.gaze(np.stack([_eye_landmarks(0, -0.1)] * 3), sigma_frames=0)
  assert np.all(up[:, 0] < -0.2)  # looking up: pitch < 0 (head-pose convention)
  # A blink (closed lids) in the middle frame takes its neighbours' value.
  seq = np.stack([_eye_landmarks(0.1, 0)] * 5)
  for _, _, u, l, iris in (face.RIGHT_EYE, face.LEFT_EYE):
    seq[2, u, 1] = seq[2, l, 1] = 250
    seq[2, iris, :2] = seq[2, u, :2] + (0, 5)
  g = face.gaze(seq, sigma_frames=0)
  np.testing.assert_allclose(g[2], g[1], atol=1e-6)


def test_crop_boxes_are_square_smooth_and_follow_slow_motion():
  rng = np.random.default_rng(0)
  t = 100
  base = np.zeros([t, 478, 3], np.float32)
  unit = rng.uniform(-1, 1, size=[478, 2]).astype(np.float32)
  drift = np.linspace(0, 60, t)[:, None]
  base[:, :, :2] = 250 + 50 * unit[None] + drift[:, :, None] * np.array([1.0, 0.0])
  noisy = base + np.concatenate([rng.normal(0, 3, size=[t, 1, 2]),
                                 np.zeros([t, 1, 1])], -1).astype(np.float32)
  boxes = face.smoothed_crop_boxes(noisy, crop_scale=1.6, sigma_frames=10)
  np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], atol=1e-3)
  raw_centre = face.face_box(noisy)[:, 0]
  assert np.abs(np.diff(boxes[:, 0], 2)).max() < 0.2 * np.abs(np.diff(raw_centre, 2)).max()
  # Follows the drift (60 px) in the middle of the clip.
  centre = (boxes[:, 0] + boxes[:, 2]) / 2
  assert abs((centre[70] - centre[30]) - (drift[70, 0] - drift[30, 0])) < 5


def test_crop_image_maps_box_to_output_and_mouth_box():
  img = np.zeros([200, 300, 3], np.uint8)
  img[50:150, 100:200] = 255
  out = face.crop_image(img, (100, 50, 200, 150), 50)  # exactly the white square, 2x down
  assert out.shape == (50, 50, 3) and out.min() > 200
  out = face.crop_image(img, (50, 0, 250, 200), 100)  # white square in the middle half
  assert out[30:70, 30:70].min() > 200 and out[:20, :20].max() < 30
  # Outside the image: edge-replicated (no black borders from nowhere).
  assert face.crop_image(img, (-100, -100, 400, 400), 20).shape == (20, 20, 3)
  lm = np.zeros([478, 3])
  lm[list(face.LIPS), 0] = np.linspace(0.4, 0.6, len(face.LIPS))
  lm[list(face.LIPS), 1] = np.linspace(0.7, 0.8, len(face.LIPS))
  box = face.mouth_box(lm, margin=0.1)
  np.testing.assert_allclose(box, [0.38, 0.68, 0.62, 0.82], atol=1e-6)
  crop = face.to_crop_coords(np.array([[[150.0, 100.0, 10.0]]]), np.array([[100, 50, 200, 150]]))
  np.testing.assert_allclose(crop[0, 0], [0.5, 0.5, 0.1])


def test_fill_gaps_interpolates():
  x = np.array([[0.0], [np.nan], [2.0], [np.nan]])
  np.testing.assert_allclose(face.fill_gaps(x, [True, False, True, False])[:, 0], [0, 1, 2, 2])
  with pytest.raises(ValueError):
    face.fill_gaps(x, [False] * 4)


@pytest.mark.needs_data
def test_real_portrait_landmarks_pose_and_no_face(shared_data):
  import cv2  # pylint: disable=g-import-not-at-top
  img = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "HDTF_0.jpg")), cv2.COLOR_BGR2RGB)
  det = face.landmarks_from_image(img)
  assert det.num_faces == 1 and det.landmarks.shape == (478, 3)
  yaw, pitch, roll = face.head_rotation(det.landmarks, (img.shape[1], img.shape[0]))
  assert abs(yaw) < 0.5 and abs(pitch) < 0.5 and abs(roll) < 0.3
  boxes = face.detect_faces(img)
  assert len(boxes) == 1
  cx, cy = (boxes[0, :2] + boxes[0, 2:4]) / 2
  fb = face.face_box(det.landmarks)
  assert abs(cx - fb[0]) < 0.15 * fb[2] and abs(cy - fb[1]) < 0.2 * fb[2]
  # The small face in a wide frame is found (full-range fallback / mesh).
  musk = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "musk.png")), cv2.COLOR_BGR2RGB)
  assert len(face.detect_faces(musk)) >= 1
  # No face in a procedural pattern.
  pattern = np.zeros([256, 256, 3], np.uint8)
  pattern[::16] = 255
  assert len(face.detect_faces(pattern)) == 0
  assert face.landmarks_from_image(pattern).landmarks is None


@pytest.mark.needs_data
@pytest.mark.parametrize("frame,side", [((640, 480), 96), ((1280, 960), 160), ((1280, 960), 200),
                                        ((4000, 3000), 600), ((640, 480), 24)])
def test_small_faces_in_large_frames_are_found(frame, side, shared_data):
  """FaceMesh alone misses (or misplaces) faces under ~1/6 of the frame (all but the 200 px one
  here came back as "no face found"); the window search finds them, with landmarks where the
  portrait's own are. A 24 px face is too small for any landmark model: no face."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  src = Image.open(shared_data / "images" / "HDTF_0.jpg").convert("RGB")
  ref = face.landmarks_from_image(np.asarray(src)).landmarks
  w, h = frame
  canvas = Image.new("RGB", (w, h), (90, 90, 90))
  x0, y0 = (w - side) // 3, (h - side) // 2
  canvas.paste(src.resize((side, side)), (x0, y0))
  det = face.landmarks_from_image(np.asarray(canvas))
  if side < 32:
    assert det.landmarks is None and det.num_faces == 0
    return
  assert det.num_faces == 1 and det.landmarks.shape == (478, 3)
  want = ref[:, :2] * side / 256 + [x0, y0]
  err = np.abs(det.landmarks[:, :2] - want).mean() * 256 / side  # in px of the 256 px portrait
  assert err < 2.5, err


@pytest.mark.needs_data
def test_facemesh_prints_no_protobuf_error(shared_data):
  """mediapipe 0.10.21 + protobuf 6 printed "AttributeError: 'MessageFactory' object has no
  attribute 'GetPrototype'" on import (users read it as a crash); `face._protobuf_compat` fixes
  the cause. Run in a fresh process: the message came from the import itself."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("import sys; from jaxtalk.features import face; from jaxtalk.serve import video_io; "
          f"img = video_io.load_image({str(shared_data / 'images' / 'HDTF_0.jpg')!r}); "
          "det = face.landmarks_from_image(img); print('faces', det.num_faces)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(pathlib.Path(__file__).resolve().parents[2]))
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip() == "faces 1"
  assert "GetPrototype" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert "AttributeError" not in out.stderr, out.stderr[-3000:]
