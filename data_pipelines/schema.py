"""The clip record: one ArrayRecord record per preprocessed clip, and how it is (de)serialised.

A record is a msgpack map (no pickle: it can be read from any language with a msgpack library).
Scalars and strings are stored as msgpack values; arrays are stored as a map
`{"__nd__": True, "dtype": "<numpy dtype str>", "shape": [...], "data": <raw little-endian bytes>}`;
JPEG frames are a list of byte strings. `encode_record` / `decode_record` convert a dict of Python
values and numpy arrays to and from bytes, and `decode_record(..., keys=...)` skips fields that are
not needed (arrays are then never copied out of the buffer).

Fields of a record (schema version `SCHEMA_VERSION`); T = number of 25 fps frames of the clip,
R = crop resolution, N = T * 640 audio samples (16 kHz), M = mel frames (see
`jaxtalk.features.audio`):

  schema_version   int        SCHEMA_VERSION
  clip_id          str        "<video id>_c<k>" (k = clip index inside the video, 3 digits)
  video_id         str        id of the source video (manifest id or file stem)
  source_path      str        input video path as given to the pipeline
  dataset          str        source dataset ("hdtf", "mead", "voxceleb1", "voxceleb2",
                              "celebvtext", or whatever the manifest says)
  speaker          str        speaker / identity id ("" if unknown)
  emotion          str        one of EMOTIONS ("neutral" when unknown)
  emotion_intensity int       MEAD intensity level 1-3 (0 if unknown)
  view             str        MEAD camera view ("front", "left_30", ...; "" if unknown)
  text             str        free-text description of the head motion ("" if none)
  fps              int        25
  start_time       float      seconds: time of frame 0 in the source video (from its first frame)
  num_frames       int        T
  resolution       int        R
  frames           list[bytes] T JPEG images, R x R RGB, the aligned face crop
  crop_box         [T, 4] float32  (x0, y0, x1, y1) of the square crop in source-video pixels
                              (may extend outside the frame; outside pixels are edge-replicated)
  landmarks        [T, 478, 3] float16  mediapipe FaceMesh landmarks (468 face + 10 iris points,
                              `refine_landmarks=True`) in crop coordinates: x, y in [0, 1] of the
                              crop (may leave [0, 1] slightly); z in the same unit as x (crop
                              widths), relative to the face centre, negative towards the camera.
                              `jaxtalk.features.face.LANDMARKS_68` picks the iBUG-68-like subset.
  face_found       [T] bool   False where the face was interpolated over a short detection gap
  pose             [T, 6] float32  (yaw, pitch, roll) radians, (tx, ty, scale) crop-relative,
                              temporally smoothed (see `jaxtalk.features.face.head_pose`)
  gaze             [T, 2] float32  (pitch, yaw) radians of the eyes relative to the head
                              (see `jaxtalk.features.face.gaze`)
  mouth_box        [T, 4] float32  (x0, y0, x1, y1) in [0, 1] crop coordinates
  audio            [N] int16  16 kHz mono PCM, sample n at time start_time + n / 16000 (plus
                              audio_shift / 25 if the audio was re-synchronised, below)
  mel              [M, 80] float16  log-mel (Wav2Lip parameters) of `audio`, in [-4, 4];
                              mel frame m is centred on audio sample 200 * m
  wav2vec          [T, C] float16  optional: wav2vec 2.0 features at 25 fps (only with
                              `--wav2vec_path`, see `jaxtalk.features.audio.Wav2Vec2Features`)
  text_embedding   [D] float16  optional: pooled CLIP text embedding of `text` (only with
                              `--clip_path`)
  num_faces_max    int        most faces seen in one frame (the largest one is kept)
  notes            list[str]  warnings about this clip (e.g. several faces, an audio shift)
  av_offset        int        optional: audio-visual offset estimated on the source's alignment,
                              video frames; > 0: the audio lags the lips (`av_sync.py`)
  av_confidence    float      optional: its confidence (z-score of the peak correlation, >= 0)
  audio_shift      int        optional: frames the audio was shifted by `--sync_audio` (0: none):
                              `audio`, `mel` and `wav2vec` come from the source's audio starting
                              at start_time + audio_shift / 25 s (so audio sample n is at source
                              time start_time + audio_shift / 25 + n / 16000); absent = 0.
  expression       [T, K] float32  optional: expression coefficients e_t, GoHD's e (K = 64, the
                              default), one row per frame, raw units (not normalised). Where
                              they come from is `expression_source`:
                              "facemesh_pca:v<V>:<fingerprint>": the FaceMesh PCA substitute for
                              BFM (`jaxtalk.features.expression`, basis format version V, basis
                              `expression.fingerprint`), unit inter-ocular distance, written into
                              the shards by `jaxtalk expression-basis` (`expression_pass.py`);
                              "deep3dfacerecon": imported BFM expression coefficients (`exp` of a
                              Deep3DFaceRecon file named by the manifest's `coefficients`), the
                              source-video frame shown by each 25 fps frame
                              (`pipeline.load_coefficients`).
  eye_features     [T, 21] float32  optional: GoHD's eye-motion features f_t (Fig. 4: blink ratio
                              ⊕ the ten brow points' (x, y) displacements, IOD) computed from
                              `expression` with the basis
                              (`expression.eye_features_from_coefficients`). Only for
                              "facemesh_pca": from Deep3DFaceRecon coefficients f needs BFM's mesh,
                              which jaxtalk cannot ship, so such records have no eye_features.
  pose_3dmm        [T, 6] float32  optional, "deep3dfacerecon" records whose file has both `angle`
                              and `trans`: Deep3DFaceRecon's rotation angles (3, radians, its own
                              Euler convention) ⊕ its translation (3, its camera-space units), as
                              imported for the same frames as `expression`. Stored for reference
                              only: it is not the `pose` convention and no stage reads it.
  expression_source str       optional (present with `expression`): see `expression`.

Version history: 1 -> 2 (issue 16, GoHD): the optional expression, eye_features, pose_3dmm and
expression_source fields. Readers refuse every other version (`check_schema_version`): shards of
version 1 are rebuilt by re-running `jaxtalk preprocess` (then `jaxtalk expression-basis` for e
and f). The optional audio-visual scalars were added within version 1; readers ignore fields they
do not know.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import msgpack
import numpy as np

from jaxtalk.features.audio import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME  # pylint: disable=g-importing-member

SCHEMA_VERSION = 2

NUM_MELS = 80
NUM_LANDMARKS = 478

# MEAD's eight emotions; index = the `emotion` int in batches. Unknown emotions map to "neutral".
EMOTIONS = ("neutral", "angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")

# Aliases used by MEAD folder names and other datasets' labels.
_EMOTION_ALIASES = {
  "disgust": "disgusted", "surprise": "surprised", "fearful": "fear", "anger": "angry",
  "happiness": "happy", "sadness": "sad", "calm": "neutral", "": "neutral",
}

REQUIRED_FIELDS = (
  "schema_version", "clip_id", "video_id", "source_path", "dataset", "speaker", "emotion",
  "emotion_intensity", "view", "text", "fps", "start_time", "num_frames", "resolution", "frames",
  "crop_box", "landmarks", "face_found", "pose", "gaze", "mouth_box", "audio", "mel",
  "num_faces_max", "notes",
)

# Expected dtype and trailing shape of each array field (leading dim T, N or M).
ARRAY_FIELDS = {
  "crop_box": (np.float32, (4,)),
  "landmarks": (np.float16, (NUM_LANDMARKS, 3)),
  "face_found": (np.bool_, ()),
  "pose": (np.float32, (6,)),
  "gaze": (np.float32, (2,)),
  "mouth_box": (np.float32, (4,)),
  "audio": (np.int16, ()),
  "mel": (np.float16, (NUM_MELS,)),
}


# Optional fields: dtype and rank (rank-2 fields have one row per frame).
OPTIONAL_FIELDS = {
  "wav2vec": (np.float16, 2),
  "text_embedding": (np.float16, 1),
  "expression": (np.float32, 2),
  "eye_features": (np.float32, 2),
  "pose_3dmm": (np.float32, 2),
}

# Trailing dimension of the optional fields that have a fixed one.
OPTIONAL_FIELD_DIMS = {"eye_features": 21, "pose_3dmm": 6}

# Optional scalar fields: Python type (audio-visual sync, `data_pipelines/av_sync.py`; the
# expression's origin).
OPTIONAL_SCALARS = {
  "av_offset": int,
  "av_confidence": float,
  "audio_shift": int,
  "expression_source": str,
}

# `expression_source` values: the FaceMesh basis (followed by ":v<version>:<fingerprint>") and
# imported Deep3DFaceRecon coefficients.
FACEMESH_PCA = "facemesh_pca"
DEEP3DFACERECON = "deep3dfacerecon"


def emotion_name(label: Optional[str]) -> str:
  """Maps a dataset's emotion label to one of `EMOTIONS` (case-insensitive).

  Raises:
    ValueError: if the label is not an emotion jaxtalk knows.
  """
  name = (label or "").strip().lower()
  name = _EMOTION_ALIASES.get(name, name)
  if name not in EMOTIONS:
    raise ValueError(f"unknown emotion {label!r}; known: {EMOTIONS}")
  return name


def emotion_index(label: Optional[str]) -> int:
  return EMOTIONS.index(emotion_name(label))


def _pack_default(obj):
  if isinstance(obj, np.ndarray):
    arr = np.ascontiguousarray(obj)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    return {"__nd__": True, "dtype": dtype.str, "shape": list(arr.shape),
            "data": arr.astype(dtype, copy=False).tobytes()}
  if isinstance(obj, np.generic):
    return obj.item()
  raise TypeError(f"cannot serialise {type(obj).__name__} in a clip record")


def _unpack_hook(obj):
  if obj.get("__nd__"):
    return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
  return obj


def check_schema_version(version: Any, where: str) -> None:
  """Raises a ValueError naming `where` and the fix unless `version` is `SCHEMA_VERSION`.

  Args:
    version: the `schema_version` of a record or of dataset_info.json.
    where: what it was read from ("clip record", "<dir>/dataset_info.json", ...).
  """
  if version == SCHEMA_VERSION:
    return
  if isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION:
    raise ValueError(
        f"{where}: schema_version {version}, this code reads {SCHEMA_VERSION} (version 2 added "
        "the GoHD expression fields); rebuild the shards: re-run `jaxtalk preprocess` (then "
        "`jaxtalk expression-basis --data_dir DIR` for the expression coefficients)")
  raise ValueError(f"{where}: schema_version {version!r}, this code reads {SCHEMA_VERSION} "
                   "(written by another jaxtalk version?); re-run `jaxtalk preprocess`")


def _bad_type(value, kind) -> bool:
  if kind is str:
    return not isinstance(value, str)
  return isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int)


def _validate_optional(record: Mapping[str, Any], t: int) -> None:
  """The optional fields' dtypes, ranks, rows (T) and fixed trailing dims, and their pairing
  (eye_features and expression_source go with expression)."""
  cid = record["clip_id"]
  for name, (dtype, rank) in OPTIONAL_FIELDS.items():
    if name not in record:
      continue
    arr = record[name]
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != rank:
      raise ValueError(f"clip {cid}: optional field {name} should be {np.dtype(dtype).name} of "
                       f"rank {rank}, got {getattr(arr, 'dtype', type(arr))} "
                       f"{getattr(arr, 'shape', '')}")
    if rank == 2 and arr.shape[0] != t:
      raise ValueError(f"clip {cid}: {name} has {arr.shape[0]} rows, expected {t}")
    dim = OPTIONAL_FIELD_DIMS.get(name)
    if dim is not None and arr.shape[-1] != dim:
      raise ValueError(f"clip {cid}: {name} should be [{t}, {dim}], got {list(arr.shape)}")
  for name, kind in OPTIONAL_SCALARS.items():
    if name in record and _bad_type(record[name], kind):
      raise ValueError(f"clip {cid}: optional field {name} should be {kind.__name__}, got "
                       f"{type(record[name]).__name__}")
  has_exp = "expression" in record
  if has_exp != ("expression_source" in record):
    raise ValueError(f"clip {cid}: expression and expression_source go together (got only "
                     f"{'expression' if has_exp else 'expression_source'})")
  for name in ("eye_features", "pose_3dmm"):
    if name in record and not has_exp:
      raise ValueError(f"clip {cid}: {name} without expression")


def validate_record(record: Mapping[str, Any]) -> None:
  """Checks that `record` has every field with consistent shapes and dtypes.

  Raises:
    ValueError: naming the first missing or malformed field (a record of another schema version
      names the fix, `check_schema_version`).
  """
  missing = [k for k in REQUIRED_FIELDS if k not in record]
  if missing:
    raise ValueError(f"clip record missing fields {missing}")
  check_schema_version(record["schema_version"], f"clip record {record['clip_id']}")
  t = int(record["num_frames"])
  if len(record["frames"]) != t:
    raise ValueError(f"clip {record['clip_id']}: {len(record['frames'])} frames, num_frames={t}")
  for name, (dtype, tail) in ARRAY_FIELDS.items():
    arr = record[name]
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.shape[1:] != tail:
      raise ValueError(
          f"clip {record['clip_id']}: field {name} should be {np.dtype(dtype).name}[*, "
          f"{tail}], got {getattr(arr, 'dtype', type(arr))} {getattr(arr, 'shape', '')}")
  for name in ("crop_box", "landmarks", "face_found", "pose", "gaze", "mouth_box"):
    if record[name].shape[0] != t:
      raise ValueError(f"clip {record['clip_id']}: {name} has {record[name].shape[0]} rows, "
                       f"expected {t}")
  _validate_optional(record, t)
  if record["audio"].shape[0] != t * SAMPLES_PER_FRAME:
    raise ValueError(f"clip {record['clip_id']}: audio has {record['audio'].shape[0]} samples, "
                     f"expected {t * SAMPLES_PER_FRAME}")


def encode_record(record: Mapping[str, Any], *, validate: bool = True) -> bytes:
  """Serialises a clip record (see module docstring) to msgpack bytes (keys sorted)."""
  if validate:
    validate_record(record)
  return msgpack.packb(dict(sorted(record.items())), default=_pack_default, use_bin_type=True)


def decode_record(data: bytes, keys: Optional[Iterable[str]] = None) -> dict[str, Any]:
  """Inverse of `encode_record`. Arrays are read-only views of `data`.

  Args:
    data: bytes from `encode_record`.
    keys: if given, only these fields (plus schema_version and clip_id) are returned.

  Raises:
    ValueError: if the bytes are not a clip record, or one of another schema version (naming the
      fix: re-run `jaxtalk preprocess`, `check_schema_version`).
  """
  try:
    record = msgpack.unpackb(data, object_hook=_unpack_hook, raw=False)
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises several types.
    raise ValueError(f"not a jaxtalk clip record ({type(e).__name__}: {e})") from e
  if not isinstance(record, dict):
    raise ValueError(f"not a jaxtalk clip record (a msgpack {type(record).__name__})")
  check_schema_version(record.get("schema_version"),
                       f"clip record {record.get('clip_id', '?')}")
  if keys is not None:
    keep = set(keys) | {"schema_version", "clip_id"}
    record = {k: v for k, v in record.items() if k in keep}
  return record
