"""`jaxtalk generate`: one portrait + a speech recording (+ a text prompt) -> a talking video.

  jaxtalk generate --image PORTRAIT --audio SPEECH [--text "PROMPT"] \
      [--pose-from VIDEO | --pose-template NAME] [--gaze PITCH,YAW] [--guidance 7.5] [--seed N] \
      [--paste-back] [--wav2vec DIR] --model EXPORT_DIR --out OUT.mp4

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
  3. motion (`jaxtalk.motion.Motion`, raw units): from the Pose Latent Diffusion model (text +
     audio, or audio only), from a reference video's poses (`--pose-from`, mouth re-talking), or
     from a named template (`--pose-template`; a still image given to `--pose-from` is an
     error that points here); gaze fixed (`--gaze`), from PLD, or the source's;
  4. the bundle's method renders the Motion (`jaxtalk.methods`; PoseTalk: CoarseNet ->
     RefineNet -> Portrait Enhancer over overlapping windows of its training length,
     cross-faded so there are no seams, `jaxtalk.renderers.posetalk.render_windows`);
  5. H.264 at 25 fps with the input audio muxed as AAC (`video_io.write_video`), written
     atomically: on any error no output file is left behind.

Errors in the inputs raise `video_io.InputError` with the file named; the command prints it and
exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
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
  """
  image: np.ndarray
  crop: np.ndarray
  box: np.ndarray
  pose: np.ndarray
  gaze: np.ndarray
  num_faces: int


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
  gaze = face_lib.gaze(face_lib.to_crop_coords(lm, box), sigma_frames=0.0)[0]
  crop = face_lib.crop_image(image, box[0], resolution)
  return AlignedPortrait(image=image, crop=crop, box=box[0].astype(np.float32),
                         pose=pose.astype(np.float32), gaze=gaze.astype(np.float32),
                         num_faces=det.num_faces)


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
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  check_reference_video(path)
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
  lm = face_lib.fill_gaps(np.stack(landmarks), found).astype(np.float32)
  boxes = face_lib.smoothed_crop_boxes(lm)
  pose = face_lib.head_pose(lm, (info.width, info.height), boxes)
  gaze = face_lib.gaze(face_lib.to_crop_coords(lm, boxes))
  idx = _ping_pong(len(pose), num_frames)
  return pose[idx], gaze[idx]


def check_reference_video(path) -> None:
  """Rejects a `--pose-from` reference that is missing or a still image (before any work is done).

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
    raise InputError(f"{path}: is an image ({kind}), but --pose-from needs a video with a face; "
                     "use --pose-template for a fixed motion (e.g. --pose-template still)")


def _ping_pong(n: int, t: int) -> np.ndarray:
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
    model_dir: folder written by `jaxtalk export` (contains `bundle.json`).
    wav2vec: wav2vec 2.0 folder for a pose model trained on wav2vec features (default: the one
      recorded in bundle.json).

  Raises:
    InputError: if the folder or a file it needs is missing or unreadable (naming it).
  """

  def __init__(self, model_dir, wav2vec: Optional[str] = None):
    from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
    options = {} if wav2vec is None else {"wav2vec": wav2vec}
    self.bundle = bundle_lib.load_bundle(model_dir, **options)
    self.resolution = self.bundle.resolution

  def motion(self, wav: np.ndarray, portrait: AlignedPortrait, *, text: Optional[str] = None,
             pose_from=None, pose_template: Optional[str] = None, gaze=None,
             guidance: float = 7.5, seed: int = 0) -> motion_lib.Motion:
    """Raw per-frame Motion `[1, T, ...]` for the chosen motion source (see module docstring):
    a reference video re-framed to the portrait, a pose template, or the method's generator;
    then the gaze control."""
    t = num_frames_for(wav)
    if pose_from is not None:
      pose, gz = poses_from_video(pose_from, t)
      motion = controls.reframe(motion_lib.Motion(pose=pose[None], gaze=gz[None]), portrait.pose)
    elif pose_template is not None:
      try:
        pose = controls.pose_template(pose_template, t, portrait.pose)
      except ValueError as e:
        raise InputError(str(e)) from e
      motion = motion_lib.Motion(pose=pose[None], gaze=np.broadcast_to(portrait.gaze, (1, t, 2)))
    else:
      if self.bundle.sample_motion is None:
        raise InputError(f"{self.bundle.path}: has no motion generator (the pose model, e.g. "
                         "PoseTalk's pld); use --pose-from or --pose-template")
      m = self.bundle.sample_motion(wav, text=text, guidance=guidance, seed=seed, num_frames=t)
      motion = motion_lib.Motion(pose=np.asarray(m.pose)[:, :t], gaze=np.asarray(m.gaze)[:, :t])
    if gaze is not None:
      motion = controls.override_gaze(motion, *gaze)
    return motion_lib.Motion(pose=np.asarray(motion.pose, np.float32),
                             gaze=np.array(motion.gaze, np.float32))

  def render(self, portrait: AlignedPortrait, motion: motion_lib.Motion, wav: np.ndarray,
             progress: bool = True) -> np.ndarray:
    """uint8 frames `[T, R, R, 3]` of the aligned face, by the method's renderer."""
    from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
    mel = audio_lib.mel_windows(audio_lib.log_mel(wav), motion.num_frames)
    source = portrait.crop.astype(np.float32) / 127.5 - 1.0
    out = self.bundle.render_motion(source, motion, mel=mel, source_pose=portrait.pose,
                                    progress=progress)
    return np.clip((out + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)

  def generate(self, image, audio, out, *, text=None, pose_from=None, pose_template=None,
               gaze=None, guidance: float = 7.5, seed: int = 0, paste_back: bool = False,
               progress: bool = True) -> dict:
    """Writes the talking video to `out` (mp4) and returns timings and sizes.

    Raises:
      InputError: for bad inputs (the file is named); no output file is left behind.
    """
    if pose_from is not None:
      check_reference_video(pose_from)  # Fail before the slow steps, not after them.
    timings = {}
    t0 = time.perf_counter()
    portrait = align_portrait(image, self.resolution, self.bundle.crop_scale)
    timings["face_alignment"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    wav = load_speech(audio)
    timings["audio"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    motion = self.motion(wav, portrait, text=text, pose_from=pose_from,
                         pose_template=pose_template, gaze=gaze, guidance=guidance, seed=seed)
    timings["motion"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = self.render(portrait, motion, wav, progress)
    timings["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if paste_back:
      frames = (paste(portrait.image, f, portrait.box) for f in frames)
    video_io.write_video(out, frames, audio=wav)
    timings["encode"] = time.perf_counter() - t0
    return {"frames": motion.num_frames, "seconds": len(wav) / SAMPLE_RATE,
            "timings": timings, "num_faces": portrait.num_faces, "out": str(out),
            "motion": motion}


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
  p.add_argument("--audio", required=True, help="speech (wav/mp3/flac/m4a, or a video)")
  p.add_argument("--text", default=None, help="head-motion prompt for the pose model")
  src = p.add_mutually_exclusive_group()
  src.add_argument("--pose-from", default=None, metavar="VIDEO",
                   help="take head poses from this video (any length and frame rate; a face in "
                        "at least half of its frames). An image is rejected (exit status 2): "
                        "for a fixed motion use --pose-template, e.g. --pose-template still")
  src.add_argument("--pose-template", default=None,
                   help=f"named head motion: {', '.join(controls.POSE_TEMPLATES)}")
  p.add_argument("--gaze", default=None, help="fixed gaze PITCH,YAW in radians")
  p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--paste-back", action="store_true",
                 help="blend the face back into the full portrait (default: the aligned crop)")
  p.add_argument("--model", required=True, help="folder written by `jaxtalk export`")
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
    pipeline = TalkingHeadPipeline(args.model, wav2vec=args.wav2vec)
    info = pipeline.generate(args.image, args.audio, args.out, text=args.text,
                             pose_from=args.pose_from, pose_template=args.pose_template,
                             gaze=_parse_gaze(args.gaze), guidance=args.guidance, seed=args.seed,
                             paste_back=args.paste_back, progress=not args.quiet)
  except InputError as e:
    print(f"jaxtalk generate: error: {e}", file=sys.stderr)
    return 2
  timings = ", ".join(f"{k} {v:.2f}s" for k, v in info["timings"].items())
  print(f"wrote {info['out']}: {info['frames']} frames ({info['seconds']:.2f} s of audio); "
        f"{timings}")
  return 0


if __name__ == "__main__":
  sys.exit(run())
