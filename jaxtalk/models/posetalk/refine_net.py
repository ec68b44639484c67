"""RefineNet: lip-oriented multi-resolution motion refinement (PoseTalk eqs. 4-5, Fig. 4b/d, 10b).

Given the frozen CoarseNet's frame (the source warped by F_coarse) and flow, RefineNet

1. maps the motion conditions with its own Motion2Latent to a per-frame latent z_t;
2. encodes the coarse frame into multi-scale features x^{enc_i} at 8x8, 16x16, ..., HxW (the
   full-resolution level also carries the frame's RGB);
3. decodes from 8x8 up to HxW. At level i the block (upsample x2, conv + AdaIN(z), Fig. 4d)
   gives x^{dec_i}; a head predicts the residual flow dF_i (pixels of level i) and a mask logit
   m_i from `[x^{dec_i}, x^{enc_i}]`, and eq. 4 accumulates and blends them:

       F_i = dF_i + up(F_{i-1})          (F_0 = 0: at 8x8, F_1 = dF_1)
       m_i = m_i + up(m_{i-1})           (mask *logits* accumulate; sigmoid is applied to blend)
       x^{out_i} = warp(x^{enc_i}, F_i) * sigmoid(m_i) + x^{dec_i} * (1 - sigmoid(m_i))

   `up` is 2x bilinear upsampling (`layers.resize_flow` for flows: vectors doubled).
4. outputs the frame with a conv + tanh on x^{out_L}; the conv is zero-initialised and its
   pre-activation has a skip `atanh(warp(coarse frame, F_L))` (`layers.tanh_skip`), so an
   untrained RefineNet returns the coarse frame.

The flows F_i act on the coarse frame's features, so they are residual flows on top of F_coarse.
The final flow from the source to the target (eq. 5) is returned in `aux["flow"]`:

    F = F_coarse + dF_L + up(dF_{L-1}) + up(up(dF_{L-2})) + ...

It is the first-order (small dF) composition of the residual warp with the coarse warp.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers
from jaxtalk.models.posetalk import motion2latent as m2l_lib

Dtype = Any
MIN_RES = 8


def num_levels(resolution: int) -> int:
  """Levels 8, 16, ..., resolution; raises ValueError unless resolution = 8 * 2^k."""
  k = 0
  while MIN_RES * 2 ** k < resolution:
    k += 1
  if MIN_RES * 2 ** k != resolution:
    raise ValueError(f"RefineNet: resolution {resolution} must be 8 * 2^k (8, 16, ..., 256)")
  return k + 1


def upsample_flow(flow):
  """2x bilinear upsampling of a pixel-unit flow `[N, h, w, 2]` (vectors doubled)."""
  return layers.resize_flow(flow, flow.shape[1] * 2, flow.shape[2] * 2)


def upsample_map(x):
  """2x bilinear upsampling of `[N, h, w, C]` (float32)."""
  return layers.resize_images(x.astype(jnp.float32), x.shape[1] * 2, x.shape[2] * 2)


class RefineNet(nn.Module):
  """PoseTalk RefineNet (Fig. 4b/d, eqs. 4-5).

  Attributes:
    channels: feature widths per level from full resolution down to 8x8; `len(channels)` must
      equal `num_levels(H)` (a 64 px model has 4 levels: 64, 32, 16, 8).
    latent_dim, model_dim, num_blocks, num_heads, conv_kernel, audio_channels, audio_dim:
      its own Motion2Latent.
    flow_scale: level-i flow head outputs are multiplied by `flow_scale * h_i / 64` pixels.
    dropout: Motion2Latent dropout.
    dtype / param_dtype: compute / parameter dtypes (flows, masks, images float32).

  Args (call):
    coarse: `[B, T, H, W, 3]` CoarseNet frames in [-1, 1].
    coarse_flow: `[B, T, H, W, 2]` F_coarse (pixels).
    pose `[B, T, 6]`, gaze `[B, T, 2]`, mel `[B, T, 16, 80]`, source_pose `[B, 6]`.
    mask: optional `[B, T]` valid frames. train: dropout on/off.

  Returns:
    `(frames, aux)`: `frames` `[B, T, H, W, 3]` float32 in [-1, 1]; aux:
      `flow` `[B, T, H, W, 2]` final flow of eq. 5 (F_coarse + residual),
      `residual_flow` `[B, T, H, W, 2]` F_L (sum of upsampled dF_i),
      `dflows` list of `[B, T, h_i, w_i, 2]` (coarsest first), `flows` the accumulated F_i,
      `masks` list of `[B, T, h_i, w_i, 1]` sigmoid of the accumulated mask logits,
      `latent` `[B, T, latent_dim]`.
  """
  channels: Sequence[int] = (32, 64, 128, 256, 256, 256)
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
  def __call__(self, coarse, coarse_flow, pose, gaze, mel, source_pose, *, mask=None,
               train: bool = False):
    if coarse.ndim != 5 or coarse.shape[-1] != 3:
      raise ValueError(f"RefineNet: coarse must be [B, T, H, W, 3], got {coarse.shape}")
    if coarse_flow.shape != coarse.shape[:-1] + (2,):
      raise ValueError(f"RefineNet: coarse_flow {coarse_flow.shape} does not match coarse "
                       f"{coarse.shape}")
    b, t, h, w, _ = coarse.shape
    if h != w:
      raise ValueError(f"RefineNet: square frames expected, got {h}x{w}")
    levels = num_levels(h)
    if len(self.channels) != levels:
      raise ValueError(f"RefineNet: {levels} levels for {h} px (8..{h}) but channels="
                       f"{tuple(self.channels)}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    z, _ = m2l_lib.Motion2Latent(
        self.latent_dim, self.model_dim, self.num_blocks, self.num_heads, self.conv_kernel,
        self.audio_channels, self.audio_dim, dropout=self.dropout, name="motion2latent", **kw)(
            pose, gaze, mel, source_pose, mask=mask, train=train)
    n = b * t
    img = coarse.reshape(n, h, w, 3).astype(jnp.float32)
    zf = z.reshape(n, -1)

    # Encoder: features at full, 1/2, ..., 8x8 (index 0 = full resolution).
    enc = []
    x = layers.Conv(self.channels[0], 7, name="enc_stem", **kw)(img.astype(self.dtype))
    for i, c in enumerate(self.channels):
      if i:
        x = nn.avg_pool(x, (2, 2), (2, 2))
      x = layers.ResBlock(c, name=f"enc{i}", **kw)(x)
      x = nn.with_logical_constraint(x, ("batch", "height", "width", "embed"))
      enc.append(x)
    enc[0] = jnp.concatenate([enc[0], img.astype(self.dtype)], axis=-1)

    # Motion decoder, coarse (8x8) to fine (eq. 4).
    dflows, flows, masks = [], [], []
    flow_acc = None
    mask_acc = None
    x_out = None
    for lvl in reversed(range(levels)):
      x_enc = enc[lvl]
      c = x_enc.shape[-1]
      hi = x_enc.shape[1]
      if x_out is None:
        x_dec = layers.ConvAdaIN(c, 3, name=f"dec{lvl}", **kw)(x_enc, zf)
      else:
        x_dec = layers.ConvAdaIN(c, 3, name=f"dec{lvl}", **kw)(layers.upsample2x(x_out), zf)
      x_dec = layers.ConvAdaIN(c, 3, name=f"dec{lvl}_b", **kw)(x_dec, zf)
      head_in = jnp.concatenate([x_dec, x_enc], axis=-1)
      dflow = layers.Conv(2, 3, zero_init=True, name=f"flow{lvl}", **kw)(head_in)
      dflow = dflow.astype(jnp.float32) * (self.flow_scale * hi / 64.0)
      mlogit = layers.Conv(1, 3, zero_init=True, bias_init_value=2.0 if x_out is None else 0.0,
                           name=f"mask{lvl}", **kw)(head_in).astype(jnp.float32)
      if flow_acc is None:
        flow_acc, mask_acc = dflow, mlogit
      else:
        flow_acc = dflow + upsample_flow(flow_acc)
        mask_acc = mlogit + upsample_map(mask_acc)
      m = jax.nn.sigmoid(mask_acc)
      warped = layers.warp(x_enc, flow_acc)
      x_out = (warped.astype(jnp.float32) * m +
               x_dec.astype(jnp.float32) * (1.0 - m)).astype(self.dtype)
      dflows.append(dflow)
      flows.append(flow_acc)
      masks.append(m)

    logits = layers.Conv(3, 3, zero_init=True, name="out_conv", **kw)(x_out)
    out = layers.tanh_skip(logits, layers.warp(img, flow_acc))
    shape5 = lambda a: a.reshape((b, t) + a.shape[1:])
    residual = shape5(flow_acc)
    aux = dict(
        flow=coarse_flow.astype(jnp.float32) + residual, residual_flow=residual,
        dflows=[shape5(f) for f in dflows], flows=[shape5(f) for f in flows],
        masks=[shape5(m) for m in masks], latent=z)
    return shape5(out), aux


def from_config(model_cfg, dtype="float32") -> RefineNet:
  """`RefineNet` from its stage config's `model.refine` mapping (the class's attributes; lists
  become tuples, as JSON configs store them) and a compute dtype name."""
  kw = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model_cfg).items()}
  return RefineNet(**kw, dtype=jnp.dtype(dtype))
