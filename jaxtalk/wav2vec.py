"""wav2vec 2.0 speech features (Baevski et al. 2020; PoseTalk's audio condition) from a local folder.

PoseTalk extracts its audio condition with wav2vec 2.0. Weights cannot be downloaded here; users
point `load_wav2vec(path)` to a folder saved with transformers' `save_pretrained`
(`config.json` + `flax_model.msgpack`).

Supported: transformers' `FlaxWav2Vec2Model`, which implements only checkpoints with
`feat_extract_norm="layer"` and `do_stable_layer_norm=True` (wav2vec2-large-lv60, XLSR, ...).
NOT DONE: a Flax port for the group-norm / post-LN checkpoints (wav2vec2-base); `load_wav2vec`
raises `NotImplementedError` naming the setting, and the default audio condition of the PLD
stage stays the log-mel windows with a trainable encoder (`jaxtalk.models.audio_encoder`).

Frame alignment: the feature encoder has a total stride of 320 samples (50 Hz at 16 kHz); feature
j is centred at (j + 0.5) * 0.02 s (approximately; the receptive field is 400 samples). Video frame
t (25 fps) is centred at (t + 0.5) / 25 s, i.e. at feature position 2 t + 0.5; `features_at_fps`
linearly interpolates there (edge-clamped).
"""

from __future__ import annotations

import os
from typing import Optional

import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16000


def load_wav2vec(path: str, dtype=jnp.float32):
  """Loads `FlaxWav2Vec2Model` from a local folder.

  Returns:
    (model, params).

  Raises:
    ValueError: folder without config.json, or the model cannot be loaded.
    NotImplementedError: a checkpoint transformers' Flax model does not implement (group-norm
      feature encoder / post-LN transformer, e.g. wav2vec2-base).
  """
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    raise ValueError(f"wav2vec folder {path!r} has no config.json (save a Wav2Vec2 model there "
                     "with save_pretrained)")
  from transformers import FlaxWav2Vec2Model, Wav2Vec2Config  # pylint: disable=g-import-not-at-top
  cfg = Wav2Vec2Config.from_pretrained(path)
  if cfg.feat_extract_norm != "layer" or not cfg.do_stable_layer_norm:
    raise NotImplementedError(
        f"{path}: feat_extract_norm={cfg.feat_extract_norm!r}, do_stable_layer_norm="
        f"{cfg.do_stable_layer_norm}: transformers' FlaxWav2Vec2Model supports only stable-layer-"
        "norm checkpoints (large-lv60 / XLSR style); the Flax port for other checkpoints is not "
        "implemented in jaxtalk. Use the default log-mel audio condition instead.")
  try:
    model = FlaxWav2Vec2Model.from_pretrained(path, dtype=dtype, local_files_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"could not load FlaxWav2Vec2Model from {path!r}: {e}") from e
  return model, model.params


def normalize_wav(wav: np.ndarray) -> np.ndarray:
  """Zero-mean, unit-variance waveform (what Wav2Vec2FeatureExtractor does), float32."""
  wav = np.asarray(wav, np.float32)
  return (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)


def features_at_fps(feats: np.ndarray, num_frames: int, fps: float = 25.0,
                    feat_rate: float = 50.0) -> np.ndarray:
  """Resamples `[J, C]` features at `feat_rate` Hz to `[num_frames, C]` at `fps` (see docstring)."""
  feats = np.asarray(feats, np.float32)
  pos = (np.arange(num_frames, dtype=np.float64) + 0.5) * feat_rate / fps - 0.5
  pos = np.clip(pos, 0, feats.shape[0] - 1)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, feats.shape[0] - 1)
  w = (pos - lo)[:, None].astype(np.float32)
  return (1 - w) * feats[lo] + w * feats[hi]


def wav2vec_features(model, params, wav: np.ndarray, num_frames: Optional[int] = None,
                     layer: int = -1) -> np.ndarray:
  """Per-video-frame wav2vec 2.0 features.

  Args:
    model, params: from `load_wav2vec`.
    wav: 16 kHz mono float32 samples `[N]` in [-1, 1].
    num_frames: T (default N // 640).
    layer: hidden-state index (-1: last transformer layer; 0: the projected CNN features).

  Returns:
    float32 `[T, C]` at 25 fps.

  Raises:
    ValueError: audio shorter than the 400-sample receptive field.
  """
  wav = np.asarray(wav, np.float32)
  if wav.ndim != 1 or wav.shape[0] < 400:
    raise ValueError(f"wav2vec_features: need mono audio of >= 400 samples, got {wav.shape}")
  t = num_frames if num_frames is not None else wav.shape[0] // 640
  out = model(normalize_wav(wav)[None], params=params, output_hidden_states=True, train=False)
  h = np.asarray(out.hidden_states[layer][0], np.float32)
  return features_at_fps(h, t)
