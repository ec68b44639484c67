"""grain input pipeline: ArrayRecord clips -> process shard -> training windows -> batches.

`create_iterator(config, mesh=mesh, split=...)` returns a grain `DatasetIterator` (supports
`get_state()` / `set_state()`, checkpointable with `grain.checkpoint.CheckpointSave` /
`CheckpointRestore`) that yields *per-process* dicts of numpy arrays in the batch layout of
`jaxtalk/tasks/__init__.py`, local batch size `config.batch_size // jax.process_count()`.
`to_global(batch, mesh)` turns them into global `jax.Array`s sharded over ('data', 'fsdp').

Two sources with the same schema:

* synthetic (`config.input.synthetic=True`): example i of process p is a pure function of
  (config.input.shuffle_seed, global example index), so every run, process layout and restore
  sees the same data. Frames show a face-like ellipse whose position follows the pose and whose
  mouth opening follows the mel energy, so stages can learn something from it in smoke runs.
  The expression keys come from `expression.synthetic_coefficients` (e_0 = the mouth opening, so
  the mel's energy; e_1 = a blink process; slow brow / smile and small other components) in the
  basis `expression.synthetic_basis()` (what `expression.basis_for_config` returns for synthetic
  configs), and f = `expression.eye_features_from_coefficients` of that e (blinks are not drawn
  in the frames). `landmarks` / `source_landmarks` are FaceMesh-like points placed on the drawn
  face (`_Synthetic._landmarks`), so `jaxtalk.features.regions` masks match the rendered regions.
* real (`config.input.data_dir`): see `_real_dataset` (written by `data_pipelines/pipeline.py`).

Config fields read (all under `config.input` unless noted): synthetic, data_dir, window (T),
resolution (H = W), keys (batch keys to produce; empty = all), shuffle_seed, num_workers, holdout,
exclude (clips neither trained nor evaluated on: `split_clips`), eval_tail (default 0: eval on the
held-out clips; > 0: eval on the last `eval_tail` of every training clip, whose earlier frames
alone are trained on, and the held-out clips are not used: `tail_start`);
optional: text_len (Lt, default 32), synthetic_vocab_size (default 1000), synthetic_speakers
(default 8), synthetic_wav2vec_dim (1024), synthetic_text_embedding_dim (512), read_threads
(default 2: threads decoding examples ahead, in order; 0 = none), eval_fraction (default 0.2),
random_crop (default True: PoseTalk's random-crop augmentation for split="train"), crop_min
(default 0.8), windows_per_clip (default 0: one window
per 2 s of clip per epoch), source_min_gap (default 5 frames), crop_adjusts_pose (default False),
max_av_offset (default None: every clip; N: leave out clips whose audio is still out of sync
after preprocessing, `|residual_av_offset| > N` frames, e.g. the lip-sync expert's training data),
av_min_confidence (default None: the shards' `sync_min_confidence`; max_av_offset acts only on
estimates at least this confident, see `out_of_sync_clips`; uncertain ones keep their clip).
Top-level: batch_size.

With num_workers > 0 grain's multiprocessing prefetch splits the stream over worker processes:
the batches are deterministic and restorable for a given num_workers, but differ from the
num_workers=0 stream (keep it fixed across a run and its restarts).

Random-crop augmentation (PoseTalk, train split only): one square crop of side
U[crop_min, 1] x stored resolution at a uniform offset, shared by the window and the source frame,
then resized to `resolution`; mouth boxes are mapped into the new crop. The pose is left as the
pose of the stored crop unless crop_adjusts_pose=True: the stored crop follows the face, so the
dataset std of (tx, ty, scale) is ~0.01 and re-expressing them in the augmented crop would push
them many standard deviations outside the data distribution.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import grain
import jax
import numpy as np

from data_pipelines import schema
from jaxtalk.features import audio as audio_lib
from jaxtalk.core import sharding as sharding_lib

ALL_KEYS = ("frames", "source", "source_pose", "pose", "gaze", "mel", "mouth_box", "text_ids",
            "text_mask", "emotion", "speaker", "mask")

# Extra keys, produced only when listed in config.input.keys (and, for real data, present in the
# shards: `jaxtalk preprocess --wav2vec_path / --clip_path`, `jaxtalk expression-basis`):
#   wav2vec              [B, T, C] float32  wav2vec 2.0 features, one row per frame
#   text_embedding       [B, D]    float32  pooled CLIP text embedding of the description
#   expression           [B, T, K] float32  GoHD's expression coefficients e_t (K = 64), raw
#                                           basis coordinates (not normalised; the basis:
#                                           `jaxtalk.features.expression.basis_for_config`)
#   eye_features         [B, T, 21] float32 GoHD's eye-motion features f_t (Fig. 4) from e_t
#   source_expression    [B, K]    float32  e at the example's source frame (`source`)
#   source_eye_features  [B, 21]   float32  f at the source frame
#   landmarks            [B, T, 478, 2] float32  FaceMesh (x, y) in [0, 1] of the crop (every
#                                           shard has them; under random crop they are mapped
#                                           into the new crop and may fall outside [0, 1];
#                                           synthetic: `_Synthetic._landmarks`)
#   source_landmarks     [B, 478, 2] float32  landmarks of the source frame
OPTIONAL_KEYS = ("wav2vec", "text_embedding", "expression", "eye_features", "source_expression",
                 "source_eye_features", "landmarks", "source_landmarks")
_LANDMARK_KEYS = ("landmarks", "source_landmarks")

# The record field each optional key is read from, and what adds it to shards that lack it.
_OPTIONAL_FIELD = {"wav2vec": "wav2vec", "text_embedding": "text_embedding",
                   "expression": "expression", "eye_features": "eye_features",
                   "source_expression": "expression", "source_eye_features": "eye_features"}
_ADDED_BY = {
  "wav2vec": "`jaxtalk preprocess --wav2vec_path DIR`",
  "text_embedding": "`jaxtalk preprocess --clip_path DIR`",
  "expression": "`jaxtalk expression-basis --data_dir {data_dir}`",
  "eye_features": "`jaxtalk expression-basis --data_dir {data_dir}` (imported Deep3DFaceRecon "
                  "coefficients have no eye features)",
}
_EXPRESSION_KEYS = ("expression", "eye_features", "source_expression", "source_eye_features")

_SYNTHETIC_SIZE = 1 << 40  # "infinite" synthetic index space.


# ----------------------------------------------------------------------------------------------
# Config helpers.
# ----------------------------------------------------------------------------------------------
def _get(cfg, name, default):
  try:
    value = cfg.get(name, default)
  except AttributeError:
    value = getattr(cfg, name, default)
  return default if value is None else value


def batch_keys(config) -> tuple[str, ...]:
  """The batch keys a stage asked for (`config.input.keys`; empty means all of ALL_KEYS)."""
  keys = tuple(_get(config.input, "keys", ()) or ())
  if not keys:
    return ALL_KEYS
  unknown = [k for k in keys if k not in ALL_KEYS + OPTIONAL_KEYS]
  if unknown:
    raise ValueError(f"config.input.keys has unknown keys {unknown}; known: "
                     f"{ALL_KEYS + OPTIONAL_KEYS}")
  return keys


def local_batch_size(config) -> int:
  """`config.batch_size // jax.process_count()`; raises ValueError if it does not divide."""
  n = jax.process_count()
  if config.batch_size % n:
    raise ValueError(f"batch_size {config.batch_size} not divisible by {n} processes")
  return config.batch_size // n


# ----------------------------------------------------------------------------------------------
# Synthetic source.
# ----------------------------------------------------------------------------------------------
class _Synthetic:
  """Picklable map function: global example index -> example dict (numpy)."""

  def __init__(self, *, seed, window, resolution, keys, text_len, vocab_size, num_speakers,
               wav2vec_dim=1024, text_embedding_dim=512):
    self.wav2vec_dim = int(wav2vec_dim)
    self.text_embedding_dim = int(text_embedding_dim)
    self.seed = int(seed)
    self.window = int(window)
    self.resolution = int(resolution)
    self.keys = tuple(keys)
    self.text_len = int(text_len)
    self.vocab_size = int(vocab_size)
    self.num_speakers = int(num_speakers)

  @staticmethod
  def _geometry(pose, opening):
    """Face ellipse centre (cx, cy), radius, feature shift and mouth rectangle (mx0, my0, mx1,
    my1) in [0, 1] crop units, each `[n, 1, 1]`, of raw-ish pose [n, 6] and opening [n]."""
    cx = 0.5 + 0.08 * pose[:, 3, None, None]
    cy = 0.5 + 0.08 * pose[:, 4, None, None]
    rad = 0.28 * (1.0 + 0.05 * pose[:, 5, None, None])
    shift = 0.05 * pose[:, 0, None, None]  # yaw shifts the features sideways.
    half = (0.05 + 0.25 * opening[:, None, None]) * rad * 0.5
    mouth = (cx + shift - 0.35 * rad, cy + 0.45 * rad - half, cx + shift + 0.35 * rad,
             cy + 0.45 * rad + half)
    return cx, cy, rad, shift, mouth

  def _landmarks(self, pose, opening):
    """FaceMesh-like landmarks `[n, 478, 2]` (crop units) of the rendered face (`_render`).

    The region contours of `jaxtalk.features.regions` lie on what is drawn: the face oval on the
    face ellipse, each eye contour on its drawn disc (iris points at its centre: the synthetic
    gaze is not drawn), the inner lips on the dark mouth rectangle, the outer lips on an ellipse
    around it; brows are a thin band above each eye (not drawn). The other mesh points are a
    fixed scatter inside the face, moving with it.
    """
    from jaxtalk.features import regions  # pylint: disable=g-import-not-at-top
    flat = lambda v: np.asarray(v, np.float32).reshape(-1)
    geometry = self._geometry(pose, opening)
    cx, cy, rad, shift = map(flat, geometry[:4])
    mx0, my0, mx1, my1 = map(flat, geometry[4])
    n = pose.shape[0]
    scatter = np.random.default_rng(478).uniform(-0.7, 0.7, size=(478, 2)).astype(np.float32)
    out = np.stack([cx[:, None] + rad[:, None] * scatter[None, :, 0],
                    cy[:, None] + 1.25 * rad[:, None] * scatter[None, :, 1]], -1)

    def ring(idx, x0, y0, ax, ay, square=False):
      th = np.linspace(-np.pi / 2, 1.5 * np.pi, len(idx), endpoint=False, dtype=np.float32)
      u, v = np.cos(th), np.sin(th)
      if square:  # points on the rectangle's border.
        s = np.maximum(np.abs(u), np.abs(v))
        u, v = u / s, v / s
      out[:, list(idx)] = np.stack([x0[:, None] + ax[:, None] * u, y0[:, None] + ay[:, None] * v],
                                   -1)

    ring(regions.FACE_OVAL, cx, cy, rad, 1.25 * rad)
    for side, eye, brow, iris in ((-1.0, regions.RIGHT_EYE, regions.RIGHT_BROW, range(468, 473)),
                                  (1.0, regions.LEFT_EYE, regions.LEFT_BROW, range(473, 478))):
      ex, ey = cx + shift + side * 0.4 * rad, cy - 0.3 * rad
      ring(eye, ex, ey, 0.12 * rad, 0.12 * rad)
      ring(brow, ex, ey - 0.3 * rad, 0.18 * rad, 0.04 * rad, square=True)
      ring(tuple(iris)[1:], ex, ey, 0.06 * rad, 0.06 * rad)
      out[:, iris[0]] = np.stack([ex, ey], -1)
    mxc, myc, hw, hh = (mx0 + mx1) / 2, (my0 + my1) / 2, (mx1 - mx0) / 2, (my1 - my0) / 2
    ring(regions.INNER_LIPS, mxc, myc, hw, hh, square=True)
    ring(regions.OUTER_LIPS, mxc, myc, 1.2 * hw, hh + 0.08 * rad)
    return out.reshape(n, 478, 2).astype(np.float32)

  def _render(self, rng_params, pose, opening):
    """Renders frames [n, H, W, 3] in [-1, 1] for raw-ish pose [n, 6] and mouth opening [n]."""
    r = self.resolution
    bg, skin, phase = rng_params
    yy, xx = np.meshgrid((np.arange(r) + 0.5) / r, (np.arange(r) + 0.5) / r, indexing="ij")
    n = pose.shape[0]
    cx, cy, rad, shift, (mx0, my0, mx1, my1) = self._geometry(pose, opening)
    img = np.empty([n, r, r, 3], np.float32)
    grad = (0.6 * yy + 0.4 * np.sin(6.28 * xx + phase))[None]
    for c in range(3):
      img[..., c] = bg[c] + 0.2 * grad
    face = ((xx[None] - cx) / rad) ** 2 + ((yy[None] - cy) / (1.25 * rad)) ** 2 < 1.0
    for c in range(3):
      img[..., c] = np.where(face, skin[c], img[..., c])
    for side in (-1.0, 1.0):  # eyes.
      eye = ((xx[None] - (cx + shift + side * 0.4 * rad)) ** 2 +
             (yy[None] - (cy - 0.3 * rad)) ** 2) < (0.12 * rad) ** 2
      img = np.where(eye[..., None], -0.9, img)
    mouth = (xx[None] > mx0) & (xx[None] < mx1) & (yy[None] > my0) & (yy[None] < my1)
    img = np.where(mouth[..., None], np.array([-0.6, -1.0, -0.8], np.float32), img)
    box = np.stack([mx0[:, 0, 0], my0[:, 0, 0], mx1[:, 0, 0], my1[:, 0, 0]], -1)
    return np.clip(img, -1.0, 1.0).astype(np.float32), np.clip(box, 0.0, 1.0).astype(np.float32)

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, int(index)])
    t_len = self.window
    # Smooth motion: sums of two random sinusoids per dimension (normalised units, ~unit std).
    total = t_len + 50  # frames of a virtual clip; the window and the source frame lie inside.
    tt = np.arange(total, dtype=np.float32)[:, None] / 25.0
    freq = rng.uniform(0.1, 0.8, size=[2, 8]).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=[2, 8]).astype(np.float32)
    amp = rng.uniform(0.5, 1.0, size=[2, 8]).astype(np.float32)
    motion = (amp[0] * np.sin(2 * np.pi * freq[0] * tt + phase[0]) +
              amp[1] * np.sin(2 * np.pi * freq[1] * tt + phase[1])).astype(np.float32)
    start = int(rng.integers(0, total - t_len + 1))
    src_t = int(rng.integers(0, total))
    pose_all, gaze_all = motion[:, :6], motion[:, 6:]
    # Speech energy per mel frame -> mel; mouth opening of frame t = energy at its centre.
    num_mel = 1 + (total * audio_lib.SAMPLES_PER_FRAME) // audio_lib.HOP_SIZE
    syll = rng.uniform(2.0, 5.0)
    mt = np.arange(num_mel, dtype=np.float32) / audio_lib.MEL_FPS
    energy = np.clip(np.sin(2 * np.pi * syll * mt + rng.uniform(0, 6.28)), 0.0, 1.0)
    out = {}
    keys = self.keys
    if "mel" in keys:
      spectrum = np.linspace(1.0, 0.2, audio_lib.NUM_MELS, dtype=np.float32)
      mel = (-4.0 + 6.0 * energy[:, None] * spectrum[None, :] +
             0.3 * rng.standard_normal([num_mel, audio_lib.NUM_MELS]).astype(np.float32))
      mel = np.clip(mel, -4.0, 4.0)
      out["mel"] = audio_lib.mel_windows(mel, t_len, offset=start)
    centre = np.clip(((np.arange(total) * audio_lib.SAMPLES_PER_FRAME +
                       audio_lib.SAMPLES_PER_FRAME // 2) // audio_lib.HOP_SIZE), 0, num_mel - 1)
    opening = energy[centre].astype(np.float32)
    sl = slice(start, start + t_len)
    params = (rng.uniform(-0.8, 0.2, 3).astype(np.float32),
              rng.uniform(0.1, 0.7, 3).astype(np.float32), float(rng.uniform(0, 6.28)))
    if "frames" in keys or "mouth_box" in keys:
      frames, box = self._render(params, pose_all[sl], opening[sl])
      if "frames" in keys:
        out["frames"] = frames
      if "mouth_box" in keys:
        out["mouth_box"] = box
    if "source" in keys:
      src = slice(src_t, src_t + 1)
      out["source"] = self._render(params, pose_all[src], opening[src])[0][0]
    if "landmarks" in keys:
      out["landmarks"] = self._landmarks(pose_all[sl], opening[sl])
    if "source_landmarks" in keys:
      out["source_landmarks"] = self._landmarks(pose_all[src_t:src_t + 1],
                                                opening[src_t:src_t + 1])[0]
    if "source_pose" in keys:
      out["source_pose"] = pose_all[src_t].astype(np.float32)
    if "pose" in keys:
      out["pose"] = pose_all[sl].astype(np.float32)
    if "gaze" in keys:
      out["gaze"] = gaze_all[sl].astype(np.float32)
    if "text_ids" in keys or "text_mask" in keys:
      length = int(rng.integers(min(4, self.text_len), self.text_len + 1))
      ids = np.zeros([self.text_len], np.int32)
      ids[:length] = rng.integers(1, max(2, self.vocab_size), size=length)
      if "text_ids" in keys:
        out["text_ids"] = ids
      if "text_mask" in keys:
        out["text_mask"] = ids > 0
    if "emotion" in keys:
      out["emotion"] = np.int32(rng.integers(0, len(schema.EMOTIONS)))
    if "speaker" in keys:
      out["speaker"] = np.int32(rng.integers(0, self.num_speakers))
    if "mask" in keys:
      out["mask"] = np.ones([t_len], np.bool_)
    if "wav2vec" in keys:  # follows the speech energy like real features would.
      proj = rng.standard_normal([2, self.wav2vec_dim]).astype(np.float32)
      e = opening[sl, None]
      out["wav2vec"] = (e * proj[0] + (1 - e) * proj[1] + 0.1 * rng.standard_normal(
          [t_len, self.wav2vec_dim])).astype(np.float32)
    if "text_embedding" in keys:
      out["text_embedding"] = rng.standard_normal([self.text_embedding_dim]).astype(np.float32)
    if set(_EXPRESSION_KEYS) & set(keys):
      out.update(self._expression(index, opening, sl, src_t))
    return out

  def _expression(self, index: int, opening: np.ndarray, sl: slice, src_t: int) -> dict:
    """The expression keys asked for, from the virtual clip's mouth opening `[total]` (own random
    stream: the other keys' values do not depend on whether these are asked for)."""
    from jaxtalk.features import expression as expression_lib  # pylint: disable=g-import-not-at-top
    basis = expression_lib.synthetic_basis()
    e = expression_lib.synthetic_coefficients(
        np.random.default_rng([self.seed, int(index), 1]), opening, basis)
    out = {"expression": e[sl], "source_expression": e[src_t]}
    if {"eye_features", "source_eye_features"} & set(self.keys):
      f = expression_lib.eye_features_from_coefficients(basis, e)
      out.update(eye_features=f[sl], source_eye_features=f[src_t])
    return {k: np.asarray(v, np.float32) for k, v in out.items() if k in self.keys}


def _synthetic_dataset(config, split: str) -> grain.MapDataset:
  inp = config.input
  seed = int(_get(inp, "shuffle_seed", 0)) + (0 if split == "train" else 1_000_003)
  fn = _Synthetic(
      seed=seed, window=inp.window, resolution=inp.resolution, keys=batch_keys(config),
      text_len=_get(inp, "text_len", 32), vocab_size=_get(inp, "synthetic_vocab_size", 1000),
      num_speakers=_get(inp, "synthetic_speakers", 8),
      wav2vec_dim=_get(inp, "synthetic_wav2vec_dim", 1024),
      text_embedding_dim=_get(inp, "synthetic_text_embedding_dim", 512))
  ds = grain.MapDataset.range(_SYNTHETIC_SIZE)
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.map(fn)


# ----------------------------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------------------------
def create_iterator(config, *, mesh=None, split: str = "train") -> grain.DatasetIterator:
  """Builds the per-process batch iterator for `split` ("train" or "eval").

  Args:
    config: the stage config (see module docstring for the fields read).
    mesh: the device mesh (unused for the host-side pipeline; batches become global arrays with
      `to_global(batch, mesh)`); accepted so callers can pass it uniformly.
    split: "train" (shuffled, augmented, repeats forever) or "eval" (deterministic windows,
      repeats forever; a fresh iterator always starts at the same batch).

  Returns:
    A grain iterator over dicts of numpy arrays with leading dim `local_batch_size(config)`;
    `get_state()` / `set_state()` restore the exact position.

  Raises:
    ValueError: for an unknown split, bad keys, or a missing/invalid `config.input.data_dir`.
  """
  del mesh
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
  bs = local_batch_size(config)
  if _get(config.input, "synthetic", False):
    ds = _synthetic_dataset(config, split)
  else:
    ds = _real_dataset(config, split)
  it_ds = ds.to_iter_dataset(_read_options(config))
  it_ds = it_ds.batch(bs, drop_remainder=True)
  workers = int(_get(config.input, "num_workers", 0))
  if workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)


def _read_options(config):
  """Reader threads that prefetch examples in order (JPEG decoding releases the GIL)."""
  threads = int(_get(config.input, "read_threads", 2))
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4 * threads)


def to_global(batch: Mapping[str, Any], mesh) -> dict[str, jax.Array]:
  """Per-process numpy batch -> global `jax.Array`s, batch dim sharded over ('data', 'fsdp')."""
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    sharding = sharding_lib.batch_sharding(mesh, value.ndim)
    out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out


def load_dataset_info(data_dir: str) -> dict:
  """Reads `<data_dir>/dataset_info.json` (written by `data_pipelines.pipeline`).

  Raises:
    ValueError: naming the file if it is missing or not valid JSON.
  """
  import os  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import files  # pylint: disable=g-import-not-at-top
  return files.read_json(os.path.join(data_dir, "dataset_info.json"),
                         hint="; run `jaxtalk preprocess` first")


# ----------------------------------------------------------------------------------------------
# Real source: ArrayRecord clip records -> training windows.
# ----------------------------------------------------------------------------------------------
def split_clips(info: Mapping[str, Any], holdout: Sequence[str] = (),
                eval_fraction: float = 0.2,
                exclude: Sequence[str] = ()) -> tuple[list[int], list[int]]:
  """Record indices of the train and eval clips.

  With `holdout` (clip ids, video ids or speakers), those clips are eval and the rest train.
  Otherwise a deterministic fraction: a clip is eval when md5(clip_id) / 2^32 < eval_fraction
  (at least one eval and one train clip when there are two or more clips). Clips matching
  `exclude` (`config.input.exclude`: e.g. a test clip reported elsewhere, which neither training
  nor model selection may see) are in neither list.

  Raises:
    ValueError: `holdout` or `exclude` matches no clip, video or speaker.
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  clips = info["clips"]
  if holdout:
    hold = set(holdout)
    is_eval = [c["clip_id"] in hold or c["video_id"] in hold or c["speaker"] in hold
               for c in clips]
    if not any(is_eval):
      raise ValueError(f"config.input.holdout {sorted(hold)} matches no clip, video or speaker")
  else:
    score = [int(hashlib.md5(c["clip_id"].encode()).hexdigest()[:8], 16) / 2**32 for c in clips]
    is_eval = [s < eval_fraction for s in score]
    if len(clips) >= 2 and eval_fraction > 0 and not any(is_eval):
      is_eval[int(np.argmin(score))] = True
    if len(clips) >= 2 and all(is_eval):
      is_eval[int(np.argmax(score))] = False
  out = set()
  if exclude:
    ex = set(exclude)
    out = {i for i, c in enumerate(clips)
           if c["clip_id"] in ex or c["video_id"] in ex or c["speaker"] in ex}
    if not out:
      raise ValueError(f"config.input.exclude {sorted(ex)} matches no clip, video or speaker")
  train = [i for i, e in enumerate(is_eval) if not e and i not in out]
  ev = [i for i, e in enumerate(is_eval) if e and i not in out]
  return train, ev


def _entries(clips, train_idx, eval_idx, t_len: int, is_train: bool, tail: float,
             per: int) -> list[tuple[int, int, int]]:
  """`(record, window start (-1: random), frame end)` of a split; see `tail_start`."""
  end = {i: tail_start(clips[i]["num_frames"], tail, t_len) for i in train_idx}
  if is_train:
    return [(i, -1, end[i]) for i in train_idx for _ in range(per or max(1, end[i] // 50))]
  entries = []
  for i in (train_idx if tail > 0 else eval_idx):
    n = clips[i]["num_frames"]
    first = end[i] if tail > 0 else 0
    entries += [(i, s, n) for s in range(first, max(n - t_len, first) + 1, t_len)]
  return entries


def tail_start(num_frames: int, tail: float, window: int) -> int:
  """First frame of a clip's validation tail (`config.input.eval_tail` = `tail`, the fraction of
  each training clip's frames kept for evaluation; 0: none, returns `num_frames`). Training
  windows and their source frames lie before it, eval windows after it; at least one window
  stays on each side when the clip is long enough."""
  if tail <= 0:
    return int(num_frames)
  start = int(round(num_frames * (1.0 - tail)))
  return int(min(max(start, window), max(num_frames - window, window)))


def resize_image(img: np.ndarray, size: int) -> np.ndarray:
  """uint8 `[h, w, 3]` -> `[size, size, 3]` (area filter when shrinking, bilinear otherwise)."""
  import cv2  # pylint: disable=g-import-not-at-top
  if img.shape[0] == size and img.shape[1] == size:
    return img
  interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
  return cv2.resize(img, (size, size), interpolation=interp)


def decode_jpeg(data: bytes) -> np.ndarray:
  """JPEG bytes of a stored frame -> uint8 RGB `[R, R, 3]`; ValueError if undecodable."""
  import cv2  # pylint: disable=g-import-not-at-top
  img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if img is None:
    raise ValueError("undecodable JPEG frame")
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


_resize = resize_image  # Older private names, used by jaxtalk/evaluators/reenactment.py.
_decode_jpeg = decode_jpeg


class _Windows:
  """Picklable random map: (record index, window start or -1) -> example dict (numpy)."""

  def __init__(self, *, paths, info, keys, window, resolution, text_len, train, random_crop,
               crop_min, source_min_gap, crop_adjusts_pose=False):
    self.paths = list(paths)
    self.keys = tuple(keys)
    self.window = int(window)
    self.resolution = int(resolution)
    self.text_len = int(text_len)
    self.train = bool(train)
    self.random_crop = bool(random_crop)
    self.crop_min = float(crop_min)
    self.source_min_gap = int(source_min_gap)
    self.crop_adjusts_pose = bool(crop_adjusts_pose)
    self.pose_mean = np.asarray(info["pose_mean"], np.float32)
    self.pose_std = np.maximum(np.asarray(info["pose_std"], np.float32), 1e-6)
    self.gaze_mean = np.asarray(info["gaze_mean"], np.float32)
    self.gaze_std = np.maximum(np.asarray(info["gaze_std"], np.float32), 1e-6)
    self.speakers = {s: i for i, s in enumerate(info["speakers"])}
    self.vocab = list(info["vocab"])
    self.clip_ids = [c["clip_id"] for c in info["clips"]]
    self._source = None
    self._tokenizer = None

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_source"] = None
    state["_tokenizer"] = None
    return state

  @property
  def source(self):
    if self._source is None:
      self._source = grain.sources.ArrayRecordDataSource(self.paths)
    return self._source

  @property
  def tokenizer(self):
    if self._tokenizer is None:
      from jaxtalk.features import text as text_lib  # pylint: disable=g-import-not-at-top
      self._tokenizer = text_lib.make_tokenizer(vocab=self.vocab)
    return self._tokenizer

  def __call__(self, entry, rng: np.random.Generator):
    index, start, end = int(entry[0]), int(entry[1]), int(entry[2])
    try:
      out = self._example(index, start, rng, end)
    except Exception as e:  # pylint: disable=broad-except  # a bad record is skipped, not fatal.
      logging.warning("input_pipeline: skipping record %d (%s) of %s: %s: %s", index,
                      self.clip_ids[index] if index < len(self.clip_ids) else "?",
                      self.paths, type(e).__name__, e)
      self._failures = getattr(self, "_failures", 0) + 1
      if self._failures > 100:  # never spin forever on a dataset of bad records.
        raise RuntimeError(f"input_pipeline: more than 100 consecutive bad records in "
                           f"{self.paths}; last: {type(e).__name__}: {e}") from e
      return None
    self._failures = 0
    return out

  def _record_keys(self) -> set:
    """The record fields the batch keys need (`schema.decode_record` skips the rest)."""
    keys = set(self.keys)
    need = {"num_frames", "resolution", "text", "speaker", "emotion"}
    need |= {"frames"} if {"frames", "source"} & keys else set()
    need |= {"pose"} if {"pose", "source_pose"} & keys else set()
    need |= {"gaze", "mel", "mouth_box"} & keys
    need.update(_OPTIONAL_FIELD[k] for k in _OPTIONAL_FIELD if k in keys)
    need |= {"landmarks"} if set(_LANDMARK_KEYS) & keys else set()
    return need

  def _window_source_crop(self, n: int, res: int, start: int, rng, end: int = -1):
    """(start, valid [T], frame indices [T], source frame, crop (c, ox, oy)) of one example.
    `end` > 0: a training window and its source lie in frames [0, end) (`input.eval_tail`)."""
    t_len = self.window
    if self.train and 0 < end < n:
      n = end
    if start < 0:
      start = int(rng.integers(0, max(n - t_len, 0) + 1))
    valid = np.arange(start, start + t_len) < n
    idx = np.minimum(np.arange(start, start + t_len), n - 1)
    # Source frame: another time of the clip, at least `source_min_gap` frames from the window.
    far = np.concatenate([np.arange(0, max(start - self.source_min_gap, 0)),
                          np.arange(min(start + t_len + self.source_min_gap, n), n)])
    if self.train:
      src = int(rng.choice(far)) if far.size else int(rng.integers(0, n))
    else:
      src = int(far[far.size // 2]) if far.size else (0 if start > 0 else n - 1)
    # Crop (PoseTalk random-crop augmentation): square of side c at (ox, oy), in stored pixels.
    if self.train and self.random_crop and self.crop_min < 1.0:
      c = int(round(res * rng.uniform(self.crop_min, 1.0)))
      ox, oy = int(rng.integers(0, res - c + 1)), int(rng.integers(0, res - c + 1))
    else:
      c, ox, oy = res, 0, 0
    return start, valid, idx, src, (c, ox, oy)

  def _example(self, index, start, rng, end=-1):
    rec = schema.decode_record(self.source[index], keys=self._record_keys())
    n, res = int(rec["num_frames"]), int(rec["resolution"])
    start, valid, idx, src, crop = self._window_source_crop(n, res, start, rng, end)
    out = self._images(rec, idx, src, res, crop)
    out.update(self._motion(rec, idx, src, res, crop))
    out.update(self._audio_and_labels(rec, start))
    if "mask" in self.keys:
      out["mask"] = valid
    out.update(self._optional(rec, idx, src))
    return out

  def _images(self, rec, idx, src, res, crop) -> dict:
    """frames [T, H, W, 3], source [H, W, 3] in [-1, 1], mouth_box [T, 4] and landmarks
    [T, 478, 2] / source_landmarks [478, 2] mapped into the crop."""
    keys, (c, ox, oy) = self.keys, crop
    out = {}

    def frame(k):
      img = _decode_jpeg(rec["frames"][k])
      if img.shape[:2] != (res, res):
        raise ValueError(f"frame {k} is {img.shape[:2]}, record says {res}")
      img = _resize(img[oy:oy + c, ox:ox + c], self.resolution)
      return img.astype(np.float32) / 127.5 - 1.0

    if "frames" in keys:
      cache = {}
      for k in idx:
        if k not in cache:
          cache[k] = frame(k)
      out["frames"] = np.stack([cache[k] for k in idx])
    if "source" in keys:
      out["source"] = frame(src)
    if "mouth_box" in keys:
      box = np.asarray(rec["mouth_box"], np.float32)[idx]
      off = np.array([ox, oy, ox, oy], np.float32)
      out["mouth_box"] = np.clip((box * res - off) / c, 0.0, 1.0).astype(np.float32)
    if set(_LANDMARK_KEYS) & set(keys):
      lm = np.asarray(rec["landmarks"], np.float32)[..., :2]
      lm = (lm * res - np.array([ox, oy], np.float32)) / c
      if "landmarks" in keys:
        out["landmarks"] = lm[idx]
      if "source_landmarks" in keys:
        out["source_landmarks"] = lm[src]
    return out

  def _motion(self, rec, idx, src, res, crop) -> dict:
    """pose [T, 6], source_pose [6] and gaze [T, 2], normalised by the dataset statistics."""
    keys, (c, ox, oy) = self.keys, crop
    out = {}
    if "pose" in rec:
      pose = np.asarray(rec["pose"], np.float32).copy()
      if self.crop_adjusts_pose and (c != res or ox or oy):
        pose[:, 3] = ((0.5 + pose[:, 3]) * res - ox) / c - 0.5
        pose[:, 4] = ((0.5 + pose[:, 4]) * res - oy) / c - 0.5
        pose[:, 5] = pose[:, 5] * res / c
      pose = (pose - self.pose_mean) / self.pose_std
      if "pose" in keys:
        out["pose"] = pose[idx]
      if "source_pose" in keys:
        out["source_pose"] = pose[src]
    if "gaze" in keys:
      out["gaze"] = ((np.asarray(rec["gaze"], np.float32) - self.gaze_mean) / self.gaze_std)[idx]
    return out

  def _audio_and_labels(self, rec, start) -> dict:
    """mel windows [T, 16, 80], text_ids / text_mask [Lt], emotion and speaker ids."""
    keys = self.keys
    out = {}
    if "mel" in keys:
      out["mel"] = audio_lib.mel_windows(np.asarray(rec["mel"], np.float32), self.window,
                                         offset=start)
    if "text_ids" in keys or "text_mask" in keys:
      ids, mask = self.tokenizer.encode([rec["text"]], self.text_len)
      if "text_ids" in keys:
        out["text_ids"] = np.asarray(ids[0], np.int32)
      if "text_mask" in keys:
        out["text_mask"] = np.asarray(mask[0], np.bool_)
    if "emotion" in keys:
      out["emotion"] = np.int32(schema.emotion_index(rec["emotion"]))
    if "speaker" in keys:
      out["speaker"] = np.int32(self.speakers.get(rec["speaker"], 0))
    return out

  def _optional(self, rec, idx, src) -> dict:
    """The optional keys (`OPTIONAL_KEYS`) asked for, float32: per-frame fields at the window's
    frames, `source_*` at the source frame, text_embedding as stored."""
    out = {}
    for key in _OPTIONAL_FIELD:
      if key not in self.keys:
        continue
      field = _OPTIONAL_FIELD[key]
      if field not in rec:
        raise ValueError(f"record {rec['clip_id']} has no {field} (see `OPTIONAL_KEYS`)")
      value = np.asarray(rec[field], np.float32)
      if key == "text_embedding":
        out[key] = value
      else:
        out[key] = value[src] if key.startswith("source_") else value[idx]
    return out


def residual_av_offset(clip: Mapping[str, Any],
                       min_confidence: Optional[float] = None) -> Optional[int]:
  """Audio-visual offset left in a preprocessed clip, in video frames (> 0: audio late).

  Args:
    clip: a dataset_info.json clip entry or a `reenactment.read_clips` dict: the offset
      `av_offset` measured before re-sync minus the `audio_shift` applied, with the estimate's
      `av_confidence` (`data_pipelines/av_sync.py`).
    min_confidence: estimates below this confidence count as unknown (None returned). None: every
      stored estimate counts.

  Returns:
    The residual offset (int frames), or None when it is unknown: the clip carries no measurement
    (older shards) or its confidence is below `min_confidence`.
  """
  if clip.get("av_offset") is None:
    return None
  if min_confidence is not None and float(clip.get("av_confidence", 0.0)) < min_confidence:
    return None
  return int(clip["av_offset"]) - int(clip.get("audio_shift") or 0)


def out_of_sync_clips(info: Mapping[str, Any], max_av_offset: int,
                      min_confidence: Optional[float] = None) -> tuple[list[int], list[int]]:
  """Clips whose audio is known to be out of sync after preprocessing (`input.max_av_offset`).

  Args:
    info: dataset_info.json contents.
    max_av_offset: a clip is out of sync when `|residual_av_offset| > max_av_offset` frames.
    min_confidence: estimates below this confidence are unknown and never leave a clip out.
      None: the confidence preprocessing itself required before shifting audio
      (`options.sync_min_confidence` of the shards; `av_sync.DEFAULT_MIN_CONFIDENCE` if absent).

  Returns:
    (out_of_sync, unknown): indices into `info["clips"]`; `unknown` are clips with an offset
    estimate beyond `max_av_offset` whose confidence is too low to act on (they are kept).
  """
  from data_pipelines import av_sync  # pylint: disable=g-import-not-at-top
  if min_confidence is None:
    min_confidence = float((info.get("options") or {}).get(
        "sync_min_confidence", av_sync.DEFAULT_MIN_CONFIDENCE))
  out, unknown = [], []
  for i, c in enumerate(info["clips"]):
    if abs(residual_av_offset(c) or 0) <= int(max_av_offset):
      continue
    (out if residual_av_offset(c, min_confidence) is not None else unknown).append(i)
  return out, unknown


def _check_optional_features(info: Mapping[str, Any], keys: Sequence[str], data_dir: str) -> None:
  """Raises a ValueError naming what adds them when `keys` ask for optional fields that not
  every clip has (dataset_info.json `optional_features`), or for expression coefficients of
  mixed origins (`expression_source`: another basis fit, or imported Deep3DFaceRecon ones)."""
  fields = sorted({_OPTIONAL_FIELD[k] for k in keys if k in _OPTIONAL_FIELD})
  missing = [f for f in fields if f not in info.get("optional_features", [])]
  if missing:
    lacking = sorted(c["clip_id"] for c in info.get("clips", [])
                     if not set(missing) <= set(c.get("features", [])))
    how = "; ".join(f"{f}: {_ADDED_BY[f].format(data_dir=data_dir)}" for f in missing)
    raise ValueError(f"{data_dir}: config.input.keys asks for {missing}, which these shards do "
                     f"not have ({len(lacking)} of {len(info.get('clips', []))} clips lack them, "
                     f"e.g. {lacking[:3]}); add them with {how}")
  if "expression" in fields:
    sources = sorted({str(c.get("expression_source")) for c in info["clips"]})
    if len(sources) > 1:
      fix = (f"re-run `jaxtalk expression-basis --data_dir {data_dir}`"
             if schema.DEEP3DFACERECON not in sources else
             "imported Deep3DFaceRecon coefficients are kept by `jaxtalk expression-basis`: use "
             "shards whose videos all have, or all lack, a manifest `coefficients` file")
      raise ValueError(f"{data_dir}: the clips' expression coefficients come from different "
                       f"sources {sources} (coefficients of different bases do not mix); {fix}")


def _real_dataset(config, split: str) -> grain.MapDataset:
  """Windows of T frames from the clips of `split` (see module docstring for the options).

  Train: each clip appears `windows_per_clip` times per epoch (default one per 2 s of clip) at a
  random start, epochs reshuffled (seeded), random crop; the random state of every example is a
  function of (seed, global example index), so a restored iterator continues identically.
  Eval: windows at starts 0, T, 2T, ... of every eval clip in a fixed order, no augmentation.
  Clips shorter than T are padded by repeating their last frame (`mask` False there).
  A dataset without held-out clips (e.g. a single clip) evaluates on its training clips, with a
  warning.
  """
  import os  # pylint: disable=g-import-not-at-top
  inp = config.input
  data_dir = _get(inp, "data_dir", "")
  if not data_dir:
    raise ValueError("config.input.data_dir is empty (set it, or config.input.synthetic=True)")
  info = load_dataset_info(data_dir)
  schema.check_schema_version(info.get("schema_version"),
                              os.path.join(data_dir, "dataset_info.json"))
  paths = [os.path.join(data_dir, s) for s in info["shards"]]
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise ValueError(f"{data_dir}: shards listed in dataset_info.json are missing: {missing}")
  _check_optional_features(info, batch_keys(config), data_dir)
  train_idx, eval_idx = split_clips(info, tuple(_get(inp, "holdout", ()) or ()),
                                    float(_get(inp, "eval_fraction", 0.2)),
                                    tuple(_get(inp, "exclude", ()) or ()))
  max_av = _get(inp, "max_av_offset", None)
  if max_av is not None:
    out, unknown = out_of_sync_clips(info, int(max_av), _get(inp, "av_min_confidence", None))
    names = lambda idx: sorted(info["clips"][i]["clip_id"] for i in idx)
    if unknown:
      logging.info("input_pipeline: keeping %d clip(s) whose audio-visual offset estimate is too "
                   "uncertain to act on (config.input.av_min_confidence): %s", len(unknown),
                   names(unknown))
    if out:
      logging.warning("input_pipeline: leaving out %d clip(s) still out of sync by more than %d "
                      "frames (config.input.max_av_offset): %s", len(out), int(max_av),
                      names(out))
    train_idx = [i for i in train_idx if i not in out]
    eval_idx = [i for i in eval_idx if i not in out]
  if not eval_idx and split == "eval" and train_idx and not _get(inp, "eval_tail", 0.0):
    logging.warning("input_pipeline: %s has no held-out clips (%d clips, holdout=%s); evaluating "
                    "on the training clips", data_dir, len(info["clips"]),
                    tuple(_get(inp, "holdout", ()) or ()))
    eval_idx = train_idx
  t_len = int(inp.window)
  clips = info["clips"]
  is_train = split == "train"
  entries = _entries(clips, train_idx, eval_idx, t_len, is_train,
                     float(_get(inp, "eval_tail", 0.0) or 0.0),
                     int(_get(inp, "windows_per_clip", 0)))
  if not entries:
    raise ValueError(f"{data_dir}: no clips in split {split!r} (train {len(train_idx)} clips, "
                     f"eval {len(eval_idx)} clips)")
  seed = int(_get(inp, "shuffle_seed", 0))
  fn = _Windows(
      paths=paths, info=info, keys=batch_keys(config), window=t_len,
      resolution=inp.resolution, text_len=_get(inp, "text_len", 32), train=is_train,
      random_crop=_get(inp, "random_crop", True), crop_min=_get(inp, "crop_min", 0.8),
      source_min_gap=_get(inp, "source_min_gap", 5),
      crop_adjusts_pose=_get(inp, "crop_adjusts_pose", False))
  ds = grain.MapDataset.source(entries)
  if is_train:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat().random_map(fn, seed=seed + (0 if is_train else 1))
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.filter(lambda x: x is not None)
