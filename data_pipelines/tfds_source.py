"""A TensorFlow Datasets view of the preprocessed clips (no TensorFlow needed).

`JaxtalkClips` is a TFDS `GeneratorBasedBuilder` whose examples are the clip records of a
`jaxtalk preprocess` output directory (one example per clip: the required array fields and the
clip's metadata of `schema.py`, frames as a sequence of JPEG images; the optional fields, e.g.
wav2vec or the GoHD expression coefficients, are not part of this view). It is prepared with `file_format="array_record"`, which TFDS
supports without TensorFlow, and read with `as_data_source()` (random access, decoded numpy):

  source = tfds_source.data_source("/data/shards", "/data/tfds")   # {"train": ..., "eval": ...}
  example = source["train"][0]   # {"frames": [T x uint8 [R, R, 3]], "pose": float32 [T, 6], ...}

The dataset version is the schema version (`schema.SCHEMA_VERSION`.0.0); shards of another
schema version are refused with the fix (re-run `jaxtalk preprocess`).

Splits: "train" and "eval" as chosen by `jaxtalk.core.input_pipeline.split_clips` (the deterministic
clip-id hash, or `holdout` ids). Preparing copies the data once into TFDS's own ArrayRecord
layout under `tfds_dir`; jaxtalk's own training reads the original shards directly with grain.
"""

from __future__ import annotations

import functools
import os
from typing import Optional, Sequence

import numpy as np

from data_pipelines import schema


@functools.lru_cache(maxsize=None)
def _builder_class():
  """The builder class, defined once per process (TFDS refuses to register a name twice)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class JaxtalkClips(tfds.core.GeneratorBasedBuilder):
    """Clip records of a jaxtalk preprocessing run (see module docstring)."""

    VERSION = tfds.core.Version(f"{schema.SCHEMA_VERSION}.0.0")
    RELEASE_NOTES = {f"{schema.SCHEMA_VERSION}.0.0": "jaxtalk clip schema "
                                                     f"v{schema.SCHEMA_VERSION}"}
    # No download checksums to look up (TFDS would locate them via importlib_resources, which
    # tensorflow-datasets 4.9.10 uses without declaring it).
    code_path = None

    def __init__(self, *, shards_dir: Optional[str] = None, holdout: Sequence[str] = (),
                 eval_fraction: float = 0.2, **kwargs):
      self.shards_dir = shards_dir
      self.holdout = tuple(holdout)
      self.eval_fraction = eval_fraction
      super().__init__(**kwargs)

    def _info(self):
      f = tfds.features
      t = lambda shape, dtype: f.Tensor(shape=shape, dtype=dtype)  # pylint: disable=unnecessary-lambda-assignment
      return tfds.core.DatasetInfo(
          builder=self,
          description=__doc__,
          features=f.FeaturesDict({
              "clip_id": f.Text(), "video_id": f.Text(), "source_path": f.Text(),
              "dataset": f.Text(), "speaker": f.Text(), "text": f.Text(), "view": f.Text(),
              "emotion": f.ClassLabel(names=list(schema.EMOTIONS)),
              "emotion_intensity": t((), np.int32),
              "start_time": t((), np.float32),
              "num_frames": t((), np.int32),
              "frames": f.Sequence(f.Image(shape=(None, None, 3), encoding_format="jpeg")),
              "crop_box": t((None, 4), np.float32),
              "landmarks": t((None, schema.NUM_LANDMARKS, 3), np.float16),
              "face_found": t((None,), np.bool_),
              "pose": t((None, 6), np.float32),
              "gaze": t((None, 2), np.float32),
              "mouth_box": t((None, 4), np.float32),
              "audio": t((None,), np.int16),
              "mel": t((None, schema.NUM_MELS), np.float16),
          }),
          supervised_keys=None,
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
      if not self.shards_dir:
        raise ValueError("JaxtalkClips needs shards_dir= (a `jaxtalk preprocess` output)")
      info = input_pipeline.load_dataset_info(self.shards_dir)
      schema.check_schema_version(info.get("schema_version"),
                                  os.path.join(self.shards_dir, "dataset_info.json"))
      train, ev = input_pipeline.split_clips(info, self.holdout, self.eval_fraction)
      return {"train": self._generate_examples(info, train),
              "eval": self._generate_examples(info, ev)}

    def _generate_examples(self, info=None, indices=()):
      from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
      src = array_record_data_source.ArrayRecordDataSource(
          [os.path.join(self.shards_dir, s) for s in info["shards"]])
      for i in indices:
        r = schema.decode_record(src[i])
        yield r["clip_id"], {
            "clip_id": r["clip_id"], "video_id": r["video_id"], "source_path": r["source_path"],
            "dataset": r["dataset"], "speaker": r["speaker"], "text": r["text"],
            "view": r["view"], "emotion": r["emotion"],
            "emotion_intensity": np.int32(r["emotion_intensity"]),
            "start_time": np.float32(r["start_time"]), "num_frames": np.int32(r["num_frames"]),
            "frames": list(r["frames"]),
            **{k: np.asarray(r[k]) for k in ("crop_box", "landmarks", "face_found", "pose",
                                            "gaze", "mouth_box", "audio", "mel")},
        }

  return JaxtalkClips


def builder(shards_dir: str, tfds_dir: str, **kwargs):
  """The TFDS builder over `shards_dir`, storing its prepared copy under `tfds_dir`."""
  cls = _builder_class()
  return cls(shards_dir=shards_dir, data_dir=tfds_dir, file_format="array_record", **kwargs)


def data_source(shards_dir: str, tfds_dir: str, **kwargs) -> dict:
  """Prepares (once) and returns `{"train": source, "eval": source}` random-access sources."""
  b = builder(shards_dir, tfds_dir, **kwargs)
  b.download_and_prepare()
  return b.as_data_source()

