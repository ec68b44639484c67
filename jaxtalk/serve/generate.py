"""`jaxtalk generate`: one portrait + a speech recording (+ a text prompt) -> a talking video.

  jaxtalk generate --image PORTRAIT --audio SPEECH [--text "PROMPT"] \
      [--pose-from VIDEO | --pose-template NAME | --drive VIDEO] [--animation-region REGION] \
      [--gaze PITCH,YAW | --gaze-mode MODE] [--gaze-from VIDEO] [--expression-from VIDEO] \
      [--pose-scale S] [--exp-scale S] [--lam L] [--lip-ratio R] [--eye-ratio R] \
      [--guidance G] [--seed N] [--paste-back] [--wav2vec DIR] [--pose-model EXPORT_DIR] \
      [--method NAME] --model EXPORT_DIR --out OUT.mp4

The model folder's method (`bundle.json["method"]`: posetalk, gohd or pctalk; `--method` checks
it) renders; every option below works with every method whose renderer reads the descriptor it
sets. With `--drive VIDEO` (PC-Talk), `--audio` may be left out: the driving video's sound is
the speech.

Pipeline (PoseTalk Fig. 9; `TalkingHeadPipeline` is the Python API):
  1. portrait: any size, any image file and mode Pillow reads (JPEG/PNG/WebP/TIFF/...; 8- or
     16-bit, grayscale, palette, alpha, CMYK; EXIF orientation applied: `video_io.load_image`);
     the face is found and cropped with the same functions and crop rule as preprocessing
     (`jaxtalk.features.face`: FaceMesh landmarks, square box of `crop_scale` x face size, resized
     to the
     generator's resolution); its head pose and gaze are measured the same way;
  2. audio: any file PyAV decodes (wav/mp3/flac/ogg/m4a or a video's audio track; any rate,
     sample format and channel count), resampled to 16 kHz and the channels averaged
     (`jaxtalk.features.audio`); T = round(seconds x 25) frames; Wav2Lip log-mel windows per frame;
  3. motion (`jaxtalk.motion.Motion`, raw units): from the model's generator (PoseTalk: the Pose
     Latent Diffusion model, text + audio or audio only; GoHD: pose / gaze diffusion from the
     portrait's p_0 and the expression predictor) or another bundle's (`--pose-model`: e.g.
     PoseTalk's PLD for `--text` with GoHD), from a reference video's poses (`--pose-from`,
     mouth re-talking), or from a named template (`--pose-template`; a still image given to
     `--pose-from` is an error that points here), or, for PC-Talk, video-driven reenactment
     (`--drive VIDEO`: the video's frames aligned as the portrait, read by the renderer's motion
     extractor, LivePortrait's relative motion of pose and expression deformation δ,
     `--animation-region exp|pose|lip|eyes|all`); then, each independently, gaze from a video
     (`--gaze-from`), expression from a video (`--expression-from`, GoHD), gaze fixed
     (`--gaze`) or by mode (`--gaze-mode`), `--pose-scale` / `--exp-scale`
     (`jaxtalk.motion.controls`);
  4. the bundle's method renders the Motion (`jaxtalk.methods`; PoseTalk: CoarseNet ->
     RefineNet -> Portrait Enhancer over overlapping windows of its training length,
     cross-faded so there are no seams, `jaxtalk.renderers.posetalk.render_windows`; GoHD: the
     animator over driving windows of the whole sequence, `--lam` λ,
     `jaxtalk.renderers.gohd`; PC-Talk: the implicit-keypoint renderer frame by frame,
     `--lip-ratio` / `--eye-ratio` LivePortrait's retargeting, `jaxtalk.renderers.pctalk`);
  5. H.264 at 25 fps with the input audio muxed as AAC (`video_io.write_video`), written
     atomically: on any error no output file is left behind.

Errors in the inputs raise `video_io.InputError` with the file named; the command prints it and
exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pathlib
import sys
import time
from typing import Optional

import numpy as np

from jaxtalk import motion as motion_lib
from jaxtalk.serve import video_io
from jaxtalk.motion import controls
from jaxtalk.serve.video_io import InputError

from jaxtalk.features.audio import FPS, SAMPLE_RATE  # pylint: disable=g-importing-member
MIN_AUDIO_SECONDS = 0.2      # 5 frames: one SyncNet window
SILENCE_RMS = 1e-4           # below this RMS (about -80 dBFS) the audio is treated as silent


# ----------------------------------------------------------------------------------------------
# Inputs.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class AlignedPortrait:
  """A portrait aligned as preprocessing aligns video frames.

  Attributes:
    image: uint8 `[H0, W0, 3]` the original RGB image.
    crop: uint8 `[R, R, 3]` the aligned face crop.
    box: float32 `[4]` (x0, y0, x1, y1) of the crop in image pixels (square, may extend past the
      image border; outside pixels are edge-replicated in `crop`).
    pose: float32 `[6]` raw head pose of the portrait (yaw, pitch, roll radians; tx, ty, scale).
    gaze: float32 `[2]` raw gaze (pitch, yaw radians).
    num_faces: faces found; the largest is used.
    landmarks: float32 `[478, 3]` FaceMesh landmarks of that face in crop coordinates (x, y in
      [0, 1] of the crop, z / side), as preprocessing stores them.
  """
  image: np.ndarray
  crop: np.ndarray
  box: np.ndarray
  pose: np.ndarray
  gaze: np.ndarray
  num_faces: int
  landmarks: Optional[np.ndarray] = None


def align_portrait(path, resolution: int, crop_scale: float = 1.6) -> AlignedPortrait:
  """Loads a portrait, finds the largest face and crops it like preprocessing does.

  Raises:
    InputError: unreadable image, or no face found (naming the file).
  """
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  image = video_io.load_image(path)
  det = face_lib.landmarks_from_image(image)
  if det.landmarks is None:
    raise InputError(f"{path}: no face found in the portrait (need one clearly visible face)")
  lm = det.landmarks[None]
  if det.num_faces > 1:
    box = face_lib.face_box(lm)[0]
    logging.warning("%s: %d faces found; using the largest (centre %.0f,%.0f px, size %.0f px)",
                    path, det.num_faces, box[0], box[1], box[2])
  box = face_lib.smoothed_crop_boxes(lm, crop_scale=crop_scale, sigma_frames=0.0)
  pose = face_lib.head_pose(lm, (image.shape[1], image.shape[0]), box, sigma_frames=0.0)[0]
  crop_lm = face_lib.to_crop_coords(lm, box)
  gaze = face_lib.gaze(crop_lm, sigma_frames=0.0)[0]
  crop = face_lib.crop_image(image, box[0], resolution)
  return AlignedPortrait(image=image, crop=crop, box=box[0].astype(np.float32),
                         pose=pose.astype(np.float32), gaze=gaze.astype(np.float32),
                         num_faces=det.num_faces, landmarks=crop_lm[0].astype(np.float32))


def load_speech(path) -> np.ndarray:
  """16 kHz mono float32 speech; errors for unreadable, empty, too short or silent audio."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if path.is_file() and path.stat().st_size == 0:
    raise InputError(f"{path}: audio file is empty")
  try:
    wav = audio_lib.load_audio(str(path))
  except ValueError as e:
    raise InputError(str(e)) from e
  seconds = len(wav) / SAMPLE_RATE
  if seconds < MIN_AUDIO_SECONDS:
    raise InputError(f"{path}: audio is {seconds:.3f} s long; need at least "
                     f"{MIN_AUDIO_SECONDS} s")
  rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64))))
  if rms < SILENCE_RMS:
    raise InputError(f"{path}: audio is silent (RMS {rms:.1e}); nothing to lip-sync to")
  return wav


def num_frames_for(wav: np.ndarray) -> int:
  """Video frames for audio: round(seconds x 25), so the video is as long as the audio."""
  return max(1, int(round(len(wav) / SAMPLE_RATE * FPS)))


def poses_from_video(path, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
  """Raw pose `[T, 6]` and gaze `[T, 2]` of a reference video, measured as in preprocessing.

  The reference is resampled to 25 fps; if it is shorter than `num_frames` it is played forwards
  and backwards (ping-pong) so the motion stays continuous; if longer, it is cut.

  Raises:
    InputError: unreadable video or no face in it.
  """
  pose, gaze, _ = track_video(path)
  idx = ping_pong(len(pose), num_frames)
  return pose[idx], gaze[idx]


def track_video(path, flag: str = "--pose-from"):
  """Raw pose `[N, 6]`, gaze `[N, 2]` and crop-coordinate FaceMesh landmarks `[N, 478, 3]` of
  the N frames of a reference video (resampled to 25 fps), measured as in preprocessing.

  Raises:
    InputError: missing file, a still image (`check_reference_video`, naming `flag`), an
      unreadable video or no face in at least half of its frames.
  """
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  lm, info = _track_landmarks(path, flag)
  boxes = face_lib.smoothed_crop_boxes(lm)
  pose = face_lib.head_pose(lm, (info.width, info.height), boxes)
  crop_lm = face_lib.to_crop_coords(lm, boxes).astype(np.float32)
  return pose, face_lib.gaze(crop_lm), crop_lm


def aligned_video(path, resolution: int, crop_scale: float = 1.6,
                  flag: str = "--drive") -> np.ndarray:
  """uint8 aligned face crops `[N, R, R, 3]` of the N frames of a driving video (resampled to
  25 fps): the portrait's crop rule (`align_portrait`: a square of `crop_scale` x face size,
  resized to `resolution`) on the landmarks `track_video` tracks, with preprocessing's temporal
  smoothing of the boxes (`features.face.smoothed_crop_boxes`).

  Raises:
    InputError: as `track_video` (naming the file and `flag`).
  """
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  lm, info = _track_landmarks(path, flag)
  boxes = face_lib.smoothed_crop_boxes(lm, crop_scale=crop_scale)
  crops = []
  try:
    for k, frame in decode.iter_frames(str(path), info):
      if k < len(boxes):
        crops.append(face_lib.crop_image(frame, boxes[k], resolution))
  except decode.DecodeError as e:
    raise InputError(f"{path}: cannot read the reference video ({e})") from e
  if len(crops) != len(boxes):
    raise InputError(f"{path}: decoded {len(crops)} frames, but tracked {len(boxes)}")
  return np.stack(crops)


def _track_landmarks(path, flag: str):
  """FaceMesh landmarks `[N, 478, 3]` in pixels (gaps filled) of a reference video's 25 fps
  frames and its `decode.probe` info (the errors of `track_video`)."""
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  check_reference_video(path, flag)
  found, landmarks = [], []
  try:
    info = decode.probe(str(path))
    with face_lib.FaceMeshTracker(max_num_faces=2) as tracker:
      for _, frame in decode.iter_frames(str(path), info):
        det = tracker(frame)
        found.append(det.landmarks is not None)
        landmarks.append(det.landmarks if det.landmarks is not None
                         else np.zeros((face_lib.NUM_LANDMARKS, 3), np.float32))
  except decode.DecodeError as e:
    raise InputError(f"{path}: cannot read the reference video ({e})") from e
  found = np.asarray(found, bool)
  if not found.size:
    raise InputError(f"{path}: the reference video has no frames")
  if found.mean() < 0.5:
    raise InputError(f"{path}: a face was found in only {found.mean():.0%} of the frames")
  return face_lib.fill_gaps(np.stack(landmarks), found).astype(np.float32), info


def check_reference_video(path, flag: str = "--pose-from") -> None:
  """Rejects a reference video (`flag`: --pose-from, --gaze-from, --expression-from or --drive)
  that is missing or a still image (before any work is done).

  A still image would give one pose repeated: a frozen head that looks like a failure of the
  motion model, so it is an error that points to `--pose-template` (e.g. "still") instead. The
  content decides, not the suffix: a JPEG renamed .mp4 is an image; an animated GIF (several
  frames) is a video.

  Raises:
    InputError: naming the file.
  """
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: reference video not found")
  try:
    with Image.open(path) as im:
      frames = int(getattr(im, "n_frames", 1) or 1)
      kind = im.format or "image"
      im.load()  # Pillow *identifies* a few video formats (MPEG-1) that it cannot decode.
  except Image.DecompressionBombError:
    frames, kind = 1, "very large image"
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
    return  # Not an image: a video (or unreadable, which decoding then reports).
  if frames <= 1:
    raise InputError(f"{path}: is an image ({kind}), but {flag} needs a video with a face; "
                     "use --pose-template for a fixed motion (e.g. --pose-template still)")


def ping_pong(n: int, t: int) -> np.ndarray:
  """Frame indices `[t]` into n frames played forwards and backwards (0, 1, .., n-1, n-2, ..)."""
  if n == 1:
    return np.zeros(t, np.int64)
  period = 2 * (n - 1)
  k = np.arange(t) % period
  return np.where(k < n, k, period - k)


# ----------------------------------------------------------------------------------------------
# The pipeline.
# ----------------------------------------------------------------------------------------------
class TalkingHeadPipeline:
  """Loads an exported model folder and turns (portrait, speech, controls) into video frames.

  Args:
    model_dir: folder written by `jaxtalk export` (contains `bundle.json`; its method renders).
    wav2vec: wav2vec 2.0 folder for a pose model trained on wav2vec features (default: the one
      recorded in bundle.json).
    pose_model: optional second bundle whose motion generator gives pose and gaze instead of the
      model's own (e.g. a PoseTalk bundle's text-conditioned PLD driving GoHD's animator).
    method: optional method name the model must be (`jaxtalk generate --method`).

  Raises:
    InputError: if a folder or a file it needs is missing or unreadable, the model is not of
      `method`, or `pose_model` has no motion generator (naming it).
  """

  def __init__(self, model_dir, wav2vec: Optional[str] = None, pose_model=None,
               method: Optional[str] = None):
    from jaxtalk import methods  # pylint: disable=g-import-not-at-top
    from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
    options = {} if wav2vec is None else {"wav2vec": wav2vec}
    found = bundle_lib.read_manifest(os.fspath(model_dir)).get("method", "posetalk")
    if method is not None:
      try:
        methods.get(method)
      except ValueError as e:
        raise InputError(f"--method {method}: {e}") from e
      if found != method:
        raise InputError(f"{model_dir}: is a {found} model, not {method} (write one with "
                         f"`jaxtalk export --method {method}`)")
    self.bundle = bundle_lib.load_bundle(model_dir, **options)
    try:
      self.method = methods.get(found)
    except ValueError as e:
      raise InputError(f"{model_dir}: {e}") from e
    self.resolution = self.bundle.resolution
    self.pose_model = None
    if pose_model is not None:
      self.pose_model = bundle_lib.load_bundle(pose_model, **options)
      if self.pose_model.sample_motion is None:
        raise InputError(f"{pose_model}: --pose-model has no motion generator (e.g. PoseTalk's "
                         "pld)")

  @property
  def reads_expression(self) -> bool:
    """Whether the model's renderer reads `Motion.expression` (GoHD's does)."""
    return hasattr(self.bundle, "add_expression")

  def source_motion(self, portrait: AlignedPortrait) -> motion_lib.Motion:
    """The portrait's own raw `Motion` `[1, 1, ...]`: pose p_0, gaze, and, for a renderer that
    reads expression, e_0 measured from its landmarks with the model's basis."""
    e0 = None
    if self.reads_expression:
      e0 = self.bundle.expression_coefficients(portrait.landmarks[None])[None]
    return motion_lib.Motion(pose=np.asarray(portrait.pose, np.float32)[None, None],
                             gaze=np.asarray(portrait.gaze, np.float32)[None, None],
                             expression=e0)

  def motion(self, wav: np.ndarray, portrait: AlignedPortrait, *, text: Optional[str] = None,
             pose_from=None, pose_template: Optional[str] = None, gaze=None,
             guidance: Optional[float] = None, seed: int = 0, gaze_mode: Optional[str] = None,
             gaze_from=None, expression_from=None, pose_scale: float = 1.0,
             exp_scale: float = 1.0, drive_from=None,
             animation_region: Optional[str] = None) -> motion_lib.Motion:
    """Raw per-frame Motion `[1, T, ...]` for the chosen motion source (see module docstring).

    Pose (and gaze): video-driven reenactment (`drive_from`, a renderer with `drive_motion`:
    PC-Talk's; LivePortrait's relative motion of the video's aligned frames, pose and
    `Motion.keypoints` δ, `animation_region` of `renderers.pctalk.REGIONS`, the video
    ping-ponged to T frames; it takes precedence over `pose_model`), a reference video
    re-framed to the portrait (`pose_from`), a pose template, or a generator (`pose_model`'s,
    else the model's own; `guidance` None = its default). Then, each independently: gaze from
    `gaze_from`, expression from `expression_from` (its FaceMesh landmarks through the model's
    basis), `gaze` fixed (pitch, yaw) or `gaze_mode` (`controls.GAZE_MODES`); a renderer that
    reads expression gets the model's predictor's (or e_0 held) when no source gave one; then
    `pose_scale` / `exp_scale` around p_0 / e_0 (with `drive_from`, p_0 is the driven
    sequence's first frame: the portrait's pose as the renderer's motion extractor reads it).

    Raises:
      InputError: an unknown template or gaze mode, a bad reference video, no generator, or a
        control the model cannot apply (naming the file or option), `drive_from` for a method
        without video-driven reenactment, or an animation region without `drive_from`.
    """
    if gaze is not None and gaze_mode not in (None, "generated"):
      raise InputError(f"--gaze and --gaze-mode {gaze_mode}: give one of them")
    self.check_drive(drive_from, animation_region, pose_from, pose_template)
    t = num_frames_for(wav)
    source = self.source_motion(portrait)
    tracked = {}

    def track(path, flag):
      if str(path) not in tracked:
        tracked[str(path)] = track_video(path, flag)
      pose, gz, lm = tracked[str(path)]
      return pose, gz, lm, ping_pong(len(pose), t)

    if drive_from is not None:
      motion = self._driven_motion(drive_from, portrait, t, animation_region or "all")
    else:
      motion = self._base_motion(wav, portrait, source, t, text=text, pose_from=pose_from,
                                 pose_template=pose_template, guidance=guidance, seed=seed,
                                 track=track)
    if gaze_from is not None:
      _, gz, _, idx = track(gaze_from, "--gaze-from")
      motion = motion.replace(gaze=gz[idx][None])
    if expression_from is not None:
      if not self.reads_expression:
        raise InputError(f"--expression-from {expression_from}: the {self.method.name} renderer "
                         "reads no expression coefficients (GoHD's does)")
      _, _, lm, idx = track(expression_from, "--expression-from")
      motion = motion.replace(expression=self.bundle.expression_coefficients(lm)[idx][None])
    try:
      if gaze is not None:
        motion = controls.override_gaze(motion, *gaze)
      elif gaze_mode is not None:
        motion = controls.gaze_mode(motion, gaze_mode, portrait.gaze)
      if self.reads_expression and motion.expression is None:
        motion = self.bundle.add_expression(motion, mel=_mel(wav, t),
                                            source_expression=source.expression[0, 0], seed=seed)
      if pose_scale != 1:
        motion = controls.scale_pose(motion, pose_scale,
                                     portrait.pose if drive_from is None else None)
      if exp_scale != 1:
        motion = controls.scale_expression(motion, exp_scale, None if source.expression is None
                                           else source.expression[0, 0])
    except ValueError as e:
      raise InputError(str(e)) from e
    f32 = lambda x: None if x is None else np.array(x, np.float32)  # noqa: E731
    return motion_lib.Motion(pose=f32(motion.pose), gaze=f32(motion.gaze),
                             expression=f32(motion.expression) if self.reads_expression else None,
                             keypoints=f32(motion.keypoints))

  def check_drive(self, drive_from, animation_region, pose_from=None,
                  pose_template=None) -> None:
    """Checks the video-driving options before any work (see `motion`).

    Raises:
      InputError: `drive_from` for a renderer without `drive_motion` (naming --drive), with
        another pose source, an animation region not declared by the method, or a region other
        than "all" without `drive_from`.
    """
    if drive_from is not None and not hasattr(self.bundle, "drive_motion"):
      raise InputError(f"--drive {drive_from}: the {self.method.name} method has no video-driven "
                       "reenactment (PC-Talk's implicit-keypoint renderer has: --method pctalk); "
                       "use --pose-from for a video's head poses")
    if drive_from is not None and (pose_from is not None or pose_template is not None):
      raise InputError(f"--drive {drive_from}: the driving video is the motion source; give "
                       "no --pose-from / --pose-template with it")
    if animation_region is None:
      return
    choices = next((c.choices for c in self.method.controls if c.name == "animation_region"),
                   None)
    if choices is None:
      raise InputError(f"--animation-region {animation_region}: the {self.method.name} method "
                       "has no video-driven reenactment (PC-Talk's has)")
    if animation_region not in choices:
      raise InputError(f"--animation-region {animation_region!r}: expected one of "
                       f"{', '.join(choices)}")
    if animation_region != "all" and drive_from is None:
      raise InputError(f"--animation-region {animation_region}: selects what a driving video "
                       "moves; give --drive VIDEO")

  def _driven_motion(self, drive_from, portrait: AlignedPortrait, t: int,
                     region: str) -> motion_lib.Motion:
    """The renderer's `drive_motion` over the driving video's aligned frames, ping-ponged to T
    frames, with the portrait's gaze (see `motion`)."""
    crops = aligned_video(drive_from, self.resolution, self.bundle.crop_scale, "--drive")
    to_float = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    try:
      m = self.bundle.drive_motion(to_float(portrait.crop), to_float(crops), region=region)
    except ValueError as e:
      raise InputError(f"--drive {drive_from}: {e}") from e
    idx = ping_pong(len(crops), t)
    return motion_lib.Motion(pose=np.asarray(m.pose)[:, idx],
                             gaze=np.broadcast_to(portrait.gaze, (1, t, 2)).astype(np.float32),
                             keypoints=np.asarray(m.keypoints)[:, idx])

  def _base_motion(self, wav, portrait, source, t, *, text, pose_from, pose_template, guidance,
                   seed, track) -> motion_lib.Motion:
    """Pose and gaze (and a generator's expression) before the controls (see `motion`)."""
    if pose_from is not None:
      pose, gz, _, idx = track(pose_from, "--pose-from")
      return controls.reframe(motion_lib.Motion(pose=pose[idx][None], gaze=gz[idx][None]),
                              portrait.pose)
    if pose_template is not None:
      try:
        pose = controls.pose_template(pose_template, t, portrait.pose)
      except ValueError as e:
        raise InputError(str(e)) from e
      return motion_lib.Motion(pose=pose[None], gaze=np.broadcast_to(portrait.gaze, (1, t, 2)))
    gen = self.pose_model or self.bundle
    if gen.sample_motion is None:
      drive = " or --drive (a driving video)" if hasattr(self.bundle, "drive_motion") else ""
      raise InputError(f"{self.bundle.path}: has no motion generator (the pose model, e.g. "
                       "PoseTalk's pld or GoHD's gohd_pose); use --pose-from, --pose-template "
                       f"or --pose-model{drive}")
    kw = {} if guidance is None else {"guidance": guidance}
    m = gen.sample_motion(wav, text=text, seed=seed, num_frames=t, source_motion=source, **kw)
    # Another bundle's expression coefficients are in its own basis: only the model's own count.
    e = None if m.expression is None or gen is not self.bundle else np.asarray(m.expression)[:, :t]
    return motion_lib.Motion(pose=np.asarray(m.pose)[:, :t], gaze=np.asarray(m.gaze)[:, :t],
                             expression=e)

  def render(self, portrait: AlignedPortrait, motion: motion_lib.Motion, wav: np.ndarray,
             progress: bool = True, **render_controls) -> np.ndarray:
    """uint8 frames `[T, R, R, 3]` of the aligned face, by the method's renderer
    (`render_controls`: the method's own renderer controls, e.g. GoHD's `lam`)."""
    source = portrait.crop.astype(np.float32) / 127.5 - 1.0
    out = self.bundle.render_motion(source, motion, mel=_mel(wav, motion.num_frames),
                                    source_pose=portrait.pose, progress=progress,
                                    **render_controls)
    return np.clip((out + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

  def render_controls(self, lam: Optional[float] = None, lip_ratio: Optional[float] = None,
                      eye_ratio: Optional[float] = None) -> dict:
    """The renderer controls to pass for the given values (None = the method's default): GoHD's
    `lam`, PC-Talk's `lip_ratio` / `eye_ratio`.

    Raises:
      InputError: a control the model's method does not declare, or a value outside its
        declared range.
    """
    declared = {c.name: c for c in self.method.controls}
    owner = {"lam": "GoHD's animator has a λ control", "lip_ratio": "PC-Talk's retargeting has",
             "eye_ratio": "PC-Talk's retargeting has"}
    out = {}
    for name, value in (("lam", lam), ("lip_ratio", lip_ratio), ("eye_ratio", eye_ratio)):
      if value is None:
        continue
      flag = "--" + name.replace("_", "-")
      if name not in declared:
        what = "λ" if name == "lam" else name
        raise InputError(f"{flag} {value}: the {self.method.name} method has no {what} control "
                         f"({owner[name]})")
      lo, hi = declared[name].range or (-np.inf, np.inf)
      if not lo <= float(value) <= hi:
        raise InputError(f"{flag} {value}: outside {lo:g} .. {hi:g}")
      out[name] = float(value)
    return out

  def generate(self, image, audio, out, *, text=None, pose_from=None, pose_template=None,
               gaze=None, guidance: Optional[float] = None, seed: int = 0,
               paste_back: bool = False, progress: bool = True, lam: Optional[float] = None,
               lip_ratio: Optional[float] = None, eye_ratio: Optional[float] = None,
               **motion_controls) -> dict:
    """Writes the talking video to `out` (mp4) and returns timings and sizes.

    `audio`: the speech; None takes the sound of the `drive_from` video. `motion_controls`:
    `motion`'s gaze_mode, gaze_from, expression_from, pose_scale, exp_scale, drive_from,
    animation_region; `lam` (GoHD's λ), `lip_ratio`, `eye_ratio` (PC-Talk's retargeting):
    `render_controls`.

    Raises:
      InputError: for bad inputs (the file is named); no output file is left behind.
    """
    drive = motion_controls.get("drive_from")
    self.check_drive(drive, motion_controls.get("animation_region"), pose_from, pose_template)
    for flag, ref in (("--pose-from", pose_from), ("--gaze-from", motion_controls.get(
        "gaze_from")), ("--expression-from", motion_controls.get("expression_from")),
                      ("--drive", drive)):
      if ref is not None:
        check_reference_video(ref, flag)  # Fail before the slow steps, not after them.
    render_controls = self.render_controls(lam, lip_ratio, eye_ratio)
    if audio is None and drive is None:
      raise InputError("no speech: give --audio (or --drive VIDEO, whose sound is then used)")
    timings = {}
    t0 = time.perf_counter()
    portrait = align_portrait(image, self.resolution, self.bundle.crop_scale)
    timings["face_alignment"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
      wav = load_speech(drive if audio is None else audio)
    except InputError as e:
      if audio is not None:
        raise
      raise InputError(f"{e} (without --audio, the --drive video's sound is the speech)") from e
    timings["audio"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    motion = self.motion(wav, portrait, text=text, pose_from=pose_from,
                         pose_template=pose_template, gaze=gaze, guidance=guidance, seed=seed,
                         **motion_controls)
    timings["motion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = self.render(portrait, motion, wav, progress, **render_controls)
    timings["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if paste_back:
      frames = (paste(portrait.image, f, portrait.box) for f in frames)
    video_io.write_video(out, frames, audio=wav)
    timings["encode"] = time.perf_counter() - t0
    return {"frames": motion.num_frames, "seconds": len(wav) / SAMPLE_RATE,
            "timings": timings, "num_faces": portrait.num_faces, "out": str(out),
            "motion": motion}


def _mel(wav: np.ndarray, num_frames: int) -> np.ndarray:
  """Wav2Lip log-mel windows `[T, 16, 80]` of 16 kHz speech (`features.audio.mel_windows`)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  return audio_lib.mel_windows(audio_lib.log_mel(wav), num_frames)


def paste(image: np.ndarray, crop: np.ndarray, box, feather: float = 0.12) -> np.ndarray:
  """Blends a generated face crop back into the original image.

  Args:
    image: uint8 `[H, W, 3]` original portrait.
    crop: uint8 `[R, R, 3]` generated aligned crop.
    box: (x0, y0, x1, y1) of the crop in image pixels (as in `AlignedPortrait.box`).
    feather: width of the soft border of the blend mask, as a fraction of the box side.

  Returns:
    uint8 `[H, W, 3]`: the crop resized into its box with a feathered elliptical mask (so the
    crop's corners, which hold background, are not pasted), the original elsewhere.
  """
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = image.shape[:2]
  x0, y0, x1, y1 = [float(v) for v in box]
  side = x1 - x0
  s = crop.shape[0] / side
  # Inverse of face.crop_image's affine map: crop pixel u -> image pixel x0 + (u + .5)/s - .5.
  m = np.array([[1 / s, 0, x0 + 0.5 / s - 0.5], [0, 1 / s, y0 + 0.5 / s - 0.5]], np.float64)
  warped = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  r = crop.shape[0]
  yy, xx = np.mgrid[0:r, 0:r].astype(np.float32)
  d = np.sqrt(((xx - (r - 1) / 2) / (r / 2)) ** 2 + ((yy - (r - 1) / 2) / (r / 2)) ** 2)
  mask = np.clip((1.0 - d) / feather, 0.0, 1.0)
  mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                        borderValue=0.0)[..., None]
  out = mask * warped.astype(np.float32) + (1 - mask) * image.astype(np.float32)
  return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------
def _parse_gaze(value: Optional[str]):
  if value is None:
    return None
  try:
    pitch, yaw = (float(v) for v in value.split(","))
  except ValueError as e:
    raise InputError(f"--gaze {value!r}: expected PITCH,YAW in radians, e.g. 0.0,-0.2") from e
  return pitch, yaw


def parse_args(argv):
  p = argparse.ArgumentParser(prog=argv[0], description=__doc__.split("\n\n")[0])
  p.add_argument("--image", required=True,
                 help="portrait (JPEG/PNG/WebP/TIFF/...; any size, bit depth and image mode)")
  p.add_argument("--audio", default=None,
                 help="speech (wav/mp3/flac/m4a, or a video); required unless --drive gives a "
                      "video with sound")
  p.add_argument("--text", default=None, help="head-motion prompt for the pose model")
  src = p.add_mutually_exclusive_group()
  src.add_argument("--pose-from", default=None, metavar="VIDEO",
                   help="take head poses from this video (any length and frame rate; a face in "
                        "at least half of its frames). An image is rejected (exit status 2): "
                        "for a fixed motion use --pose-template, e.g. --pose-template still")
  src.add_argument("--pose-template", default=None,
                   help=f"named head motion: {', '.join(controls.POSE_TEMPLATES)}")
  src.add_argument("--drive", default=None, metavar="VIDEO", dest="drive_from",
                   help="video-driven reenactment (--method pctalk): the video's head motion "
                        "and expressions, relative to its first frame, move the portrait "
                        "(LivePortrait's relative motion); its sound is the speech when "
                        "--audio is not given")
  p.add_argument("--animation-region", default=None, metavar="REGION",
                 help="what --drive transfers (the method's declared choices; PC-Talk's, as "
                      "LivePortrait's): exp (expressions, the portrait's head pose), "
                      "pose (head pose, the portrait's expression), lip, eyes (eyes and brows), "
                      "all (default)")
  p.add_argument("--gaze", default=None, help="fixed gaze PITCH,YAW in radians")
  p.add_argument("--gaze-mode", default=None, choices=controls.GAZE_MODES,
                 help="gaze of every frame: generated (the motion source's), freeze (the "
                      "portrait's), centre, left, right (GoHD's release modes)")
  p.add_argument("--gaze-from", default=None, metavar="VIDEO",
                 help="take the gaze from this video (independently of --pose-from)")
  p.add_argument("--expression-from", default=None, metavar="VIDEO",
                 help="take the expressions from this video's face (renderers that read "
                      "expression coefficients: GoHD)")
  p.add_argument("--pose-scale", type=float, default=1.0,
                 help="multiplies the head motion's deviation from the portrait's pose")
  p.add_argument("--exp-scale", type=float, default=1.0,
                 help="multiplies the expressions' deviation from the portrait's (GoHD)")
  p.add_argument("--lam", type=float, default=None,
                 help="GoHD's λ (Fig. 8): 0 the portrait's own latent, 1 the driven motion "
                      "(default 1)")
  p.add_argument("--lip-ratio", type=float, default=None,
                 help="PC-Talk: lip-open ratio of every frame, 0 (closed) .. 0.8 "
                      "(LivePortrait's lip retargeting; needs the pctalk_stitching stage)")
  p.add_argument("--eye-ratio", type=float, default=None,
                 help="PC-Talk: eye-open ratio of every frame, 0 (closed) .. 0.5 "
                      "(LivePortrait's eye retargeting; needs the pctalk_stitching stage)")
  p.add_argument("--guidance", type=float, default=None,
                 help="the motion generator's guidance (default: its own; PoseTalk: "
                      "classifier-free guidance scale 7.5; GoHD: p_0 guidance γ 0.4)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--paste-back", action="store_true",
                 help="blend the face back into the full portrait (default: the aligned crop)")
  p.add_argument("--model", required=True, help="folder written by `jaxtalk export`")
  p.add_argument("--method", default=None,
                 help="the method the model must be (default: whichever the model folder is; "
                      "see jaxtalk/methods.py)")
  p.add_argument("--pose-model", default=None, metavar="EXPORT_DIR",
                 help="a second model folder whose motion generator gives the head pose and "
                      "gaze, e.g. a PoseTalk bundle's text-conditioned PLD for --text with "
                      "--method gohd")
  p.add_argument("--wav2vec", default=None,
                 help="wav2vec 2.0 folder, for a pose model trained on wav2vec features "
                      "(default: the folder recorded in the model's bundle.json)")
  p.add_argument("--out", required=True, help="output .mp4")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  return p.parse_args(argv[1:])


def run(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  args = parse_args(argv)
  try:
    if not str(args.out).lower().endswith(".mp4"):
      raise InputError(f"{args.out}: output must be an .mp4 file")
    gaze = _parse_gaze(args.gaze)
    pipeline = TalkingHeadPipeline(args.model, wav2vec=args.wav2vec, pose_model=args.pose_model,
                                   method=args.method)
    info = pipeline.generate(args.image, args.audio, args.out, text=args.text,
                             pose_from=args.pose_from, pose_template=args.pose_template,
                             gaze=gaze, guidance=args.guidance, seed=args.seed,
                             paste_back=args.paste_back, progress=not args.quiet, lam=args.lam,
                             gaze_mode=args.gaze_mode, gaze_from=args.gaze_from,
                             expression_from=args.expression_from, pose_scale=args.pose_scale,
                             exp_scale=args.exp_scale, drive_from=args.drive_from,
                             animation_region=args.animation_region, lip_ratio=args.lip_ratio,
                             eye_ratio=args.eye_ratio)
  except InputError as e:
    print(f"jaxtalk generate: error: {e}", file=sys.stderr)
    return 2
  timings = ", ".join(f"{k} {v:.2f}s" for k, v in info["timings"].items())
  print(f"wrote {info['out']}: {info['frames']} frames ({info['seconds']:.2f} s of audio); "
        f"{timings}")
  return 0


if __name__ == "__main__":
  sys.exit(run())
