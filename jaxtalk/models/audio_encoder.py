"""Trainable audio encoders of jaxtalk's generators (one family, each from log-mel windows or
stored features).

* `MelFrameEncoder`: one feature per frame from its log-mel window (conv stages, pooled), the
  audio branch of PoseTalk's Motion2Latent (CoarseNet/RefineNet).
* `MelAudioEncoder` / `FeatureAudioEncoder`: per-frame tokens + a pooled vector for the pose
  denoiser's audio condition (PoseTalk "Pose Generation"), below.
(SyncNet's audio encoder stays in `jaxtalk.models.syncnet`: it is Wav2Lip's architecture, so
that converted Wav2Lip experts load.)

PoseTalk extracts audio features with wav2vec 2.0 (Baevski et al. 2020). Without a local
wav2vec checkpoint the default is the per-frame log-mel window of the batch (`mel [B, T, 16, 80]`,
Wav2Lip parameters, centred on each video frame) through `MelAudioEncoder`, trained with the
denoiser. With precomputed wav2vec features (`jaxtalk.features.wav2vec`, `[B, T, C]` at 25 fps),
`FeatureAudioEncoder` projects them instead.

Both return `(tokens [B, T, D], pooled [B, D])` (one token per video frame; pooled = masked mean).
"""

from __future__ import annotations

from typing import Any, Sequence

from flax import linen as nn
import jax.numpy as jnp

from jaxtalk.models import layers

Dtype = Any


class MelFrameEncoder(nn.Module):
  """Per-frame audio features from Wav2Lip log-mel windows.

  Four 3x3 conv + GroupNorm + LeakyReLU stages (the first halves the mel axis, the others both
  axes), global average pooling and a Dense layer.

  Attributes:
    channels: conv widths per stage.
    out_dim: feature size.
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    mel: `[B, T, 16, 80]` log-mel windows (window t centred on video frame t).

  Returns:
    `[B, T, out_dim]` in `dtype`.
  """
  channels: Sequence[int] = (32, 64, 128, 128)
  out_dim: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, mel):
    if mel.ndim != 4:
      raise ValueError(f"MelFrameEncoder: expected mel [B, T, 16, 80], got {mel.shape}")
    b, t, s, f = mel.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = mel.reshape(b * t, s, f, 1).astype(self.dtype)
    for i, c in enumerate(self.channels):
      stride = (1, 2) if i == 0 else (2, 2)
      x = layers.Conv(c, 3, strides=stride, name=f"conv{i}", **kw)(x)
      x = nn.leaky_relu(layers.GroupNorm(name=f"gn{i}", **kw)(x), 0.2)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    x = layers.Dense(self.out_dim, names=("mlp", "embed"), name="out", **kw)(x)
    return x.reshape(b, t, self.out_dim)


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
