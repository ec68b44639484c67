"""Self-reenactment evaluation of a renderer on held-out clips, reported like PoseTalk Tables 1-2.

For each held-out clip: source = the clip's FIRST frame, driving = the clip's own poses, gaze and
audio (the rest of the batch, unchanged), ground truth = the clip's frames. A render function

  render_fn(source [B, H, W, 3] in [-1, 1], batch) -> frames [B, T, H, W, 3] in [-1, 1]

produces the video (`batch["source"]` / `batch["source_pose"]` are replaced by frame 0 and its
pose before the call). Metrics over valid frames 1..T-1 (frame 0 is the source itself):

  SSIM↑, PSNR↑                  jaxtalk.evaluators.image (dm-pix SSIM)
  LPIPS*↓                       LPIPS-style distance, backbone named in the report
                                (VGG19 with converted weights, else random-feature substitute)
  IP↑                           cosine of dlib 128-d face embeddings, source vs generated
                                (PoseTalk uses ArcFace; see jaxtalk.evaluators.identity)
  LMD↓                          mouth landmark distance, generated vs real (FaceMesh lips, px)
  mouth L1↓                     mean |generated - real| over the real frame's mouth box (the
                                batch's `mouth_box`, resized to 32 x 32; pixels in [-1, 1]), the
                                region the mouth terms of PoseTalk eqs. 9-10 train
  LSE-C↑ / LSE-D↓               sync confidence / distance of the generated clip with its audio
                                (jaxtalk's retrained expert; PoseTalk's Sync_conf = LSE-C)

PoseTalk reports AED (3DMM expression distance) where jaxtalk reports LMD: no 3DMM fitting is
available offline. Values are averaged per frame over all clips (sync: per clip).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk import losses
from jaxtalk.evaluators import image as image_lib

COLUMNS = (("ssim", "SSIM↑"), ("psnr", "PSNR↑"), ("lpips", "LPIPS*↓"), ("identity", "IP↑"),
           ("lmd", "LMD↓"), ("mouth_l1", "mouth L1↓"), ("lse_c", "LSE-C↑"), ("lse_d", "LSE-D↓"))


def mouth_region_l1(pred, target, boxes, size: int = 32) -> jax.Array:
  """Per-frame L1 of mouth crops: pred/target `[N, H, W, 3]` in [-1, 1], boxes `[N, 4]` in
  [0, 1] (x0, y0, x1, y1; the real frames' mouth boxes) -> float32 `[N]`."""
  a = losses.crop_and_resize(jnp.asarray(pred), jnp.asarray(boxes), size)
  b = losses.crop_and_resize(jnp.asarray(target), jnp.asarray(boxes), size)
  return jnp.mean(jnp.abs(a - b), axis=(1, 2, 3))


def repeat_source(source, batch) -> np.ndarray:
  """Baseline renderer: the source frame repeated for every frame of the clip."""
  t = batch["frames"].shape[1]
  return np.repeat(np.asarray(source)[:, None], t, axis=1)


def ground_truth(source, batch) -> np.ndarray:
  """Oracle renderer (sanity check of the metrics): returns the real frames."""
  del source
  return np.asarray(batch["frames"])


class ClipScorer:
  """The per-clip metrics of the module docstring, with their networks built once.

  Attributes (all optional; a metric whose network is None is skipped):
    perceptual: `(net, params)` from `losses.PerceptualNet.create` for LPIPS*.
    identity: an `identity.IdentityEmbedder` for IP / CSIM.
    landmarks: a `landmarks.MouthLandmarks` for LMD.
    sync: a `sync.SyncEvaluator` for LSE-C / LSE-D.
  """

  def __init__(self, *, perceptual: Optional[tuple] = None, identity=None, landmarks=None,
               sync=None):
    self.perceptual, self.identity, self.landmarks, self.sync = (perceptual, identity,
                                                                  landmarks, sync)
    self._ssim, self._psnr = jax.jit(image_lib.ssim), jax.jit(image_lib.psnr)
    self._mouth = jax.jit(mouth_region_l1)
    self._lpips = None
    if perceptual is not None:
      net, pparams = perceptual
      lpips = jax.jit(lambda p, a, b: image_lib.perceptual_distance(a, b, net=net, params=p))
      self._lpips = functools.partial(lpips, pparams)

  def frame_metrics(self, source, pred, target, mouth_box=None) -> dict[str, list[float]]:
    """Per-frame metrics of one clip: source `[H, W, 3]`, pred / target `[N, H, W, 3]` in
    [-1, 1], mouth_box `[N, 4]` or None -> {metric: [N] floats} ("lmd": frames with both faces
    found only)."""
    from jaxtalk.evaluators import identity as identity_lib  # pylint: disable=g-import-not-at-top
    from jaxtalk.evaluators import landmarks as landmarks_lib  # pylint: disable=g-import-not-at-top
    out = {"ssim": np.asarray(self._ssim(pred, target)).tolist(),
           "psnr": np.asarray(self._psnr(pred, target)).tolist()}
    if mouth_box is not None:
      out["mouth_l1"] = np.asarray(self._mouth(pred, target, mouth_box)).tolist()
    if self._lpips is not None:
      out["lpips"] = np.asarray(self._lpips(pred, target)).tolist()
    if self.identity is not None:
      r = identity_lib.identity_similarity(self.identity, source, pred)
      out["identity"] = np.asarray(r["per_frame"]).tolist()
    if self.landmarks is not None:
      r = landmarks_lib.mouth_lmd(self.landmarks, pred, target)
      out["lmd"] = [x for x in r["per_frame"] if not math.isnan(x)]
    return out

  def score_clip(self, source, pred, frames, *, mask=None, mouth_box=None, mel=None, wav=None,
                 reference_sync: bool = True) -> Optional[dict]:
    """Metrics of one generated clip against its real frames.

    Args:
      source: `[H, W, 3]` the portrait the clip was generated from (IP is measured against it).
      pred / frames: `[T, H, W, 3]` generated / real frames in [-1, 1].
      mask: `[T]` valid frames (default all). mouth_box: `[T, 4]` or None. mel: `[T, 16, 80]`
        or None (no sync scores). wav: `[T * 640]` speech, for an MFCC sync expert.
      reference_sync: also score the real frames' own sync ("gt_lse_c" / "gt_lse_d").

    Returns:
      None when the clip has no valid frame after frame 0, else {"frames": {metric: per-frame
      list over valid frames 1..T-1}, "clip": {"lse_c", "lse_d", "gt_lse_c", "gt_lse_d"} (those
      computed), "num_frames": int}.
    """
    t = frames.shape[0]
    mask = np.ones([t], bool) if mask is None else np.asarray(mask, bool)
    valid = np.nonzero(mask)[0]
    valid = valid[valid > 0]
    if valid.size == 0:
      return None
    box = None if mouth_box is None else np.asarray(mouth_box)[valid]
    out = {"frames": self.frame_metrics(source, pred[valid], frames[valid], box), "clip": {},
           "num_frames": int(valid.size)}
    if self.sync is not None and mel is not None and mask.sum() >= 5:
      n = int(mask.sum())
      videos = (("", pred[:n]),) + ((("gt_", frames[:n]),) if reference_sync else ())
      for prefix, video in videos:
        s = self.sync(video, np.asarray(mel)[:n], wav=wav)
        out["clip"][prefix + "lse_c"] = s["lse_c"]
        out["clip"][prefix + "lse_d"] = s["lse_d"]
    return out


def evaluate_reenactment(render_fn: Callable, clips: Iterable[Mapping[str, np.ndarray]], *,
                         perceptual: Optional[tuple] = None, identity=None, landmarks=None,
                         sync=None, max_batches: Optional[int] = None,
                         scorer: Optional[ClipScorer] = None) -> dict:
  """Runs `render_fn` in self-reenactment over `clips` and returns mean metrics.

  Args:
    render_fn: see module docstring.
    clips: iterable of batches in the jaxtalk batch layout (needs "frames"; "mask", "pose",
      "mel", "mouth_box" when present are used), e.g. `input_pipeline.create_iterator(config,
      split="eval")`.
    perceptual: `(net, params)` from `losses.PerceptualNet.create`, or None to skip LPIPS*.
    identity: an `identity.IdentityEmbedder`, or None to skip IP.
    landmarks: a `landmarks.MouthLandmarks`, or None to skip LMD.
    sync: a `sync.SyncEvaluator`, or None to skip LSE-C/LSE-D (needs "mel").
    max_batches: stop after this many batches (the iterator may be infinite).
    scorer: a `ClipScorer` to use instead of building one from the four networks above.

  Returns:
    dict with the `COLUMNS` keys present (float), plus "num_clips", "num_frames",
    "lpips_backbone", "gt_lse_c"/"gt_lse_d" (the real clips' own sync scores, for reference).

  Raises:
    ValueError: if render_fn returns the wrong shape.
  """
  scorer = scorer or ClipScorer(perceptual=perceptual, identity=identity, landmarks=landmarks,
                                sync=sync)
  frame_metrics = {k: [] for k in ("ssim", "psnr", "lpips", "identity", "lmd", "mouth_l1")}
  clip_metrics = {"lse_c": [], "lse_d": [], "gt_lse_c": [], "gt_lse_d": []}
  num_clips = num_frames = 0
  for i, batch in enumerate(clips):
    if max_batches is not None and i >= max_batches:
      break
    batch = {k: np.asarray(v) for k, v in batch.items()}
    frames = batch["frames"]
    b, t = frames.shape[:2]
    mask = batch.get("mask", np.ones([b, t], bool)).astype(bool)
    source = frames[:, 0]
    driving = dict(batch, source=source)
    if "pose" in batch:
      driving["source_pose"] = batch["pose"][:, 0]
    pred = np.asarray(render_fn(source, driving), np.float32)
    if pred.shape != frames.shape:
      raise ValueError(f"render_fn returned {pred.shape}; expected {frames.shape}")
    for j in range(b):
      r = scorer.score_clip(source[j], pred[j], frames[j], mask=mask[j],
                            mouth_box=batch["mouth_box"][j] if "mouth_box" in batch else None,
                            mel=batch["mel"][j] if "mel" in batch else None)
      if r is None:
        continue
      num_clips += 1
      num_frames += r["num_frames"]
      for k, v in r["frames"].items():
        frame_metrics[k].extend(v)
      for k, v in r["clip"].items():
        clip_metrics[k].append(v)

  out = {k: float(np.mean(v)) for k, v in {**frame_metrics, **clip_metrics}.items() if v}
  out.update(num_clips=num_clips, num_frames=num_frames)
  if scorer.perceptual is not None:
    out["lpips_backbone"] = image_lib.backbone_name(scorer.perceptual[0])
  return out


def model_render_fn(model) -> Callable:
  """The `render_fn` (module docstring) of a loaded model (`jaxtalk.methods`: a bundle, or a
  method's `stage_model`): each clip's own raw pose and gaze as its `Motion`, rendered by
  `model.render_motion` with the clip's mel windows and the source frame's pose (and the clip's
  expression coefficients `[B, T, E]` when the batch has them: GoHD's animator reads them)."""
  from jaxtalk import motion as motion_lib  # pylint: disable=g-import-not-at-top

  def render_fn(source, batch):
    out = []
    for b in range(source.shape[0]):
      e = batch.get("expression")
      motion = motion_lib.Motion(pose=batch["pose"][b:b + 1], gaze=batch["gaze"][b:b + 1],
                                 expression=None if e is None else e[b:b + 1])
      out.append(model.render_motion(source[b], motion, mel=batch["mel"][b],
                                     source_pose=batch["source_pose"][b]))
    return np.stack(out)
  return render_fn


def drive_render_fn(model, region: str = "all") -> Callable:
  """The `render_fn` (module docstring) of video-driven self-reenactment (LivePortrait's): each
  clip's source frame moved by the clip's own frames `batch["frames"]` `[B, T, R, R, 3]`
  (`model.drive_motion`, relative to frame 0, animation `region`), rendered by
  `model.render_motion`; for a model with `drive_motion` (`jaxtalk.methods`: PC-Talk).

  Raises (when called):
    ValueError: as `drive_motion` (unknown region, frames of another size than the model's).
  """

  def render_fn(source, batch):
    out = []
    for b in range(source.shape[0]):
      motion = model.drive_motion(source[b], batch["frames"][b], region=region)
      out.append(model.render_motion(source[b], motion, mel=None, source_pose=None))
    return np.stack(out)
  return render_fn


PER_FRAME = ("frames", "mel", "pose", "gaze", "mouth_box", "expression")  # "expression": optional


def clip_batches(clips: list[dict]):
  """One batch `[1, T, ...]` per clip of `read_clips` (the layout `evaluate_reenactment` reads)."""
  for c in clips:
    yield {k: c[k][None] for k in PER_FRAME if k in c}


def _frames_from(clip: dict, start: int, count: int) -> dict:
  """Frames `start .. start + count - 1` of a `read_clips` clip (every per-frame field)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  out = dict(clip)
  for k in PER_FRAME:
    if k in clip:
      out[k] = clip[k][start:start + count]
  spf = audio_lib.SAMPLES_PER_FRAME
  out["wav"] = clip["wav"][start * spf:(start + count) * spf]
  return out


class HeldOutReenactment:
  """Self-reenactment of a renderer stage on its held-out clips while it trains.

  Declared in a stage config as `config.evals.<name> = dict(type="reenactment",
  method="posetalk", max_clips=2, seconds=4.0)` and run by train.py at every eval
  (`jaxtalk.evaluators.common`). The clips are the stage's eval split (`input.holdout`, else
  the md5 split of `input_pipeline.split_clips`; with `input.eval_tail` > 0, the validation tails
  of the training clips): the first `max_clips`, their first `seconds`, at the stage's
  resolution, source = frame 0 (of the tail). They are rendered through the method's
  `stage_model` (as `jaxtalk generate` renders a bundle) and scored with SSIM, PSNR and mouth
  L1; the repeat-the-source baseline, computed once, is returned beside them as `<metric>_source`.
  With synthetic input or no shards the evaluator is inactive and returns {}.
  """

  METRICS = ("ssim", "psnr", "mouth_l1")

  def __init__(self, config, *, method: str = "posetalk", max_clips: int = 2,
               seconds: float = 4.0):
    from jaxtalk import methods  # pylint: disable=g-import-not-at-top
    from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
    self.config = config
    self.clips: list[dict] = []
    self.baseline: dict[str, float] = {}
    self.stage_model = methods.get(method).stage_model
    if self.stage_model is None:
      raise ValueError(f"config.evals: method {method!r} has no stage_model to render with")
    data_dir = config.input.get("data_dir", "")
    if config.input.get("synthetic", False) or not data_dir:
      return
    info = input_pipeline.load_dataset_info(data_dir)
    train, ev = input_pipeline.split_clips(info, tuple(config.input.get("holdout", ()) or ()),
                                           float(config.input.get("eval_fraction", 0.2)),
                                           tuple(config.input.get("exclude", ()) or ()))
    tail = float(config.input.get("eval_tail", 0.0) or 0.0)
    ids = [info["clips"][i]["clip_id"] for i in (train if tail > 0 else ev)][:int(max_clips)]
    if not ids:
      return
    frames = int(round(float(seconds) * 25))
    clips = read_clips(data_dir, clip_ids=ids, resolution=int(config.input.resolution),
                       max_frames=None if tail > 0 else frames)
    if tail > 0:
      window = int(config.input.window)
      clips = [_frames_from(c, input_pipeline.tail_start(len(c["frames"]), tail, window), frames)
               for c in clips]
    self.clips = clips
    self.baseline = self._metrics(repeat_source)

  def _metrics(self, render_fn) -> dict[str, float]:
    out = evaluate_reenactment(render_fn, clip_batches(self.clips))
    return {k: out[k] for k in self.METRICS if k in out}

  def __call__(self, infer, params, frozen) -> dict[str, float]:
    """Metrics of the stage with `params`: `infer` is the task's jitted infer function."""
    if not self.clips:
      return {}
    model = self.stage_model(self.config, infer, params, frozen)
    out = self._metrics(model_render_fn(model))
    out.update({f"{k}_source": v for k, v in self.baseline.items()})
    return out


def format_table(rows: Mapping[str, Mapping[str, float]]) -> str:
  """Markdown table (like PoseTalk Tables 1-2): one row per method, the `COLUMNS` present."""
  cols = [(k, h) for k, h in COLUMNS if any(k in r for r in rows.values())]
  lines = ["| method | " + " | ".join(h for _, h in cols) + " |",
           "|---|" + "---|" * len(cols)]
  for name, r in rows.items():
    cells = [f"{r[k]:.4f}" if k in r else "-" for k, _ in cols]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def default_perceptual(vgg_weights: Optional[str] = None):
  """`(net, params)` for the LPIPS* column (VGG19 if weights given, else the substitute)."""
  return losses.PerceptualNet.create(vgg_weights, dtype=jnp.float32)


def metric_networks(*, syncnet_params: Optional[str] = None, vgg_weights: Optional[str] = None,
                    log: Callable[..., None] = print, identity: bool = True,
                    landmarks: bool = True) -> dict:
  """The networks of the metrics (keyword arguments of `evaluate_reenactment` / `ClipScorer`):
  perceptual (VGG19 from `vgg_weights`, else the random-feature substitute), identity (dlib) and
  landmarks (FaceMesh) when they load (else left out, saying why through `log(msg, *args)`;
  `identity=False` / `landmarks=False` leave them out), and sync when `syncnet_params` is
  given: a syncnet stage's `params/` folder (jaxtalk's own expert) or a file of published weights (`pretrained_sync_evaluator`: the original SyncNet of Chung &
  Zisserman, or Wav2Lip's expert).

  Raises:
    ValueError: `syncnet_params` or `vgg_weights` given but unreadable (naming the path).
  """
  from jaxtalk.evaluators import identity as identity_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import landmarks as landmarks_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import sync as sync_lib  # pylint: disable=g-import-not-at-top
  kw = dict(perceptual=default_perceptual(vgg_weights))
  try:
    if identity:
      kw["identity"] = identity_lib.IdentityEmbedder()
  except Exception as e:  # pylint: disable=broad-except  # dlib models missing / broken.
    log("identity metric skipped (%s)", e)
  try:
    if landmarks:
      kw["landmarks"] = landmarks_lib.MouthLandmarks()
  except Exception as e:  # pylint: disable=broad-except
    log("mouth-landmark metric skipped (%s)", e)
  if syncnet_params and os.path.isfile(syncnet_params):
    kw["sync"] = pretrained_sync_evaluator(syncnet_params)
  elif syncnet_params:
    from jaxtalk.tasks.posetalk import coarse as coarse_task  # pylint: disable=g-import-not-at-top
    model, params = coarse_task.load_syncnet(syncnet_params)
    kw["sync"] = sync_lib.SyncEvaluator(model, params)
  return kw


# The face crop of syncnet_python (its detector box widened by 0.4 of its half-size sideways and
# below: 1.4x the face, shifted down) in jaxtalk's aligned crops, whose face is the central 1/1.6.
CHUNG_FACE_BOX = (0.0625, 0.1875, 0.9375, 1.0625)


def pretrained_sync_evaluator(path: str):
  """A `sync.SyncEvaluator` over published expert weights at `path`: the original SyncNet
  (`pretrained.chung_syncnet`: converted `.npz`, a state-dict `.npz` or the torch file;
  224 px crops `CHUNG_FACE_BOX`, MFCC audio) when the file holds it, else Wav2Lip's expert
  (`pretrained.wav2lip_syncnet`; 96 px crops of the face box `syncnet.ALIGNED_FACE_BOX`).

  Raises:
    ValueError: an unreadable file or wrong tensors (naming it).
  """
  from jaxtalk.evaluators import sync as sync_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.models import syncnet as syncnet_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.pretrained import chung_syncnet  # pylint: disable=g-import-not-at-top
  from jaxtalk.pretrained import wav2lip_syncnet  # pylint: disable=g-import-not-at-top
  if not path.endswith(".npz") or chung_syncnet.is_state_dict_or_converted(path):
    try:
      model, params = chung_syncnet.load(path)
      return sync_lib.SyncEvaluator(model, params, image_size=224, face_box=CHUNG_FACE_BOX,
                                    audio_features="mfcc", chunk=16)
    except ValueError:
      if path.endswith(".npz"):
        raise
  model, params = wav2lip_syncnet.load(path)
  return sync_lib.SyncEvaluator(model, params, image_size=96,
                                face_box=syncnet_lib.ALIGNED_FACE_BOX)


def read_clips(data_dir: str, *, clip_ids=None, resolution: Optional[int] = None,
               max_frames: Optional[int] = None) -> list[dict]:
  """Whole clips from preprocessed shards, for evaluation on full clips (the training iterator
  gives T-frame windows).

  Args:
    data_dir: directory with `dataset_info.json` and the ArrayRecord shards.
    clip_ids: clip ids to keep (default: all), in the shards' order.
    resolution: resize frames to this size (default: stored resolution).
    max_frames: keep at most this many frames of each clip.

  Returns:
    list of dicts with "clip_id", "speaker", "text", "source_path" (the input video),
    "start_time" (seconds into it), "frames" `[T, R, R, 3]` float32 in [-1, 1],
    "mel" `[T, 16, 80]` float32 (window t centred on frame t), "pose" `[T, 6]` and "gaze"
    `[T, 2]` (raw units: radians; crop-relative tx, ty, scale), "mouth_box" `[T, 4]`, "wav"
    `[T * 640]` float32 16 kHz speech in [-1, 1], "expression" `[T, E]` float32 (only when the
    shards have GoHD's coefficients), "landmarks" `[T, 478, 3]` float32 FaceMesh landmarks in
    crop units (when stored), "av_offset" (the audio-visual offset in frames
    preprocessing estimated BEFORE any re-sync, None if not stored) and "audio_shift" (frames
    the audio was shifted by; the remaining offset is about av_offset - audio_shift).

  Raises:
    ValueError: if the directory has no readable shards or a record cannot be decoded (names
      it).
  """
  out = []
  for clip in iter_clips(data_dir, clip_ids=clip_ids, resolution=resolution,
                         max_frames=max_frames):
    if "error" in clip:
      raise ValueError(f"{data_dir}: {clip['clip_id']}: {clip['error']}")
    out.append(clip)
  if not out:
    raise ValueError(f"{data_dir}: no clips read (clip_ids={clip_ids})")
  return out


def iter_clips(data_dir: str, *, clip_ids=None, resolution: Optional[int] = None,
               max_frames: Optional[int] = None):
  """Yields the clips of `read_clips` one at a time, in the shards' order; a record that cannot
  be read or decoded yields `{"clip_id": its id (or "record <i>"), "error": reason}` instead,
  so a caller can report it and go on.

  Raises:
    ValueError: if `dataset_info.json` or the shards cannot be opened (naming the folder).
  """
  import os  # pylint: disable=g-import-not-at-top
  import grain  # pylint: disable=g-import-not-at-top
  from data_pipelines import schema  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top

  info = input_pipeline.load_dataset_info(data_dir)
  paths = [os.path.join(data_dir, s) for s in info["shards"]]
  source = grain.sources.ArrayRecordDataSource(paths)
  keep = set(clip_ids) if clip_ids is not None else None
  for i in range(len(source)):
    name = f"record {i}"
    try:
      rec = schema.decode_record(source[i], keys=(
        "speaker", "text", "frames", "mel", "pose", "gaze", "mouth_box", "audio", "num_frames",
        "source_path", "start_time", "av_offset", "audio_shift", "expression", "landmarks"))
      name = rec["clip_id"]
      if keep is not None and name not in keep:
        continue
      yield _decode_clip(rec, resolution, max_frames)
    except Exception as e:  # pylint: disable=broad-except  # any unreadable record is reported.
      yield {"clip_id": name, "error": f"{type(e).__name__}: {e}"}


def _decode_clip(rec: dict, resolution: Optional[int], max_frames: Optional[int]) -> dict:
  """One `read_clips` clip from a decoded shard record."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  n = int(rec["num_frames"]) if max_frames is None else min(int(rec["num_frames"]), max_frames)
  frames = []
  for data in rec["frames"][:n]:
    img = input_pipeline.decode_jpeg(data)
    if resolution:
      img = input_pipeline.resize_image(img, resolution)
    frames.append(img)
  out = {
      "clip_id": rec["clip_id"], "speaker": rec.get("speaker", ""), "text": rec.get("text", ""),
      "source_path": rec.get("source_path", ""), "start_time": float(rec.get("start_time", 0.0)),
      "av_offset": rec.get("av_offset"), "audio_shift": int(rec.get("audio_shift", 0)),
      "frames": np.stack(frames).astype(np.float32) / 127.5 - 1.0,
      "mel": audio_lib.mel_windows(np.asarray(rec["mel"], np.float32), n),
      "pose": np.asarray(rec["pose"][:n], np.float32),
      "gaze": np.asarray(rec["gaze"][:n], np.float32),
      "wav": np.asarray(rec["audio"][:n * audio_lib.SAMPLES_PER_FRAME], np.float32) / 32768.0,
      "mouth_box": np.asarray(rec["mouth_box"][:n], np.float32)}
  if rec.get("expression") is not None:  # GoHD's e (`jaxtalk expression-basis` wrote it)
    out["expression"] = np.asarray(rec["expression"][:n], np.float32)
  if rec.get("landmarks") is not None:
    out["landmarks"] = np.asarray(rec["landmarks"][:n], np.float32)
  return out
