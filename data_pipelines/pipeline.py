"""Apache Beam preprocessing: talking-face videos -> ArrayRecord clip shards + dataset_info.json.

  jaxtalk preprocess --input=<manifest.jsonl | manifest.csv | glob | dir> --output_dir=DIR \
      [--runner=DirectRunner|DataflowRunner|FlinkRunner|SparkRunner] [--resolution=256] \
      [--max_clip_seconds=10] [--num_shards=N] [any other Beam pipeline option]

Per input video (`process_video`, plain Python, also used by benchmarks/preprocess.py):
  1. decode (PyAV), resample to 25 fps by timestamps (`decode.py`);
  2. face: mediapipe FaceMesh (478 landmarks with irises) on every frame in tracking mode, the
     largest face kept when several are seen (noted in the record and in warnings.jsonl); gaps of
     up to `max_gap_frames` frames without a face are interpolated, longer gaps split the video;
  3. pieces of consecutive face frames are cut into clips of at most `max_clip_seconds` (equal
     lengths); pieces shorter than `min_clip_seconds` are dropped;
  4. per clip: a Gaussian-smoothed square crop box (sigma 1 s, so the crop does not jitter), head
     pose by PnP and gaze from the irises (`jaxtalk.features.face`), smoothed; mouth box; frames
     cropped,
     resized to `resolution` and JPEG-encoded; audio decoded (PyAV) to 16 kHz mono int16 aligned to
     the first video frame, and its Wav2Lip log-mel (`jaxtalk.features.audio`);
  5. audio-visual sync (`av_sync.py`): the offset between mouth opening and speech energy is
     estimated for every clip (`av_offset`, `av_confidence`); with `sync_audio` (default on) a clip
     whose estimate is confident (>= `sync_min_confidence`) and at least `sync_min_offset` frames
     off gets its audio shifted by that many frames: frame t takes the source audio of frame
     t + offset (real neighbouring audio of the source; video frames are trimmed at the clip's
     ends only where the source has no audio for them), and the mel / wav2vec features are
     computed from the shifted audio. Shifts are logged, noted in the clip and warnings.jsonl;
  6. one record per clip (`schema.py`); when the manifest line names `coefficients` (a
     Deep3DFaceRecon file, `load_coefficients`), its `exp` rows of the source frames each 25 fps
     frame shows become the clip's `expression` (`expression_source` "deep3dfacerecon"; angle and
     trans, when both present, `pose_3dmm`; no `eye_features`: they need BFM's mesh). FaceMesh-basis
     coefficients and eye features are added afterwards by `jaxtalk expression-basis`
     (`expression_pass.py`).
Inputs that fail go to `dead_letter.jsonl` as {"path", "id", "stage", "reason"} and the run goes
on: unreadable/corrupt/truncated file (stage "decode"), too short ("decode"), no face / face too
rarely found ("face"), no audio track, silent or unreadable audio ("audio"), extreme head pose
("pose"), a coefficients file that is missing, malformed or of another length ("coefficients").

Outputs in `output_dir`:
  clips-SSSSS-of-NNNNN.array_record   records; clip -> shard by a stable hash of the clip id, sorted
                                      by clip id inside a shard (re-running gives identical files)
  dataset_info.json                   counts, hours, per-feature mean/std, vocabulary, clip index
                                      (with each clip's av_offset, av_confidence, audio_shift),
                                      the options; with --wav2vec_path also "wav2vec": {"path"
                                      (absolute), "layer"} of the stored features, which PLD
                                      sampling reads to compute the same features from new audio
  dead_letter.jsonl, warnings.jsonl   sorted by path
The shards are written by `_WriteShard` with array_record's writer and the options of
`array_record.beam.arrayrecordio.WriteToArrayRecord` ("group_size:1"); that sink itself assigns
records to shards round-robin from a random start, so its output differs between runs, which is
why the deterministic grouping is done here. `--sink=arrayrecordio` uses it anyway (faster on
large runners; the clip index in dataset_info.json is then rebuilt by reading the shards back).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from typing import Any, Iterable, Optional

import numpy as np

from data_pipelines import av_sync
from data_pipelines import decode
from data_pipelines import readers
from data_pipelines import schema
from jaxtalk.core import files

DATASET_INFO = "dataset_info.json"
DEAD_LETTER = "dead_letter.jsonl"
WARNINGS = "warnings.jsonl"
SHARD_PREFIX = "clips"
WAV2VEC_LAYER = -1  # hidden state stored by --wav2vec_path: last_hidden_state.


@dataclasses.dataclass(frozen=True)
class Options:
  """Preprocessing options (all have command-line flags of the same name).

  Attributes:
    resolution: side of the stored square crops (pixels).
    max_clip_seconds: longer face segments are cut into equal clips no longer than this.
    min_clip_seconds: shorter segments are dropped (a video with none is "too short").
    crop_scale: crop side / face size (larger side of the landmark box).
    crop_sigma: smoothing of the crop box over time, frames.
    pose_sigma: smoothing of the pose over time, frames.
    max_gap_frames: face-less gaps up to this many frames are interpolated.
    max_abs_yaw, max_abs_pitch: a clip whose median |yaw| / |pitch| (radians) exceeds these is
      dead-lettered as an extreme pose.
    jpeg_quality: JPEG quality of stored frames.
    audio_pad_seconds: audio ending at most this much before the video is padded with silence;
      a larger shortfall cuts the video to the audio.
    num_shards: output shards (0: one per 32 input videos, at least 1).
    wav2vec_path: optional local wav2vec 2.0 checkpoint folder
    (`jaxtalk.features.audio.Wav2Vec2Features`):
      records then carry `wav2vec [T, C]` at 25 fps.
    clip_path: optional local CLIP folder (FlaxCLIPTextModel + its tokenizer files): records then
      carry the pooled `text_embedding [D]` of their text.
    sync_audio: shift a clip's audio (and mel, wav2vec) to match its lips when the estimated
      audio-visual offset is confident (see `av_sync.py`); false: only measure and store it.
    sync_max_offset: largest audio-visual offset searched, frames.
    sync_min_confidence: shift only at this confidence or more (z-score of the peak correlation;
      unrelated signals reach 3.0 in at most ~2.5% of clips, 2.5 in up to ~11%).
    sync_min_offset: shift only when |offset| >= this many frames (in-sync speech measures -1..+1).
  """
  resolution: int = 256
  max_clip_seconds: float = 10.0
  min_clip_seconds: float = 1.0
  crop_scale: float = 1.6
  crop_sigma: float = 25.0
  pose_sigma: float = 1.5
  max_gap_frames: int = 12
  max_abs_yaw: float = 1.2
  max_abs_pitch: float = 0.9
  jpeg_quality: int = 90
  audio_pad_seconds: float = 0.1
  min_audio_rms: float = 1e-4
  num_shards: int = 0
  wav2vec_path: str = ""
  clip_path: str = ""
  sync_audio: bool = True
  sync_max_offset: int = av_sync.DEFAULT_MAX_OFFSET
  sync_min_confidence: float = av_sync.DEFAULT_MIN_CONFIDENCE
  sync_min_offset: int = 2


class StageError(Exception):
  """A per-video failure that goes to the dead-letter output."""

  def __init__(self, stage: str, reason: str):
    super().__init__(f"{stage}: {reason}")
    self.stage = stage
    self.reason = reason


# ----------------------------------------------------------------------------------------------
# Per-video processing (no Beam).
# ----------------------------------------------------------------------------------------------
class _Timer:
  """Accumulates CPU seconds (process time, all threads) per stage into a dict."""

  def __init__(self, timings: Optional[dict], stage: str):
    self.timings, self.stage = timings, stage

  def __enter__(self):
    self.t0 = time.process_time()

  def __exit__(self, *exc):
    if self.timings is not None:
      self.timings[self.stage] = self.timings.get(self.stage, 0.0) + (
          time.process_time() - self.t0)


def _segments(found: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
  """[start, stop) runs of face frames, bridging gaps of <= max_gap frames."""
  idx = np.flatnonzero(found)
  if idx.size == 0:
    return []
  runs, start, last = [], idx[0], idx[0]
  for i in idx[1:]:
    if i - last - 1 > max_gap:
      runs.append((int(start), int(last) + 1))
      start = i
    last = i
  runs.append((int(start), int(last) + 1))
  return runs


def _split(start: int, stop: int, max_len: int) -> list[tuple[int, int]]:
  n = stop - start
  pieces = max(1, math.ceil(n / max_len))
  bounds = [start + (n * k) // pieces for k in range(pieces + 1)]
  return list(zip(bounds[:-1], bounds[1:]))


def _audio_for_video(item: readers.VideoItem, info: decode.VideoInfo) -> np.ndarray:
  """16 kHz mono float audio aligned to the first video frame (sample 0 = frame 0)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  path = item.audio or item.video
  if not item.audio and not info.has_audio:
    raise StageError("audio", "no audio track")
  try:
    wav, a0 = audio_lib.load_audio_with_start(path)
  except ValueError as e:
    raise StageError("audio", str(e)) from e
  offset = int(round((info.start_time - a0) * audio_lib.SAMPLE_RATE)) if not item.audio else 0
  if offset > 0:
    wav = wav[offset:]
  elif offset < 0:
    wav = np.concatenate([np.zeros([-offset], np.float32), wav])
  return wav


def _sync_clip(s: int, e: int, landmarks: np.ndarray, wav: np.ndarray, opts: Options,
               min_frames: int) -> dict:
  """Audio-visual offset of clip [s, e) and the audio shift `opts` asks for (`av_sync.py`).

  Args:
    s, e: the clip's video frames in the source (frame k <-> wav samples [640 k, 640 (k + 1))).
    landmarks: `[e - s, 478, 3]` FaceMesh landmarks of the clip (pixels).
    wav: the source's 16 kHz audio aligned to its first video frame.
    opts: preprocessing options (sync_*).
    min_frames: a shift that would leave fewer frames is not made.

  Returns:
    dict(start, stop, shift, offset, confidence, note): video frames [start, stop) are kept
    (inside [s, e); trimmed only where the source has no audio for the shifted frames) and frame
    k gets the audio of frame k + shift; offset and confidence are the estimate on the unshifted
    clip (from the int16 audio the record would store); note says what was done ("" if nothing).
  """
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  spf = audio_lib.SAMPLES_PER_FRAME
  pcm = audio_lib.to_int16(wav[s * spf:e * spf])
  mel = audio_lib.log_mel(audio_lib.from_int16(pcm))
  offset, confidence = av_sync.estimate_av_offset(
      av_sync.mouth_opening(landmarks), av_sync.speech_energy(mel, e - s), opts.sync_max_offset)
  out = dict(start=s, stop=e, shift=0, offset=offset, confidence=confidence, note="")
  shift = av_sync.correction(offset, confidence, min_confidence=opts.sync_min_confidence,
                             min_offset=opts.sync_min_offset) if opts.sync_audio else 0
  if not shift:
    return out
  start, stop = max(s, -shift), min(e, wav.size // spf - shift)
  what = (f"audio-visual offset {offset:+d} frames (audio {'late' if offset > 0 else 'early'} by "
          f"{abs(offset) / decode.FPS:.2f} s), confidence {confidence:.1f}")
  if stop - start < min_frames:
    out["note"] = (f"{what}: NOT corrected, only {max(0, stop - start)} frames would remain after "
                   "trimming")
    return out
  trimmed = (e - s) - (stop - start)
  out.update(start=start, stop=stop, shift=shift, note=(
      f"{what}: audio shifted by {shift:+d} frames to match the lips"
      + (f", {trimmed} frames trimmed at the clip's {'end' if shift > 0 else 'start'}"
         if trimmed else "")))
  return out


# Deep3DFaceRecon's coefficient vector (its `split_coeff`): id 80, exp 64, tex 80, angle 3,
# gamma 27, trans 3.
DEEP3D_SPLIT = dict(id=(0, 80), exp=(80, 144), tex=(144, 224), angle=(224, 227),
                    gamma=(227, 254), trans=(254, 257))
COEFFICIENT_DIMS = dict(exp=64, angle=3, trans=3)


def _coefficient_arrays(path: str) -> dict:
  """The raw arrays of a coefficients file by name (see `load_coefficients` for the formats)."""
  ext = os.path.splitext(path)[1].lower()
  if ext == ".mat":
    import scipy.io  # pylint: disable=g-import-not-at-top
    return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
  if ext == ".npz":
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  if ext == ".npy":
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 2 and arr.shape[1] == DEEP3D_SPLIT["trans"][1]:
      return {k: arr[:, a:b] for k, (a, b) in DEEP3D_SPLIT.items()}
    if arr.ndim == 2 and arr.shape[1] == COEFFICIENT_DIMS["exp"]:
      return {"exp": arr}
    raise ValueError(f"a .npy of coefficients is [N, 64] (exp) or [N, 257] (Deep3DFaceRecon's "
                     f"whole vector), got {list(arr.shape)}")
  raise ValueError(f"unknown coefficients format {ext!r} (.mat, .npy or .npz)")


def load_coefficients(path: str) -> dict:
  """Reads a video's 3DMM coefficients written by Deep3DFaceRecon (one row per source frame).

  Formats: `.mat` (`scipy.io.loadmat`) or `.npz` with `exp [N, 64]` and optionally
  `angle [N, 3]` and `trans [N, 3]` (the per-frame outputs of Deep3DFaceRecon's `split_coeff`
  stacked over the video's frames); `.npy` holding `exp [N, 64]` alone or the whole
  coefficient vector `[N, 257]` (split as `DEEP3D_SPLIT`). Pickled arrays are refused.

  Args:
    path: the file.

  Returns:
    {"exp": [N, 64] float32} plus "angle" / "trans" `[N, 3]` float32 when the file has them.

  Raises:
    ValueError: naming the file when it is missing or unreadable, has no `exp`, or has arrays
      of the wrong shapes, different row counts or non-finite values.
  """
  if not os.path.isfile(path):
    raise ValueError(f"{path}: coefficients file not found")
  try:
    raw = _coefficient_arrays(path)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
  except Exception as e:  # pylint: disable=broad-except  # scipy / numpy raise many types.
    raise ValueError(f"{path}: not a readable coefficients file ({type(e).__name__}: {e})") from e
  if "exp" not in raw:
    raise ValueError(f"{path}: no `exp` array (has {sorted(raw)}); expected Deep3DFaceRecon's "
                     "exp [N, 64] and optionally angle, trans [N, 3]")
  out = {}
  for name, dim in COEFFICIENT_DIMS.items():
    if name not in raw:
      continue
    arr = np.asarray(raw[name])
    if arr.ndim != 2 or arr.shape[1] != dim or not arr.shape[0] or arr.dtype.kind not in "fiu":
      raise ValueError(f"{path}: `{name}` should be a number array [N, {dim}] (one row per "
                       f"source frame), got {arr.dtype} {list(arr.shape)}")
    if not np.all(np.isfinite(arr)):
      raise ValueError(f"{path}: `{name}` has {int(np.sum(~np.isfinite(arr)))} non-finite values")
    out[name] = arr.astype(np.float32)
  rows = {k: v.shape[0] for k, v in out.items()}
  if len(set(rows.values())) > 1:
    raise ValueError(f"{path}: arrays of different lengths {rows}")
  return out


def _source_frames(video: str, num_frames: int) -> tuple[np.ndarray, int]:
  """(`[num_frames]` index, in presentation order, of the source frame each 25 fps output frame
  shows, number of source frames), by `decode.py`'s rule (the frame nearest in time)."""
  times, *_ = decode._frame_times(video)  # pylint: disable=protected-access
  t = np.asarray(times, np.float64) - times[0]
  mids = (t[:-1] + t[1:]) / 2
  return np.searchsorted(mids, np.arange(num_frames) / decode.FPS, side="right"), len(times)


def _imported_coefficients(item, info, warnings: list, timings) -> Optional[dict]:
  """The manifest's coefficients (`item.coefficients`) at the 25 fps frames: {"exp" [T, 64],
  "pose" [T, 6] or absent}, T = `info.num_frames`; None without a file. Raises StageError
  ("coefficients") for a bad file or one whose rows are not the video's frames (+-1)."""
  if not item.coefficients:
    return None
  with _Timer(timings, "features"):
    try:
      coeffs = load_coefficients(item.coefficients)
      idx, n_src = _source_frames(item.video, info.num_frames)
    except (ValueError, decode.DecodeError) as e:
      raise StageError("coefficients", str(e)) from e
  n = coeffs["exp"].shape[0]
  if abs(n - n_src) > 1:
    raise StageError("coefficients", f"{item.coefficients}: {n} rows, but {item.video} has "
                                     f"{n_src} frames ({info.fps:.3f} fps): one row per source "
                                     "frame expected")
  if n != n_src:
    warnings.append(f"{item.coefficients}: {n} rows for {n_src} source frames; the nearest row "
                    "is used at the end")
  idx = np.minimum(idx, n - 1)
  out = {"exp": coeffs["exp"][idx]}
  if "angle" in coeffs and "trans" in coeffs:
    out["pose"] = np.concatenate([coeffs["angle"], coeffs["trans"]], -1)[idx]
  elif "angle" in coeffs or "trans" in coeffs:
    warnings.append(f"{item.coefficients}: has only one of angle / trans; pose_3dmm not stored")
  return out


_FEATURE_MODELS = {}  # (kind, path) -> loaded model, one per worker process.


def _wav2vec(path: str):
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  key = ("wav2vec", path)
  if key not in _FEATURE_MODELS:
    _FEATURE_MODELS[key] = audio_lib.Wav2Vec2Features(path, layer=WAV2VEC_LAYER)
  return _FEATURE_MODELS[key]


def _clip_text_embedding(path: str, text: str) -> np.ndarray:
  """Pooled CLIP text embedding `[D]` float32 of `text` (max 77 tokens)."""
  key = ("clip", path)
  if key not in _FEATURE_MODELS:
    import jax  # pylint: disable=g-import-not-at-top
    from transformers import FlaxCLIPTextModel  # pylint: disable=g-import-not-at-top
    from jaxtalk.features import text as text_lib  # pylint: disable=g-import-not-at-top
    try:
      model, params = FlaxCLIPTextModel.from_pretrained(path, local_files_only=True,
                                                        _do_init=False)
    except Exception as e:  # pylint: disable=broad-except  # transformers raises many types.
      raise ValueError(f"could not load FlaxCLIPTextModel from {path!r} ({type(e).__name__}: "
                       f"{e})") from e
    tok = text_lib.make_tokenizer(clip_path=path)
    fn = jax.jit(lambda p, ids, mask: model(input_ids=ids, attention_mask=mask.astype("int32"),
                                            params=p, train=False).pooler_output)
    _FEATURE_MODELS[key] = (tok, params, fn)
  tok, params, fn = _FEATURE_MODELS[key]
  ids, mask = tok.encode([text], 77)
  return np.asarray(fn(params, ids, mask)[0], np.float32)


def _checked_audio(item, info, opts: Options, min_frames: int, warnings: list, timings):
  """The video's 16 kHz audio, padded by up to `audio_pad_seconds` of silence; returns
  `(wav, usable frames)`. Raises StageError for silent or too-short audio."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  with _Timer(timings, "audio"):
    wav = _audio_for_video(item, info)
  short = info.num_frames * audio_lib.SAMPLES_PER_FRAME - wav.size
  if 0 < short <= int(opts.audio_pad_seconds * audio_lib.SAMPLE_RATE):
    # Audio tracks often end a few tens of ms before the video (encoder delay): pad silence.
    wav = np.concatenate([wav, np.zeros([short], np.float32)])
    warnings.append(f"audio ends {short / audio_lib.SAMPLE_RATE:.3f} s before the video; "
                    "padded with silence")
  usable = min(info.num_frames, wav.size // audio_lib.SAMPLES_PER_FRAME)
  rms = float(np.sqrt(np.mean(np.square(wav[:usable * audio_lib.SAMPLES_PER_FRAME],
                                        dtype=np.float64)))) if usable else 0.0
  if usable and rms < opts.min_audio_rms:
    raise StageError("audio", f"silent audio track (RMS {rms:.1e} < {opts.min_audio_rms:.0e})")
  if usable < min_frames:
    raise StageError("audio", f"too short: {wav.size / audio_lib.SAMPLE_RATE:.2f} s of audio "
                              f"aligned to the video")
  if usable < info.num_frames:
    warnings.append(f"audio ends {(info.num_frames - usable) / decode.FPS:.2f} s before the "
                    "video; the video was cut to the audio")
  return wav, usable


def _track_faces(item, info, usable: int, warnings: list, timings):
  """Pass 1: FaceMesh landmarks of every frame; returns `(landmarks [T, 478, 3] px, found [T],
  num_faces [T])`. Raises StageError when no frame has a face."""
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  landmarks = np.zeros([usable, face_lib.NUM_LANDMARKS, 3], np.float32)
  found = np.zeros([usable], bool)
  num_faces = np.zeros([usable], np.int32)
  decode_t = time.process_time()
  face_t = 0.0
  try:
    with face_lib.FaceMeshTracker(max_num_faces=2) as tracker:
      for k, frame in decode.iter_frames(item.video, info, 0, usable):
        t0 = time.process_time()
        det = tracker(frame)
        face_t += time.process_time() - t0
        num_faces[k] = det.num_faces
        if det.landmarks is not None:
          landmarks[k] = det.landmarks
          found[k] = True
  except decode.DecodeError as e:
    raise StageError("decode", str(e)) from e
  if timings is not None:
    timings["face"] = timings.get("face", 0.0) + face_t
    timings["decode"] = timings.get("decode", 0.0) + (time.process_time() - decode_t - face_t)
  if not found.any():
    raise StageError("face", f"no face found in any of {usable} frames")
  multi = int((num_faces > 1).sum())
  if multi:
    warnings.append(f"several faces (up to {int(num_faces.max())}) in {multi} of {usable} "
                    "frames; kept the largest")
  return landmarks, found, num_faces


def _clips_with_faces(landmarks, found, info, opts: Options, min_frames: int, warnings: list):
  """Runs of face frames (gaps of up to `max_gap_frames` filled), split at `max_clip_seconds`;
  returns `[(start, stop, crop boxes, landmarks px, pose, gaze, face_found)]`."""
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  usable = len(found)
  segments = [(a, b) for a, b in _segments(found, opts.max_gap_frames) if b - a >= min_frames]
  if not segments:
    raise StageError("face", f"face found in only {int(found.sum())} of {usable} frames, no "
                             f"run of {opts.min_clip_seconds} s")
  dropped = usable - sum(b - a for a, b in segments)
  if dropped:
    warnings.append(f"{dropped} of {usable} frames dropped (no face)")
  max_len = max(min_frames, int(round(opts.max_clip_seconds * decode.FPS)))
  clips = []
  for a, b in segments:
    lm = face_lib.fill_gaps(landmarks[a:b], found[a:b]).astype(np.float32)
    boxes = face_lib.smoothed_crop_boxes(lm, crop_scale=opts.crop_scale,
                                         sigma_frames=opts.crop_sigma)
    pose = face_lib.head_pose(lm, (info.width, info.height), boxes, sigma_frames=opts.pose_sigma)
    gz = face_lib.gaze(lm)
    for s, e in _split(a, b, max_len):
      sl = slice(s - a, e - a)
      clips.append((s, e, boxes[sl], lm[sl], pose[sl], gz[sl], found[s:e]))
  return clips


def _drop_extreme_poses(clips, opts: Options, warnings: list):
  """`[(clip index, *clip)]` of the clips whose median |yaw| and |pitch| are within the limits.
  Raises StageError when none is (naming the pose when the video is one clip)."""
  kept = []
  for ci, (s, e, boxes, lm, pose, gz, ff) in enumerate(clips):
    med_yaw, med_pitch = np.median(np.abs(pose[:, 0])), np.median(np.abs(pose[:, 1]))
    if med_yaw > opts.max_abs_yaw or med_pitch > opts.max_abs_pitch:
      if len(clips) == 1:
        raise StageError("pose", f"extreme head pose: median |yaw| {med_yaw:.2f} rad, |pitch| "
                                 f"{med_pitch:.2f} rad (limits {opts.max_abs_yaw}, "
                                 f"{opts.max_abs_pitch})")
      warnings.append(f"clip {ci} (frames {s}-{e}) dropped: extreme head pose "
                      f"(median |yaw| {med_yaw:.2f}, |pitch| {med_pitch:.2f} rad)")
      continue
    kept.append((ci, s, e, boxes, lm, pose, gz, ff))
  if not kept:
    raise StageError("pose", "extreme head pose in every clip")
  return kept


def _synced_clips(item, kept, wav, opts: Options, min_frames: int, warnings: list, timings):
  """Audio-visual sync: every clip's offset is estimated; confident ones are shifted (and
  trimmed). Returns the clips with their trimmed arrays and sync dict appended."""
  synced = []
  with _Timer(timings, "audio"):
    for ci, s, e, boxes, lm, pose, gz, ff in kept:
      sync = _sync_clip(s, e, lm, wav, opts, min_frames)
      a, b = sync["start"] - s, sync["stop"] - s
      synced.append((ci, sync["start"], sync["stop"], boxes[a:b], lm[a:b], pose[a:b], gz[a:b],
                     ff[a:b], sync))
      if sync["note"]:
        warnings.append(f"clip {ci} (frames {s}-{e}): {sync['note']}")
        logging.info("%s_c%03d: %s", item.id, ci, sync["note"])
  return synced


def _encode_crops(item, info, kept, opts: Options, timings) -> list[list[bytes]]:
  """Pass 2: the JPEG crops of every kept clip's frames (one decode of the span they cover)."""
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  import cv2  # pylint: disable=g-import-not-at-top
  by_frame = {}
  for j, (_, s, e, *_rest) in enumerate(kept):
    for k in range(s, e):
      by_frame[k] = j
  jpegs = [[] for _ in kept]
  encode_t = time.process_time()
  dec_t = 0.0
  t_prev = time.process_time()
  try:
    for k, frame in decode.iter_frames(item.video, info, kept[0][1], kept[-1][2]):
      dec_t += time.process_time() - t_prev
      j = by_frame.get(k)
      if j is not None:
        _, s, _, boxes, *_ = kept[j]
        crop = face_lib.crop_image(frame, boxes[k - s], opts.resolution)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(opts.jpeg_quality)])
        if not ok:
          raise StageError("encode", f"JPEG encoding failed at frame {k}")
        jpegs[j].append(buf.tobytes())
      t_prev = time.process_time()
  except decode.DecodeError as e:
    raise StageError("decode", str(e)) from e
  if timings is not None:
    timings["decode"] = timings.get("decode", 0.0) + dec_t
    timings["encode"] = timings.get("encode", 0.0) + (time.process_time() - encode_t - dec_t)
  return jpegs


def _clip_record(item, emotion: str, clip, jpegs, wav, num_faces, notes, opts: Options,
                 timings, coeffs: Optional[dict] = None) -> dict:
  """The record dict (`schema.py`) of one synced clip, with its audio, mel and crop landmarks
  (and the imported 3DMM coefficients of its frames, `_imported_coefficients`)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  ci, s, e, boxes, lm, pose, gz, ff, sync = clip
  with _Timer(timings, "landmarks_pose"):
    crop_lm = face_lib.to_crop_coords(lm, boxes)
    mouth = face_lib.mouth_box(crop_lm)
  with _Timer(timings, "audio"):
    a = s + sync["shift"]  # audio of video frame k = source audio of frame k + shift.
    pcm = audio_lib.to_int16(
        wav[a * audio_lib.SAMPLES_PER_FRAME:(a + e - s) * audio_lib.SAMPLES_PER_FRAME])
    mel = audio_lib.log_mel(audio_lib.from_int16(pcm))
  record = dict(
      schema_version=schema.SCHEMA_VERSION, clip_id=f"{item.id}_c{ci:03d}", video_id=item.id,
      source_path=item.video, dataset=item.dataset, speaker=item.speaker, emotion=emotion,
      emotion_intensity=int(item.intensity), view=item.view, text=item.text, fps=decode.FPS,
      start_time=float(s / decode.FPS), num_frames=int(e - s),
      resolution=int(opts.resolution), frames=jpegs,
      crop_box=boxes.astype(np.float32), landmarks=crop_lm.astype(np.float16),
      face_found=ff.astype(bool), pose=pose.astype(np.float32), gaze=gz.astype(np.float32),
      mouth_box=mouth.astype(np.float32), audio=pcm, mel=mel.astype(np.float16),
      num_faces_max=int(num_faces[s:e].max()), notes=notes + ([sync["note"]] if sync["note"]
                                                              else []),
      av_offset=int(sync["offset"]), av_confidence=float(sync["confidence"]),
      audio_shift=int(sync["shift"]))
  if opts.wav2vec_path:
    with _Timer(timings, "features"):
      try:
        feats = _wav2vec(opts.wav2vec_path)(audio_lib.from_int16(pcm))
      except ValueError as err:
        raise StageError("features", str(err)) from err
    record["wav2vec"] = feats.astype(np.float16)
  if coeffs is not None:
    record.update(expression=coeffs["exp"][s:e], expression_source=schema.DEEP3DFACERECON)
    if "pose" in coeffs:
      record["pose_3dmm"] = coeffs["pose"][s:e]
  return record


def process_video(item: readers.VideoItem, opts: Options,
                  timings: Optional[dict] = None) -> tuple[list[dict], list[str]]:
  """Turns one input video into clip records (dicts as in `schema.py`).

  Steps: probe; audio (rejected early when silent or short); pass 1, face landmarks of every
  frame; clips = runs of face frames, without extreme poses; audio-visual sync per clip; pass 2,
  JPEG crops; records (audio, mel, crop landmarks, optional wav2vec / CLIP text features and
  imported 3DMM coefficients).

  Args:
    item: the video and its metadata.
    opts: preprocessing options.
    timings: if given, CPU seconds per stage are added under "decode", "face",
      "landmarks_pose", "audio", "encode" (and "features").

  Returns:
    (records, warnings): records are unencoded dicts, warnings human-readable strings.

  Raises:
    StageError: for inputs that go to the dead-letter output.
  """
  warnings = []
  try:
    emotion = schema.emotion_name(item.emotion)
  except ValueError as e:
    raise StageError("metadata", str(e)) from e
  with _Timer(timings, "decode"):
    try:
      info = decode.probe(item.video)
    except decode.DecodeError as e:
      raise StageError("decode", str(e)) from e
  min_frames = max(1, int(round(opts.min_clip_seconds * decode.FPS)))
  if info.num_frames < min_frames:
    raise StageError("decode", f"too short: {info.duration:.2f} s of video, need at least "
                               f"{opts.min_clip_seconds} s")
  coeffs = _imported_coefficients(item, info, warnings, timings)
  wav, usable = _checked_audio(item, info, opts, min_frames, warnings, timings)
  landmarks, found, num_faces = _track_faces(item, info, usable, warnings, timings)
  with _Timer(timings, "landmarks_pose"):
    clips = _clips_with_faces(landmarks, found, info, opts, min_frames, warnings)
  kept = _drop_extreme_poses(clips, opts, warnings)
  video_warnings = list(warnings)
  kept = _synced_clips(item, kept, wav, opts, min_frames, warnings, timings)
  jpegs = _encode_crops(item, info, kept, opts, timings)
  text_embedding = None
  if opts.clip_path:
    with _Timer(timings, "features"):
      try:
        text_embedding = _clip_text_embedding(opts.clip_path, item.text)
      except ValueError as e:
        raise StageError("features", str(e)) from e
  records = []
  for j, clip in enumerate(kept):
    records.append(_clip_record(item, emotion, clip, jpegs[j], wav, num_faces, video_warnings,
                                opts, timings, coeffs))
    if text_embedding is not None:
      records[-1]["text_embedding"] = text_embedding.astype(np.float16)
  return records, warnings


# ----------------------------------------------------------------------------------------------
# Shards and dataset statistics.
# ----------------------------------------------------------------------------------------------
def shard_of(clip_id: str, num_shards: int) -> int:
  """Stable shard index of a clip (md5 of its id; independent of Python's hash seed)."""
  return int(hashlib.md5(clip_id.encode("utf-8")).hexdigest()[:8], 16) % num_shards


def shard_name(index: int, num_shards: int) -> str:
  return f"{SHARD_PREFIX}-{index:05d}-of-{num_shards:05d}.array_record"


def clip_summary(record: dict) -> dict:
  """Small per-clip metadata and sufficient statistics (for dataset_info.json)."""
  pose = record["pose"].astype(np.float64)
  gz = record["gaze"].astype(np.float64)
  mel = record["mel"].astype(np.float64)
  return dict(
      clip_id=record["clip_id"], video_id=record["video_id"], dataset=record["dataset"],
      speaker=record["speaker"], emotion=record["emotion"], text=record["text"],
      num_frames=int(record["num_frames"]), notes=record["notes"],
      **{k: record[k] for k in schema.OPTIONAL_SCALARS if k in record},
      features=sorted(k for k in schema.OPTIONAL_FIELDS if k in record),
      feature_dims={k: int(record[k].shape[-1]) for k in schema.OPTIONAL_FIELDS if k in record},
      stats=dict(pose=[len(pose), pose.sum(0).tolist(), (pose ** 2).sum(0).tolist()],
                 gaze=[len(gz), gz.sum(0).tolist(), (gz ** 2).sum(0).tolist()],
                 mel=[len(mel), mel.sum(0).tolist(), (mel ** 2).sum(0).tolist()]))


def write_shard(path: str, payloads: Iterable[bytes]) -> int:
  """Writes records to an ArrayRecord file atomically; returns how many were written.

  The records go to `<path>.tmp` in the same folder, which is flushed to disk (fsync) and then
  renamed over `path` (`os.replace`, atomic on POSIX), and the folder is synced. If anything
  fails (including an exception raised by the `payloads` iterable), the temporary file is
  removed and `path` is left as it was: a crash never leaves a half-written shard.
  """
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  tmp = path + ".tmp"
  count = 0
  try:
    writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
    try:
      for p in payloads:
        writer.write(p)
        count += 1
      if not writer.ok():
        raise OSError(f"{tmp}: ArrayRecord writer failed")
    finally:
      writer.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)
  return count


def _mean_std(parts: list[list]) -> tuple[list[float], list[float]]:
  n = sum(p[0] for p in parts)
  if n == 0:
    return [], []
  s = np.sum([p[1] for p in parts], 0)
  sq = np.sum([p[2] for p in parts], 0)
  mean = s / n
  std = np.sqrt(np.maximum(sq / n - mean ** 2, 0.0))
  return mean.tolist(), std.tolist()


def _build_vocab(texts: list[str]) -> list[str]:
  from jaxtalk.features import text as text_lib  # pylint: disable=g-import-not-at-top
  return list(text_lib.build_vocab(texts))


def dataset_info(shards: list[tuple[str, list[dict]]], dead: list[dict], opts: Options) -> dict:
  """Builds dataset_info.json from per-shard clip summaries (in shard order)."""
  clips = []
  for name, summaries in sorted(shards):
    for i, c in enumerate(summaries):
      clips.append(dict(c, shard=name, index=i))
  frames = sum(c["num_frames"] for c in clips)
  stats = {}
  for key in ("pose", "gaze", "mel"):
    mean, std = _mean_std([c["stats"][key] for c in clips])
    stats[key] = dict(mean=mean, std=std)
  speakers = sorted({c["speaker"] for c in clips})
  texts = sorted({c["text"] for c in clips if c["text"]})
  return dict(
      schema_version=schema.SCHEMA_VERSION, fps=decode.FPS, sample_rate=schema.SAMPLE_RATE,
      resolution=opts.resolution, num_clips=len(clips), num_frames=frames,
      num_videos=len({c["video_id"] for c in clips}), hours=frames / decode.FPS / 3600.0,
      num_dead=len(dead),
      pose_mean=stats["pose"]["mean"], pose_std=stats["pose"]["std"],
      gaze_mean=stats["gaze"]["mean"], gaze_std=stats["gaze"]["std"],
      mel_mean=stats["mel"]["mean"], mel_std=stats["mel"]["std"],
      pose_names=["yaw", "pitch", "roll", "tx", "ty", "scale"], gaze_names=["pitch", "yaw"],
      emotions=list(schema.EMOTIONS), speakers=speakers, vocab=_build_vocab(texts),
      shards=sorted({c["shard"] for c in clips}),
      optional_features=sorted(set.intersection(*[set(c["features"]) for c in clips]))
      if clips else [],
      optional_feature_dims={k: int(v) for k, v in sorted(_feature_dims(shards).items())},
      clips=[{k: v for k, v in c.items() if k not in ("stats", "feature_dims")} for c in clips],
      options=dataclasses.asdict(opts),
      # Where the stored wav2vec features came from, so sampling can compute the same features
      # from new audio.
      wav2vec=dict(path=opts.wav2vec_path, layer=WAV2VEC_LAYER) if opts.wav2vec_path else None)


def _feature_dims(shards) -> dict:
  dims = {}
  for _, summaries in shards:
    for c in summaries:
      dims.update(c.get("feature_dims", {}))
  return dims


def _write_jsonl_atomic(path: str, rows: Iterable[dict]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for r in rows:
      f.write(json.dumps(r, sort_keys=True) + "\n")
  os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# Beam.
# ----------------------------------------------------------------------------------------------
def _beam_transforms():
  """The DoFns (defined lazily so importing this module does not import Beam)."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top

  class ProcessVideo(beam.DoFn):
    """item json -> (shard, (clip_id, bytes, summary)); dead letters and warnings tagged."""

    def __init__(self, opts: Options, num_shards: int):
      self.opts, self.num_shards = opts, num_shards

    def process(self, item_json):
      item = readers.VideoItem(**item_json)
      try:
        records, warnings = process_video(item, self.opts)
        for w in warnings:
          yield beam.pvalue.TaggedOutput("warn", dict(path=item.video, id=item.id, warning=w))
        for r in records:
          payload = schema.encode_record(r)
          yield (shard_of(r["clip_id"], self.num_shards), (r["clip_id"], payload, clip_summary(r)))
      except StageError as e:
        logging.warning("dead letter %s (%s): %s", item.video, e.stage, e.reason)
        yield beam.pvalue.TaggedOutput(
            "dead", dict(path=item.video, id=item.id, stage=e.stage, reason=e.reason))
      except Exception as e:  # pylint: disable=broad-except  # anything else: dead letter too.
        logging.exception("unexpected failure on %s", item.video)
        yield beam.pvalue.TaggedOutput(
            "dead", dict(path=item.video, id=item.id, stage="unexpected",
                         reason=f"{type(e).__name__}: {e}"))

  class WriteShard(beam.DoFn):
    """(shard, [(clip_id, bytes, summary)]) -> writes the shard; yields (name, summaries)."""

    def __init__(self, output_dir: str, num_shards: int):
      self.output_dir, self.num_shards = output_dir, num_shards

    def process(self, element):
      shard, items = element
      items = sorted(items, key=lambda x: x[0])
      name = shard_name(shard, self.num_shards)
      write_shard(os.path.join(self.output_dir, name), [p for _, p, _ in items])
      yield (name, [s for _, _, s in items])

  return beam, ProcessVideo, WriteShard


def _checked_options(resolution: int, options: dict) -> tuple["Options", dict]:
  """Splits `preprocess`'s keyword options into `Options` and Beam options, checking the
  options that would otherwise fail every clip (checkpoint folders, sync limits)."""
  fields = {f.name for f in dataclasses.fields(Options)}
  opts = Options(resolution=int(resolution), **{k: v for k, v in options.items() if k in fields})
  beam_kwargs = {k: v for k, v in options.items() if k not in fields}
  for name, path in (("wav2vec_path", opts.wav2vec_path), ("clip_path", opts.clip_path)):
    if path and not os.path.isfile(os.path.join(path, "config.json")):
      raise ValueError(f"{name}={path!r}: not a local checkpoint folder (no config.json)")
  if opts.sync_max_offset < 1 or opts.sync_min_offset < 1:
    raise ValueError(f"sync_max_offset={opts.sync_max_offset} and sync_min_offset="
                     f"{opts.sync_min_offset} must be >= 1")
  if opts.wav2vec_path:  # recorded in dataset_info.json for sampling: make it absolute.
    opts = dataclasses.replace(opts, wav2vec_path=os.path.abspath(opts.wav2vec_path))
    try:  # Load it once here: a broken checkpoint must stop the run, not dead-letter every clip.
      _wav2vec(opts.wav2vec_path)
    except (ValueError, OSError) as e:
      raise ValueError(
          f"wav2vec_path={opts.wav2vec_path!r}: cannot load the checkpoint: {e}") from e
  return opts, beam_kwargs


def _beam_settings(runner: str, beam_kwargs: dict) -> tuple[list[str], str, dict]:
  """(flags, runner, keyword options) for Beam: one in-memory worker unless set otherwise."""
  beam_kwargs = dict(beam_kwargs)
  beam_flags = list(beam_kwargs.pop("beam_args", ()) or ())
  given = {a[2:].split("=", 1)[0] for a in beam_flags}
  if "direct_num_workers" not in given:
    beam_kwargs.setdefault("direct_num_workers", 1)
  if "direct_running_mode" not in given:
    beam_kwargs.setdefault("direct_running_mode", "in_memory")
  if runner == "DirectRunner":
    # Beam's DirectRunner first tries its Prism runner, a Go binary it downloads from GitHub:
    # offline that fails (leaving an empty /tmp/beam-temp* directory per run) and it then falls
    # back to the in-process FnApiRunner; online it would run on Prism, an engine this pipeline
    # is not tested on. Run the FnApiRunner directly, the same engine in both cases.
    runner = "FnApiRunner"
  return beam_flags, runner, beam_kwargs


def preprocess(input_path: str, output_dir: str, resolution: int = 256,
               runner: str = "DirectRunner", **options) -> dict:
  """Runs the preprocessing pipeline and returns the written dataset_info dict.

  Args:
    input_path: manifest (.jsonl / .csv), directory or glob (see `readers.py`).
    output_dir: created if missing; existing shards of a previous run are replaced.
    resolution: crop side in pixels.
    runner: Beam runner name.
    **options: fields of `Options` (e.g. max_clip_seconds=5), Beam pipeline options as keyword
      arguments (e.g. direct_num_workers=2, project=..., temp_location=...), and
      `beam_args`: a list of Beam command-line flags (["--direct_num_workers=2", ...]).
      DirectRunner runs Beam's in-process FnApiRunner (never Beam's downloaded Prism runner),
      by default with one in-memory worker.

  Raises:
    ValueError: if the input matches no videos, an option is unknown, `clip_path` has no
      config.json, or `wav2vec_path` cannot be loaded (checked before anything is written).
  """
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  opts, beam_kwargs = _checked_options(resolution, options)
  items = readers.read_items(input_path)
  num_shards = opts.num_shards or max(1, math.ceil(len(items) / 32))
  output_dir = os.path.abspath(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  for old in os.listdir(output_dir):
    if old.startswith(SHARD_PREFIX + "-") and old.endswith(".array_record"):
      os.remove(os.path.join(output_dir, old))
  beam_flags, runner, beam_kwargs = _beam_settings(runner, beam_kwargs)
  pipeline_options = PipelineOptions(flags=beam_flags, runner=runner, **beam_kwargs)

  beam, process_fn, write_fn = _beam_transforms()
  with beam.Pipeline(options=pipeline_options) as p:
    outs = (p
            | "Items" >> beam.Create([it.to_json() for it in items])
            | "Process" >> beam.ParDo(process_fn(opts, num_shards))
            .with_output_types(Any).with_outputs("dead", "warn", main="clips"))
    shards = (outs.clips
              | "GroupByShard" >> beam.GroupByKey()
              | "WriteShards" >> beam.ParDo(write_fn(output_dir, num_shards)))
    dead = outs.dead
    warn = outs.warn

    def finish(_, shards, dead, warn):
      dead = sorted(dead, key=lambda d: (d["path"], d["stage"]))
      _write_jsonl_atomic(os.path.join(output_dir, DEAD_LETTER), dead)
      _write_jsonl_atomic(os.path.join(output_dir, WARNINGS),
                          sorted(warn, key=lambda w: (w["path"], w["warning"])))
      info = dataset_info(list(shards), dead, opts)
      files.write_json_atomic(os.path.join(output_dir, DATASET_INFO), info)
      return info["num_clips"]

    _ = (p
         | "Finish" >> beam.Create([None])
         | "WriteInfo" >> beam.Map(finish, shards=beam.pvalue.AsList(shards),
                                   dead=beam.pvalue.AsList(dead),
                                   warn=beam.pvalue.AsList(warn)))
  with open(os.path.join(output_dir, DATASET_INFO), encoding="utf-8") as f:
    return json.load(f)


def _option_help() -> dict:
  """Per-field help text from the `Attributes:` section of `Options`' docstring."""
  helps, name = {}, None
  for line in (Options.__doc__ or "").splitlines():
    m = re.match(r"^    (\w+(?:, \w+)*): (.*)$", line)
    if m:
      names, text = m.group(1).split(", "), m.group(2)
      for n in names:
        helps[n] = text
      name = names
    elif name and line.startswith("      "):
      for n in name:
        helps[n] += " " + line.strip()
  return helps


def run(argv: list[str]) -> int:
  """`jaxtalk preprocess` entry point (argv[0] is the program name)."""
  parser = argparse.ArgumentParser(
      prog=argv[0] if argv else "jaxtalk preprocess",
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=("examples:\n"
              "  jaxtalk preprocess --input=../shared/data/manifest.jsonl --output_dir=/tmp/shards "
              "--resolution=64\n"
              "  jaxtalk preprocess --input='/data/MEAD/**/*.mp4' --output_dir=/data/mead_256 "
              "--direct_num_workers=8 --direct_running_mode=multi_processing\n"
              "Unknown --flags are passed to Beam's PipelineOptions (e.g. --project, "
              "--temp_location, --flink_master). output_dir must be a filesystem path every worker "
              "can write (local disk, NFS, or a GCS/S3 FUSE mount): the shards are written with "
              "array_record's file writer."))
  parser.add_argument("--input", required=True, help="manifest .jsonl/.csv, directory or glob")
  parser.add_argument("--output_dir", required=True, help="where shards + dataset_info.json go")
  parser.add_argument("--runner", default="DirectRunner",
                      help="DirectRunner | DataflowRunner | FlinkRunner | SparkRunner")
  helps = _option_help()
  for f in dataclasses.fields(Options):
    parser.add_argument(f"--{f.name}", type=_parse_bool if isinstance(f.default, bool)
                        else type(f.default), default=f.default,
                        help=f"{helps.get(f.name, '')} (default: {f.default!r})")
  args, beam_args = parser.parse_known_args(argv[1:])
  for a in beam_args:
    if not a.startswith("--"):
      parser.error(f"unexpected argument {a!r}")
  kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)}
  resolution = kwargs.pop("resolution")
  try:
    info = preprocess(args.input, args.output_dir, resolution=resolution, runner=args.runner,
                      beam_args=beam_args, **kwargs)
  except ValueError as e:
    print(f"jaxtalk preprocess: {e}", file=sys.stderr)
    return 2
  print(f"{info['num_clips']} clips, {info['num_frames']} frames ({info['hours']:.3f} h) from "
        f"{info['num_videos']} videos; {info['num_dead']} inputs in {DEAD_LETTER}; "
        f"output in {args.output_dir}")
  print(sync_summary(info))
  return 0


def sync_summary(info: dict) -> str:
  """Lines for the preprocessing summary: clips whose audio was shifted, and clips left alone
  although they measured |offset| >= sync_min_offset (too little confidence or --sync_audio
  off)."""
  opts = info.get("options", {})
  min_offset = opts.get("sync_min_offset", 2)
  clips = [c for c in info.get("clips", []) if "av_offset" in c]
  shifted = [c for c in clips if c.get("audio_shift")]
  off = [c for c in clips if not c.get("audio_shift") and abs(c["av_offset"]) >= min_offset]
  lines = [f"audio-visual sync (sync_audio={opts.get('sync_audio')}, min confidence "
           f"{opts.get('sync_min_confidence')}): audio shifted in {len(shifted)} of {len(clips)} "
           "clips"]
  lines += [f"  shifted  {c['clip_id']}: offset {c['av_offset']:+d} frames, confidence "
            f"{c['av_confidence']:.1f}" for c in shifted]
  min_conf = float(opts.get("sync_min_confidence", av_sync.DEFAULT_MIN_CONFIDENCE))
  for c in off:
    why = ("offset unknown: too uncertain to act on" if c["av_confidence"] < min_conf
           else "sync_audio off" if not opts.get("sync_audio") else "too short to shift")
    lines.append(f"  left as is {c['clip_id']}: offset {c['av_offset']:+d} frames, confidence "
                 f"{c['av_confidence']:.1f} ({why})")
  return "\n".join(lines)


def _parse_bool(text: str) -> bool:
  value = text.strip().lower()
  if value in ("1", "true", "yes", "on"):
    return True
  if value in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
