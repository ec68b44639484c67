"""Synthetic clip records with moving FaceMesh landmarks, written as shards + dataset_info.json the
way `pipeline.preprocess` writes them (tests of the schema, the expression pass and the input
pipeline's expression keys; no real data needed)."""

import json
import os

import numpy as np

from data_pipelines import pipeline
from data_pipelines import schema
from jaxtalk.features import audio as audio_lib
from jaxtalk.features import expression as ex


def _jpeg() -> bytes:
  import cv2  # pylint: disable=g-import-not-at-top
  return cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def landmarks(rng, frames: int) -> np.ndarray:
  """`[T, 478, 3]` float16 crop-coordinate landmarks of a talking, blinking synthetic face: the
  synthetic basis' mesh with its own identity offset and e, under a slowly moving pose."""
  basis = ex.synthetic_basis()
  opening = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * np.arange(frames) / 25), 0, 1)
  e = ex.synthetic_coefficients(rng, opening, basis)
  mesh = ex.expression_mesh(basis, e) + 0.01 * rng.normal(size=(1, ex.NUM_LANDMARKS, 3))
  yaw = 0.1 * np.sin(np.arange(frames) / 20 + rng.uniform(0, 6))
  c, s = np.cos(yaw), np.sin(yaw)
  rot = np.zeros((frames, 3, 3))
  rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, s, 1, -s, c
  posed = 0.3 * np.einsum("tij,tpj->tpi", rot, mesh) + np.array([0.5, 0.45, 0.0])
  return posed.astype(np.float16)


def record(clip_id: str, frames: int, rng, version: int = schema.SCHEMA_VERSION, **extra) -> dict:
  """One valid clip record (`schema.py`) of `frames` 8 px frames."""
  pcm = audio_lib.to_int16(0.1 * rng.standard_normal(frames * audio_lib.SAMPLES_PER_FRAME))
  rec = dict(
      schema_version=version, clip_id=clip_id, video_id=clip_id.rsplit("_c", 1)[0],
      source_path=f"{clip_id}.mp4", dataset="synthetic", speaker=clip_id[:2], emotion="neutral",
      emotion_intensity=0, view="", text="", fps=25, start_time=0.0, num_frames=frames,
      resolution=8, frames=[_jpeg()] * frames, crop_box=np.zeros((frames, 4), np.float32),
      landmarks=landmarks(rng, frames), face_found=np.ones(frames, bool),
      pose=(0.05 * rng.standard_normal((frames, 6))).astype(np.float32),
      gaze=(0.05 * rng.standard_normal((frames, 2))).astype(np.float32),
      mouth_box=np.tile(np.float32([0.3, 0.6, 0.7, 0.8]), (frames, 1)), audio=pcm,
      mel=audio_lib.log_mel(audio_lib.from_int16(pcm)).astype(np.float16), num_faces_max=1,
      notes=[])
  rec.update(extra)
  return rec


def write_shards(out, records, num_shards: int = 2, validate: bool = True) -> dict:
  """Writes `records` into shards of `out` (by `pipeline.shard_of`) + dataset_info.json; returns
  the dataset_info dict."""
  os.makedirs(out, exist_ok=True)
  shards = {}
  for r in records:
    shards.setdefault(pipeline.shard_of(r["clip_id"], num_shards), []).append(r)
  summaries = []
  for k, recs in sorted(shards.items()):
    name = pipeline.shard_name(k, num_shards)
    recs.sort(key=lambda r: r["clip_id"])
    pipeline.write_shard(os.path.join(out, name),
                         [schema.encode_record(r, validate=validate) for r in recs])
    summaries.append((name, [pipeline.clip_summary(r) for r in recs]))
  info = pipeline.dataset_info(summaries, [], pipeline.Options(resolution=8))
  info["schema_version"] = records[0]["schema_version"]
  with open(os.path.join(out, pipeline.DATASET_INFO), "w") as f:
    json.dump(info, f)
  return info


def read_records(out) -> dict:
  """{clip_id: record} of every shard listed in `out`'s dataset_info.json."""
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  with open(os.path.join(out, pipeline.DATASET_INFO)) as f:
    info = json.load(f)
  src = array_record_data_source.ArrayRecordDataSource(
      [os.path.join(out, s) for s in info["shards"]])
  return {r["clip_id"]: r for r in (schema.decode_record(src[i]) for i in range(len(src)))}
