"""Lip-sync metrics LSE-D / LSE-C (Chung & Zisserman 2016 "Out of time"; Wav2Lip's LSE-*).

For a clip, every 5-frame window centred on frame c is embedded by the sync expert's visual
encoder (v_c) and every frame's 16 x 80 mel window by its audio encoder (a_c). For each audio
offset o in [-max_offset, max_offset] (default +-15 frames, as SyncNet's evaluation):

  dist(o) = mean over centres c with c + o inside the clip of || v_c - a_{c+o} ||_2
  offset  = argmin_o dist(o)          (o > 0: the audio that matches the lips comes o frames
                                       later, i.e. the sound is delayed w.r.t. the video)
  LSE-D   = min_o dist(o)             (lower is better)
  LSE-C   = median_o dist(o) - LSE-D  (confidence, higher is better; PoseTalk's Sync_conf)

The embeddings are jaxtalk's retrained expert (`jaxtalk.models.syncnet`, L2-normalised, so
distances lie in [0, sqrt(2)]), NOT the original SyncNet weights: values are comparable between
jaxtalk runs with the same expert, not with published tables (which use unnormalised 1024-d
SyncNet features, LSE-D ~ 6-8, LSE-C ~ 5-8). Unlike syncnet_python, which zero-pads the audio
features at the clip ends, only pairs inside the clip are averaged.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models import syncnet as syncnet_lib

NF = syncnet_lib.NUM_FRAMES


def _as_embeddings(caller: str, video_emb, audio_emb, centers):
  """float64 video `[Nv, D]`, audio `[T, D]` and int centers `[Nv]` (default 2..Nv+1).

  Raises:
    ValueError: naming `caller`, if the shapes do not match.
  """
  v = np.asarray(video_emb, np.float64)
  a = np.asarray(audio_emb, np.float64)
  centers = np.arange(v.shape[0]) + NF // 2 if centers is None else np.asarray(centers)
  if v.ndim != 2 or a.ndim != 2 or v.shape[1] != a.shape[1] or len(centers) != len(v):
    raise ValueError(f"{caller}: video {v.shape}, audio {a.shape}, centers "
                     f"{np.shape(centers)} do not match")
  return v, a, centers


def offset_distances(video_emb, audio_emb, *, centers=None, max_offset: int = 15) -> np.ndarray:
  """Mean distance per offset.

  Args:
    video_emb: `[Nv, D]` embeddings of windows centred on frames `centers` (default
      2, 3, ..., Nv + 1, i.e. every full window of a clip).
    audio_emb: `[T, D]` embeddings of the mel window of every frame 0..T-1.
    centers: `[Nv]` int frame index of each video window's centre.
    max_offset: largest |offset| in frames.

  Returns:
    float64 `[2 * max_offset + 1]` for offsets -max_offset..max_offset (NaN where no pair).
  """
  v, a, centers = _as_embeddings("offset_distances", video_emb, audio_emb, centers)
  out = np.full([2 * max_offset + 1], np.nan)
  for i, o in enumerate(range(-max_offset, max_offset + 1)):
    idx = centers + o
    ok = (idx >= 0) & (idx < a.shape[0])
    if ok.any():
      out[i] = np.mean(np.linalg.norm(v[ok] - a[idx[ok]], axis=-1))
  return out


def sync_scores(video_emb, audio_emb, *, centers=None, max_offset: int = 15) -> dict:
  """LSE-D, LSE-C and offset of one clip (see module docstring).

  Returns:
    {"lse_d": float, "lse_c": float, "offset": int, "dists": [2*max_offset+1] float64}.
  """
  dists = offset_distances(video_emb, audio_emb, centers=centers, max_offset=max_offset)
  if np.all(np.isnan(dists)):
    raise ValueError("sync_scores: no valid (video, audio) pair; is the clip shorter than 5?")
  i = int(np.nanargmin(dists))
  return {"lse_d": float(dists[i]), "lse_c": float(np.nanmedian(dists) - dists[i]),
          "offset": i - max_offset, "dists": dists}


def shift_accuracies(video_emb, audio_emb, *, centers=None, min_shift: int = 5,
                     max_shift: int = 15, segment: int = 25, segment_stride: int = 5) -> dict:
  """How well an expert tells a clip's in-sync audio from shifted audio (held-out evaluation).

  With s_c(o) = cos(v_c, a_{c+o}) (PoseTalk eq. 7; embeddings are L2-normalised):
    window:  over every window c and shift o with min_shift <= |o| <= max_shift and c + o inside
             the clip, the fraction with s_c(0) > s_c(o) (the expert's pair accuracy, using every
             negative of the clip instead of one sampled per window);
    segment: the same for the mean of s_c over `segment` consecutive windows (one every
             `segment_stride` frames; every c + o must lie inside the clip), i.e. the averaging
             LSE-C/LSE-D do over a clip (25 windows = 1 s at 25 fps).
  Chance is 0.5 for both. Counts are returned so several clips can be pooled.

  Args:
    video_emb: `[Nv, D]` L2-normalised window embeddings centred on `centers` (default 2..Nv+1).
    audio_emb: `[T, D]` L2-normalised mel-window embeddings of frames 0..T-1.
    centers: `[Nv]` int.
    min_shift, max_shift: |o| range in frames (Wav2Lip's negatives are >= 5 frames away).
    segment, segment_stride: segment length and spacing in windows.

  Returns:
    {"window_correct", "window_pairs", "segment_correct", "segment_pairs"} (int) and
    "window_accuracy", "segment_accuracy" (float; NaN when there is no pair).

  Raises:
    ValueError: if the shapes do not match or 0 < min_shift <= max_shift does not hold.
  """
  v, a, centers = _as_embeddings("shift_accuracies", video_emb, audio_emb, centers)
  if not 0 < min_shift <= max_shift:
    raise ValueError(f"shift_accuracies: need 0 < min_shift <= max_shift, got {min_shift}, "
                     f"{max_shift}")
  shifts = [o for o in range(-max_shift, max_shift + 1) if abs(o) >= min_shift]
  pos = np.sum(v * a[centers], axis=-1)                                    # [Nv]
  out = dict(window_correct=0, window_pairs=0, segment_correct=0, segment_pairs=0)
  starts = range(0, len(v) - segment + 1, segment_stride)
  for o in shifts:
    idx = centers + o
    ok = (idx >= 0) & (idx < a.shape[0])
    neg = np.full(len(v), np.nan)
    neg[ok] = np.sum(v[ok] * a[idx[ok]], axis=-1)
    out["window_correct"] += int(np.sum(pos[ok] > neg[ok]))
    out["window_pairs"] += int(np.sum(ok))
    for st in starts:
      if ok[st:st + segment].all():
        out["segment_correct"] += int(pos[st:st + segment].mean() > neg[st:st + segment].mean())
        out["segment_pairs"] += 1
  for k in ("window", "segment"):
    n = out[f"{k}_pairs"]
    out[f"{k}_accuracy"] = out[f"{k}_correct"] / n if n else float("nan")
  return out


class SyncEvaluator:
  """Embeds clips with a trained sync expert and scores them.

  Attributes:
    model, params: a `SyncNet` and its params (e.g. from the syncnet stage's `params/`), or
      Wav2Lip's original expert (`models.wav2lip_syncnet.Wav2LipSyncNet`, converted weights
      from `pretrained.wav2lip_syncnet.load`; give it `image_size=96` and the face box).
    image_size, face_box: leave None for a model from `models.syncnet.from_config` (it carries
      them); for a bare `SyncNet`, frames are first passed through
      `syncnet.prepare_faces(frames, image_size, face_box)`.
    max_offset: +- offsets searched (frames).
    chunk: windows embedded per jitted call.
    audio_features: what the audio encoder takes: "mel" (the `[T, 16, 80]` windows passed in)
      or "mfcc" (the original SyncNet, `models.chung_syncnet`: `features.mfcc.mfcc_windows` of
      the `wav` passed to `__call__`).
  """

  def __init__(self, model, params, *, image_size: Optional[int] = None,
               face_box=None, max_offset: int = 15, chunk: int = 64,
               audio_features: str = "mel"):
    if audio_features not in ("mel", "mfcc"):
      raise ValueError(f"SyncEvaluator: audio_features={audio_features!r}; expected mel or mfcc")
    self.model, self.params, self.audio_features = model, params, audio_features
    self.image_size, self.face_box = image_size, face_box
    self.max_offset, self.chunk = int(max_offset), int(chunk)

    def video(p, faces):
      if image_size is not None or face_box is not None:
        faces = syncnet_lib.prepare_faces(faces, image_size or faces.shape[2], face_box)
      return model.apply({"params": p}, faces, method="embed_video")

    def audio(p, mel):
      return model.apply({"params": p}, mel, method="embed_audio")

    self._video, self._audio = jax.jit(video), jax.jit(audio)

  def _chunked(self, fn, x):
    out = []
    for i in range(0, x.shape[0], self.chunk):
      part = x[i:i + self.chunk]
      n = part.shape[0]
      if n < self.chunk:  # pad to one compiled shape
        part = np.concatenate([part, np.repeat(part[-1:], self.chunk - n, 0)])
      out.append(np.asarray(fn(self.params, jnp.asarray(part)))[:n])
    return np.concatenate(out)

  def embed(self, frames, mel) -> tuple[np.ndarray, np.ndarray]:
    """frames `[T, H, W, 3]` in [-1, 1], mel `[T, 16, 80]` -> (video `[T-4, D]` centred on
    frames 2..T-3, audio `[T, D]`)."""
    frames, mel = np.asarray(frames, np.float32), np.asarray(mel, np.float32)
    if frames.ndim != 4 or mel.ndim != 3 or frames.shape[0] != mel.shape[0]:
      raise ValueError(f"SyncEvaluator: frames {frames.shape} / mel {mel.shape}; expected "
                       "[T, H, W, 3] and [T, 16, 80] (or [T, 13, 20] MFCC) with the same T")
    t = frames.shape[0]
    if t < NF:
      raise ValueError(f"SyncEvaluator: clip of {t} frames; need >= {NF}")
    windows = np.stack([frames[i:i + NF] for i in range(t - NF + 1)])
    return self._chunked(self._video, windows), self._chunked(self._audio, mel)

  def __call__(self, frames, mel, mask: Optional[np.ndarray] = None, *, wav=None) -> dict:
    """Scores one clip (`mask [T]` of valid frames; only the valid prefix is used). `wav`:
    `[T * 640]` 16 kHz speech in [-1, 1], needed with `audio_features="mfcc"`.

    Raises:
      ValueError: shapes that do not match, or no `wav` for an MFCC expert.
    """
    if mask is not None:
      n = int(np.sum(mask))
      frames, mel = np.asarray(frames)[:n], np.asarray(mel)[:n]
    if self.audio_features == "mfcc":
      from jaxtalk.features import mfcc as mfcc_lib  # pylint: disable=g-import-not-at-top
      if wav is None:
        raise ValueError("SyncEvaluator: this expert takes MFCC features; pass wav=")
      mel = mfcc_lib.mfcc_windows(np.asarray(wav)[:len(frames) * 640], len(frames))
    v, a = self.embed(frames, mel)
    return sync_scores(v, a, max_offset=self.max_offset)

  def shift_accuracies(self, frames, mel, **kwargs) -> dict:
    """`shift_accuracies` of one clip (frames `[T, H, W, 3]`, mel `[T, 16, 80]`); kwargs are
    passed on (min_shift, max_shift, segment, segment_stride)."""
    v, a = self.embed(frames, mel)
    return shift_accuracies(v, a, **kwargs)
