"""Trainable audio encoders for the pose denoiser's audio condition (PoseTalk "Pose Generation").

PoseTalk extracts audio features with wav2vec 2.0 (Baevski et al. 2020). Without a local
wav2vec checkpoint the default is the per-frame log-mel window of the batch (`mel [B, T, 16, 80]`,
Wav2Lip parameters, centred on each video frame) through `MelAudioEncoder`, trained with the
denoiser. With precomputed wav2vec features (`jaxtalk.features.wav2vec`, `[B, T, C]` at 25 fps),
`FeatureAudioEncoder` projects them instead.

Both return `(tokens [B, T, D], pooled [B, D])` (one token per video frame; pooled = masked mean).
"""

from __future__ import annotations

from typing import Any

from flax import linen as nn
import jax.numpy as jnp

from jaxtalk.models import layers

Dtype = Any


def masked_mean(tokens, mask):
  """Mean of `tokens [B, L, D]` over valid positions (`mask [B, L]` bool or None), float32."""
  t = tokens.astype(jnp.float32)
  if mask is None:
    return jnp.mean(t, axis=1)
  w = mask.astype(jnp.float32)[..., None]
  return jnp.sum(t * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


class MelAudioEncoder(nn.Module):
  """Per-frame log-mel windows -> per-frame audio tokens.

  Each 16 x 80 window (0.2 s centred on the frame) goes through two strided 2-D convolutions
  (time x mel), is flattened and projected to `width`; a temporal depthwise-separable conv
  (kernel 5) then mixes neighbouring frames.

  Attributes:
    width: D, output token width.
    channels: conv channels.
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    mel: `[B, T, 16, 80]` float32 log-mel windows. mask: optional `[B, T]` bool.

  Returns:
    (tokens `[B, T, D]` in dtype, pooled `[B, D]` float32).
  """
  width: int = 256
  channels: int = 32
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, mel, mask=None, *, train: bool = False):
    del train
    if mel.ndim != 4:
      raise ValueError(f"MelAudioEncoder: expected mel [B, T, 16, 80], got {mel.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, t, s, m = mel.shape
    x = mel.reshape(b * t, s, m, 1).astype(self.dtype)
    x = nn.silu(layers.Conv(self.channels, 3, strides=2, name="conv1", **kw)(x))
    x = nn.silu(layers.Conv(self.channels, 3, strides=2, name="conv2", **kw)(x))
    x = x.reshape(b, t, -1)
    x = layers.Dense(self.width, names=("mlp", "embed"), name="proj", **kw)(x)
    x = layers.LayerNorm(name="ln", **kw)(nn.silu(x))
    if mask is not None:
      x = jnp.where(mask[..., None], x, 0)
    y = layers.Conv(self.width, 5, feature_group_count=self.width, ndim=1, name="temporal_dw",
                    **kw)(x)
    y = layers.Dense(self.width, names=("embed", "mlp"), name="temporal_pw", **kw)(nn.silu(y))
    x = x + y
    x = nn.with_logical_constraint(x, ("batch", "time", "embed"))
    return x, masked_mean(x, mask)


class FeatureAudioEncoder(nn.Module):
  """Precomputed per-frame features (e.g. wav2vec 2.0 at 25 fps) `[B, T, C]` -> `[B, T, D]`.

  Attributes:
    width: D. dtype / param_dtype: compute / parameter dtypes.

  Returns:
    (tokens `[B, T, D]`, pooled `[B, D]` float32).
  """
  width: int = 256
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, feats, mask=None, *, train: bool = False):
    del train
    if feats.ndim != 3:
      raise ValueError(f"FeatureAudioEncoder: expected [B, T, C], got {feats.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = layers.LayerNorm(name="ln_in", **kw)(feats.astype(self.dtype))
    x = layers.Dense(self.width, names=("mlp", "embed"), name="proj", **kw)(x)
    x = x + layers.Dense(self.width, names=("embed", "mlp"), name="mlp", **kw)(nn.silu(x))
    return x, masked_mean(x, mask)
