"""The multi-scale patch discriminator of the pctalk_renderer stage (LivePortrait's GAN loss,
inherited from face-vid2vid: pix2pixHD's multi-scale PatchGAN, Wang et al. 2018; Isola et al. 2017).

    D_k (k = 0 .. num_scales − 1) sees the image average-pooled by 2^k:
      x = lrelu(Conv4x4/2(image, c))
      x = lrelu(InstanceNorm(Conv4x4/2(x, 2c))) ... (num_layers − 1 times, widths capped at 8c)
      x = lrelu(InstanceNorm(Conv4x4/1(x, ·)))
      score map = Conv4x4/1(x, 1)                      one least-squares score per patch

Trained with the least-squares GAN loss (`losses.lsgan_*`; face-vid2vid's choice) and the
feature-matching loss over the intermediate features (face-vid2vid / pix2pixHD), in the
pctalk_renderer stage (`jaxtalk.tasks.pctalk.renderer`).

Images `[N, H, W, 3]` float in [-1, 1]; returns per scale (score map `[N, h, w, 1]` float32,
features: list of `[N, h_i, w_i, c_i]`).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers

Dtype = Any


class PatchDiscriminator(nn.Module):
  """One PatchGAN (module docstring). `features`: c; `num_layers`: strided convs."""
  features: int = 64
  num_layers: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    feats = []
    x = images.astype(self.dtype)
    for i in range(self.num_layers + 1):
      stride = 2 if i < self.num_layers else 1
      c = self.features * min(2 ** i, 8)
      x = layers.Conv(c, 4, strides=stride, name=f"conv{i}", **kw)(x)
      if i > 0:
        x = nn.GroupNorm(num_groups=None, group_size=1, use_bias=False, use_scale=False,
                         name=f"norm{i}", dtype=jnp.float32)(x.astype(jnp.float32)).astype(x.dtype)
      x = nn.leaky_relu(x, 0.2)
      feats.append(x)
    score = layers.Conv(1, 4, name="score", **kw)(x)
    return score.astype(jnp.float32), feats


class MultiScaleDiscriminator(nn.Module):
  """`num_scales` PatchGANs on the image and its 2x, 4x ... average-pooled copies."""
  num_scales: int = 2
  features: int = 64
  num_layers: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images):
    out, x = [], images
    for k in range(self.num_scales):
      if k:
        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      out.append(PatchDiscriminator(self.features, self.num_layers, self.dtype,
                                    self.param_dtype, name=f"scale{k}")(x))
    return out


def discriminator_from_config(disc_cfg, dtype="float32") -> MultiScaleDiscriminator:
  """D of a stage's `config.disc` (`scales`, `features`, `layers`)."""
  return MultiScaleDiscriminator(int(disc_cfg.get("scales", 2)), int(disc_cfg.get("features", 64)),
                                 int(disc_cfg.get("layers", 3)), dtype=jnp.dtype(dtype))

