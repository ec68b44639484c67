"""CoarseNet: pose-oriented coarse motion from the source frame and a motion latent.

PoseTalk, "Refinement-based Video Generator", Fig. 4a and supplementary Fig. 10a: a Motion2Latent
(Conformer, Fig. 4c) maps the per-frame conditions to a motion latent z_t; an hourglass (U-Net)
over the source image with AdaIN after every convolution injecting z_t predicts a coarse
*backward* flow F_coarse (pixels, (dx, dy), target -> source; conventions in
`jaxtalk.models.layers`) and an occlusion mask o in [0, 1]; the source is warped by F_coarse.

Output frame: `o * warp(source, F_coarse) + (1 - o) * g`, where `g` is a conv + tanh image from
the decoder features (fills what the source cannot show, e.g. inside the mouth). The flow head is
zero-initialised and the mask head starts near 1, so an untrained CoarseNet returns the source.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers
from jaxtalk.models.posetalk import motion2latent as m2l_lib

Dtype = Any


class Hourglass(nn.Module):
  """U-Net whose every conv is followed by AdaIN(z) and LeakyReLU (PoseTalk Fig. 10a/11).

  Attributes:
    channels: widths of the encoder levels, full resolution first; the image is halved after
      each level except the last (so `len(channels) - 1` downsamplings).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    x: `[N, H, W, C]`, H and W divisible by `2 ** (len(channels) - 1)`.
    z: `[N, D]` latent.

  Returns:
    `[N, H, W, channels[0]]` decoder features at full resolution.
  """
  channels: Sequence[int] = (32, 64, 128, 256, 256)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, z):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    n_down = len(self.channels) - 1
    if x.shape[1] % (2 ** n_down) or x.shape[2] % (2 ** n_down):
      raise ValueError(f"Hourglass: H, W of {x.shape} must be divisible by {2 ** n_down}")
    skips = []
    h = layers.ConvAdaIN(self.channels[0], 7, name="stem", **kw)(x, z)
    for i, c in enumerate(self.channels):
      h = layers.ConvAdaIN(c, 3, name=f"enc{i}", **kw)(h, z)
      h = nn.with_logical_constraint(h, ("batch", "height", "width", "embed"))
      if i < n_down:
        skips.append(h)
        h = nn.avg_pool(h, (2, 2), (2, 2))
    for i in reversed(range(n_down)):
      h = layers.upsample2x(h)
      h = jnp.concatenate([h, skips[i]], axis=-1)
      h = layers.ConvAdaIN(self.channels[i], 3, name=f"dec{i}", **kw)(h, z)
    return h


class CoarseNet(nn.Module):
  """PoseTalk CoarseNet (Fig. 4a): source frame + per-frame motion -> coarse frames and flows.

  Attributes:
    channels: hourglass widths (full resolution first).
    latent_dim, model_dim, num_blocks, num_heads, conv_kernel, audio_channels, audio_dim:
      Motion2Latent hyperparameters (paper: 5 Conformer blocks).
    flow_scale: the flow head's output is multiplied by `flow_scale * H / 64` pixels.
    dropout: Motion2Latent dropout.
    dtype / param_dtype: compute / parameter dtypes (flows, masks and images are float32).

  Args (call):
    source: `[B, H, W, 3]` float in [-1, 1].
    pose: `[B, T, 6]`, gaze: `[B, T, 2]` normalised target motion; mel: `[B, T, 16, 80]`;
    source_pose: `[B, 6]` normalised pose of the source frame.
    mask: optional `[B, T]` bool (valid frames; padded frames' outputs are still computed).
    train: dropout on/off.

  Returns:
    `(frames, aux)`: `frames` `[B, T, H, W, 3]` float32 in [-1, 1]; aux:
      `flow` `[B, T, H, W, 2]` float32 coarse backward flow in pixels (F_coarse),
      `occlusion` `[B, T, H, W, 1]` float32 in [0, 1],
      `warped` `[B, T, H, W, 3]` the source warped by `flow`,
      `latent` `[B, T, latent_dim]` Motion2Latent output.
  """
  channels: Sequence[int] = (32, 64, 128, 256, 256)
  latent_dim: int = 256
  model_dim: int = 256
  num_blocks: int = 5
  num_heads: int = 4
  conv_kernel: int = 15
  audio_channels: Sequence[int] = (32, 64, 128, 128)
  audio_dim: int = 128
  flow_scale: float = 1.0
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, source, pose, gaze, mel, source_pose, *, mask=None, train: bool = False):
    if source.ndim != 4 or source.shape[-1] != 3:
      raise ValueError(f"CoarseNet: source must be [B, H, W, 3], got {source.shape}")
    b, h, w, _ = source.shape
    if pose.shape[0] != b:
      raise ValueError(f"CoarseNet: batch of pose {pose.shape} != source {source.shape}")
    t = pose.shape[1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    z, _ = m2l_lib.Motion2Latent(
        self.latent_dim, self.model_dim, self.num_blocks, self.num_heads, self.conv_kernel,
        self.audio_channels, self.audio_dim, dropout=self.dropout, name="motion2latent", **kw)(
            pose, gaze, mel, source_pose, mask=mask, train=train)
    n = b * t
    src = jnp.broadcast_to(source[:, None], (b, t, h, w, 3)).reshape(n, h, w, 3)
    zf = z.reshape(n, -1)
    feats = Hourglass(self.channels, name="hourglass", **kw)(src.astype(self.dtype), zf)
    flow = layers.Conv(2, 3, zero_init=True, name="flow_head", **kw)(feats).astype(jnp.float32)
    flow = flow * (self.flow_scale * h / 64.0)
    occ = jax.nn.sigmoid(layers.Conv(1, 3, zero_init=True, bias_init_value=4.0,
                                     name="occlusion_head", **kw)(feats).astype(jnp.float32))
    rgb = jnp.tanh(layers.Conv(3, 3, name="rgb_head", **kw)(feats).astype(jnp.float32))
    warped = layers.warp(src.astype(jnp.float32), flow)
    out = occ * warped + (1.0 - occ) * rgb
    shape5 = lambda x: x.reshape((b, t) + x.shape[1:])
    aux = dict(flow=shape5(flow), occlusion=shape5(occ), warped=shape5(warped), latent=z)
    return shape5(out), aux


def from_config(model_cfg, dtype="float32") -> CoarseNet:
  """`CoarseNet` from its stage config's `model.coarse` mapping (the class's attributes; lists
  become tuples, as JSON configs store them) and a compute dtype name."""
  kw = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model_cfg).items()}
  return CoarseNet(**kw, dtype=jnp.dtype(dtype))
