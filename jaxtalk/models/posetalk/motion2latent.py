"""Motion2Latent: per-frame motion conditions -> per-frame motion latent (PoseTalk Fig. 4c).

The conditions of frame t are its normalised head pose `[6]`, gaze `[2]`, the source frame's
pose `[6]` (so the latent can encode motion *relative to* the source) and audio features from the
frame's Wav2Lip log-mel window `[16, 80]` (`jaxtalk.models.audio_encoder.MelFrameEncoder`, trained
with the stage).
They are concatenated, projected to `model_dim`, downsampled in time by a stride-2 Conv1D, passed
through `num_blocks` (paper: 5) Conformer blocks (Gulati et al. 2020) that model the dependencies
between context frames, upsampled back to T frames (repeat x2, trimmed, plus a skip from the
pre-stride features) and projected to the latent.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import audio_encoder as audio_lib
from jaxtalk.models import layers

Dtype = Any


def downsample_mask(mask):
  """`[B, T]` bool -> `[B, ceil(T/2)]`: a half-rate step is valid if either of its frames is."""
  b, t = mask.shape
  if t % 2:
    mask = jnp.pad(mask, ((0, 0), (0, 1)))
  return jnp.any(mask.reshape(b, -1, 2), axis=-1)


class Motion2Latent(nn.Module):
  """Conformer Motion2Latent (PoseTalk Fig. 4c): a stride-2 Conv1D and Conformer blocks.

  Attributes:
    latent_dim: output latent size per frame.
    model_dim: Conformer width.
    num_blocks: Conformer blocks (paper: 5).
    num_heads: attention heads.
    conv_kernel: depthwise kernel of the Conformer conv module.
    audio_channels / audio_dim: MelFrameEncoder widths and output size.
    use_audio: feed audio features (True for PoseTalk's generator).
    dropout: dropout rate (when `train=True`).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    pose: `[B, T, 6]` normalised head pose of each target frame.
    gaze: `[B, T, 2]` normalised gaze.
    mel: `[B, T, 16, 80]` log-mel windows (ignored when `use_audio=False`).
    source_pose: `[B, 6]` normalised pose of the source frame.
    mask: optional `[B, T]` bool (True = valid frame). Outputs at valid frames do not depend on
      the content of padded frames; outputs at padded frames are 0.
    train: enables dropout (needs the 'dropout' rng when dropout > 0).

  Any T >= 1 works (odd T is padded to even internally and trimmed back).

  Returns:
    `(z, aux)`: `z` `[B, T, latent_dim]` in `dtype`; aux has `audio` `[B, T, audio_dim]` (when
    used) and `tokens` `[B, ceil(T/2), model_dim]` (Conformer output at half rate).

  Raises:
    ValueError: if the input shapes disagree.
  """
  latent_dim: int = 256
  model_dim: int = 256
  num_blocks: int = 5
  num_heads: int = 4
  conv_kernel: int = 15
  audio_channels: Sequence[int] = (32, 64, 128, 128)
  audio_dim: int = 128
  use_audio: bool = True
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pose, gaze, mel, source_pose, *, mask=None, train: bool = False):
    if pose.ndim != 3 or gaze.shape[:2] != pose.shape[:2]:
      raise ValueError(f"Motion2Latent: pose [B,T,6] and gaze [B,T,2] expected, got {pose.shape}"
                       f" and {gaze.shape}")
    b, t = pose.shape[:2]
    if source_pose.shape != (b, pose.shape[-1]):
      raise ValueError(f"Motion2Latent: source_pose {source_pose.shape}, expected "
                       f"{(b, pose.shape[-1])}")
    if mask is not None and mask.shape != (b, t):
      raise ValueError(f"Motion2Latent: mask {mask.shape}, expected {(b, t)}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    feats = [pose.astype(jnp.float32), gaze.astype(jnp.float32),
             jnp.broadcast_to(source_pose[:, None, :], pose.shape).astype(jnp.float32)]
    aux = {}
    if self.use_audio:
      if mel is None or mel.shape[:2] != (b, t):
        raise ValueError(f"Motion2Latent: mel [B, T, 16, 80] with B, T = {(b, t)} expected, got "
                         f"{None if mel is None else mel.shape}")
      audio = audio_lib.MelFrameEncoder(self.audio_channels, self.audio_dim, name="audio",
                                        **kw)(mel)
      aux["audio"] = audio
      feats.append(audio.astype(jnp.float32))
    x = jnp.concatenate(feats, axis=-1).astype(self.dtype)
    if mask is not None:
      x = jnp.where(mask[..., None], x, 0)
    h = layers.Dense(self.model_dim, names=("mlp", "embed"), name="in_proj", **kw)(x)
    h = nn.swish(h)
    if mask is not None:
      h = jnp.where(mask[..., None], h, 0)
    # Stride-2 Conv1D; odd T: pad one zero frame so the half-rate grid is ceil(T/2).
    tp = t + (t % 2)
    hp = jnp.pad(h, ((0, 0), (0, tp - t), (0, 0)))
    y = layers.Conv(self.model_dim, 3, strides=2, ndim=1, name="stride_conv", **kw)(hp)
    ymask = downsample_mask(mask) if mask is not None else None
    for i in range(self.num_blocks):
      y = layers.ConformerBlock(self.num_heads, conv_kernel=self.conv_kernel,
                                dropout=self.dropout, name=f"conformer{i}", **kw)(
                                    y, mask=ymask, train=train)
    aux["tokens"] = y
    up = jnp.repeat(y, 2, axis=1)[:, :t]
    z = layers.Dense(self.latent_dim, names=("embed", "latent"), name="out_proj", **kw)(
        jnp.concatenate([up, h], axis=-1))
    if mask is not None:
      z = jnp.where(mask[..., None], z, 0)
    return z, aux
