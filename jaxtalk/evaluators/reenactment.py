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


def _frame_metrics(fns: dict, source, pred, target) -> dict[str, list[float]]:
  """Per-frame metrics of one clip's valid frames (see module docstring) with the jitted /
  optional metric functions of `evaluate_reenactment`."""
  from jaxtalk.evaluators import identity as identity_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import landmarks as landmarks_lib  # pylint: disable=g-import-not-at-top
  out = {"ssim": np.asarray(fns["ssim"](pred, target)).tolist(),
         "psnr": np.asarray(fns["psnr"](pred, target)).tolist()}
  if fns["mouth_box"] is not None:
    out["mouth_l1"] = np.asarray(fns["mouth"](pred, target, fns["mouth_box"])).tolist()
  if fns["lpips"] is not None:
    out["lpips"] = np.asarray(fns["lpips"](pred, target)).tolist()
  if fns["identity"] is not None:
    r = identity_lib.identity_similarity(fns["identity"], source, pred)
    out["identity"] = np.asarray(r["per_frame"]).tolist()
  if fns["landmarks"] is not None:
    r = landmarks_lib.mouth_lmd(fns["landmarks"], pred, target)
    out["lmd"] = [x for x in r["per_frame"] if not math.isnan(x)]
  return out


def evaluate_reenactment(render_fn: Callable, clips: Iterable[Mapping[str, np.ndarray]], *,
                         perceptual: Optional[tuple] = None, identity=None, landmarks=None,
                         sync=None, max_batches: Optional[int] = None) -> dict:
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

  Returns:
    dict with the `COLUMNS` keys present (float), plus "num_clips", "num_frames",
    "lpips_backbone", "gt_lse_c"/"gt_lse_d" (the real clips' own sync scores, for reference).

  Raises:
    ValueError: if render_fn returns the wrong shape.
  """
  frame_metrics = {"ssim": [], "psnr": [], "lpips": [], "identity": [], "lmd": [],
                   "mouth_l1": []}
  clip_metrics = {"lse_c": [], "lse_d": [], "gt_lse_c": [], "gt_lse_d": []}
  num_clips = num_frames = 0
  fns = dict(ssim=jax.jit(image_lib.ssim), psnr=jax.jit(image_lib.psnr),
             mouth=jax.jit(mouth_region_l1), identity=identity, landmarks=landmarks,
             lpips=None)
  if perceptual is not None:
    net, pparams = perceptual
    lpips = jax.jit(lambda p, a, b: image_lib.perceptual_distance(a, b, net=net, params=p))
    fns["lpips"] = functools.partial(lpips, pparams)

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
      valid = np.nonzero(mask[j])[0]
      valid = valid[valid > 0]
      if valid.size == 0:
        continue
      num_clips += 1
      num_frames += valid.size
      p, g = pred[j, valid], frames[j, valid]
      fns["mouth_box"] = batch["mouth_box"][j, valid] if "mouth_box" in batch else None
      for k, v in _frame_metrics(fns, source[j], p, g).items():
        frame_metrics[k].extend(v)
      if sync is not None and "mel" in batch and mask[j].sum() >= 5:
        n = int(mask[j].sum())
        for prefix, video in (("", pred[j, :n]), ("gt_", frames[j, :n])):
          s = sync(video, batch["mel"][j, :n])
          clip_metrics[prefix + "lse_c"].append(s["lse_c"])
          clip_metrics[prefix + "lse_d"].append(s["lse_d"])

  out = {k: float(np.mean(v)) for k, v in {**frame_metrics, **clip_metrics}.items() if v}
  out.update(num_clips=num_clips, num_frames=num_frames)
  if perceptual is not None:
    out["lpips_backbone"] = image_lib.backbone_name(perceptual[0])
  return out


def model_render_fn(model) -> Callable:
  """The `render_fn` (module docstring) of a loaded model (`jaxtalk.methods`: a bundle, or a
  method's `stage_model`): each clip's own raw pose and gaze as its `Motion`, rendered by
  `model.render_motion` with the clip's mel windows and the source frame's pose."""
  from jaxtalk import motion as motion_lib  # pylint: disable=g-import-not-at-top

  def render_fn(source, batch):
    out = []
    for b in range(source.shape[0]):
      motion = motion_lib.Motion(pose=batch["pose"][b:b + 1], gaze=batch["gaze"][b:b + 1])
      out.append(model.render_motion(source[b], motion, mel=batch["mel"][b],
                                     source_pose=batch["source_pose"][b]))
    return np.stack(out)
  return render_fn


def clip_batches(clips: list[dict]):
  """One batch `[1, T, ...]` per clip of `read_clips` (the layout `evaluate_reenactment` reads)."""
  for c in clips:
    yield {k: c[k][None] for k in ("frames", "mel", "pose", "gaze", "mouth_box")}


def _frames_from(clip: dict, start: int, count: int) -> dict:
  """Frames `start .. start + count - 1` of a `read_clips` clip (every per-frame field)."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  out = dict(clip)
  for k in ("frames", "mel", "pose", "gaze", "mouth_box"):
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
    `[T * 640]` float32 16 kHz speech in [-1, 1], "av_offset" (the audio-visual offset in frames
    preprocessing estimated BEFORE any re-sync, None if not stored) and "audio_shift" (frames
    the audio was shifted by; the remaining offset is about av_offset - audio_shift).

  Raises:
    ValueError: if the directory has no readable shards (names it).
  """
  import os  # pylint: disable=g-import-not-at-top
  import grain  # pylint: disable=g-import-not-at-top
  from data_pipelines import schema  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top

  info = input_pipeline.load_dataset_info(data_dir)
  paths = [os.path.join(data_dir, s) for s in info["shards"]]
  source = grain.sources.ArrayRecordDataSource(paths)
  keep = set(clip_ids) if clip_ids is not None else None
  out = []
  for i in range(len(source)):
    rec = schema.decode_record(source[i], keys=(
      "speaker", "text", "frames", "mel", "pose", "gaze", "mouth_box", "audio", "num_frames",
      "source_path", "start_time", "av_offset", "audio_shift"))
    if keep is not None and rec["clip_id"] not in keep:
      continue
    n = int(rec["num_frames"]) if max_frames is None else min(int(rec["num_frames"]), max_frames)
    frames = []
    for data in rec["frames"][:n]:
      img = input_pipeline.decode_jpeg(data)
      if resolution:
        img = input_pipeline.resize_image(img, resolution)
      frames.append(img)
    out.append({
      "clip_id": rec["clip_id"], "speaker": rec.get("speaker", ""), "text": rec.get("text", ""),
      "source_path": rec.get("source_path", ""), "start_time": float(rec.get("start_time", 0.0)),
      "av_offset": rec.get("av_offset"), "audio_shift": int(rec.get("audio_shift", 0)),
      "frames": np.stack(frames).astype(np.float32) / 127.5 - 1.0,
      "mel": audio_lib.mel_windows(np.asarray(rec["mel"], np.float32), n),
      "pose": np.asarray(rec["pose"][:n], np.float32),
      "gaze": np.asarray(rec["gaze"][:n], np.float32),
      "wav": np.asarray(rec["audio"][:n * audio_lib.SAMPLES_PER_FRAME], np.float32) / 32768.0,
      "mouth_box": np.asarray(rec["mouth_box"][:n], np.float32)})
  if not out:
    raise ValueError(f"{data_dir}: no clips read (clip_ids={clip_ids})")
  return out
