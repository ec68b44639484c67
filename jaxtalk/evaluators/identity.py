"""Identity preservation: cosine similarity of face-identity embeddings (PoseTalk's IP score).

PoseTalk uses an ArcFace backbone; no ArcFace weights ship offline here, so jaxtalk uses dlib's
128-d ResNet face-recognition embedding (`dlib_face_recognition_resnet_model_v1.dat` from the
`face-recognition-models` package; 99.38% on LFW), which is a different network: the scores rank
methods the same way in spirit but are not numerically comparable with the paper's IP column.

Per image: RGB uint8, upscaled so its short side is >= `min_size` (aligned 64-256 px crops are
small for dlib), dlib's HOG frontal face detector; if it finds no face the whole image is taken
as the face box (jaxtalk frames are aligned face crops), and `aux["detected"]` says so; then
dlib's 5-point shape predictor and the ResNet give the 128-d descriptor.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import numpy as np

MODEL_FILES = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")


def models_dir() -> str:
  """Folder of face-recognition-models' `.dat` files (its `__init__` needs pkg_resources, so it is
  located without importing it).

  Raises:
    ValueError: if the package or the files are missing.
  """
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("identity metric needs `pip install face-recognition-models==0.3.0` "
                     "(dlib model files)")
  path = os.path.join(list(spec.submodule_search_locations)[0], "models")
  for f in MODEL_FILES:
    if not os.path.isfile(os.path.join(path, f)):
      raise ValueError(f"{os.path.join(path, f)}: dlib model file missing")
  return path


def to_uint8(image) -> np.ndarray:
  """`[H, W, 3]` uint8, or float in [-1, 1] -> uint8 RGB (contiguous)."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected an RGB image [H, W, 3], got {image.shape}")
  if image.dtype != np.uint8:
    image = np.clip((image.astype(np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  return np.ascontiguousarray(image)


class IdentityEmbedder:
  """dlib 128-d face embeddings.

  Attributes:
    min_size: images are upscaled (bilinear) so that their short side is at least this.
  """

  def __init__(self, min_size: int = 256, model_dir: Optional[str] = None):
    import dlib  # pylint: disable=g-import-not-at-top
    path = model_dir or models_dir()
    self._dlib = dlib
    self._detector = dlib.get_frontal_face_detector()
    self._shape = dlib.shape_predictor(os.path.join(path, MODEL_FILES[0]))
    self._rec = dlib.face_recognition_model_v1(os.path.join(path, MODEL_FILES[1]))
    self.min_size = int(min_size)

  def embed(self, image) -> tuple[np.ndarray, bool]:
    """image `[H, W, 3]` (uint8 or float in [-1, 1]) -> (float32 `[128]`, face detected?)."""
    img = to_uint8(image)
    h, w = img.shape[:2]
    if min(h, w) < self.min_size:
      import cv2  # pylint: disable=g-import-not-at-top
      s = self.min_size / min(h, w)
      img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
      h, w = img.shape[:2]
    dets = self._detector(img, 0)
    detected = len(dets) > 0
    if detected:
      box = max(dets, key=lambda r: r.width() * r.height())
    else:
      box = self._dlib.rectangle(0, 0, w - 1, h - 1)
    shape = self._shape(img, box)
    return np.asarray(self._rec.compute_face_descriptor(img, shape), np.float32), detected

  def embed_many(self, images) -> tuple[np.ndarray, np.ndarray]:
    """`[N, H, W, 3]` -> (`[N, 128]`, detected `[N]` bool)."""
    out = [self.embed(im) for im in images]
    return np.stack([e for e, _ in out]), np.array([d for _, d in out])


def cosine(a, b) -> np.ndarray:
  """Cosine similarity over the last axis (broadcasting)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1),
                                        1e-12)


def identity_similarity(embedder: IdentityEmbedder, source, frames) -> dict:
  """IP score: mean cosine similarity between the source portrait and each generated frame.

  Args:
    source: `[H, W, 3]`; frames: `[T, H, W, 3]` (uint8 or float in [-1, 1]).

  Returns:
    {"identity": mean cosine, "per_frame": [T], "detected_fraction": fraction of frames (and the
    source counted separately under "source_detected") where dlib's detector found a face}.
  """
  src, src_det = embedder.embed(source)
  emb, det = embedder.embed_many(frames)
  sims = cosine(emb, src[None])
  return {"identity": float(np.mean(sims)), "per_frame": sims,
          "detected_fraction": float(np.mean(det)), "source_detected": bool(src_det)}
