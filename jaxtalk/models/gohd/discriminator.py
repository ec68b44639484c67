"""The image discriminator D of GoHD's animator loss (supplementary B.1, eq. 16): StyleGAN2's
residual discriminator (Karras et al. 2020, config E/F "resnet"; LIA's `Discriminator`).

    x = act(Conv1x1(image))                                 from-RGB at H x H
    x = DownBlock(x) ... until 4 x 4                        residual, halves H each time
    x = x ⊕ minibatch-stddev(x)                             one extra channel (groups of <= 4)
    x = act(Conv3x3(x)); logit = Dense(act(Dense(flatten(x))))

Channels per resolution follow the animator's table (`animator.channels_at`, LIA's channel
multiplier); the residual block is the animator encoder's (`animator.DownBlock`), as in LIA,
whose encoder and discriminator share StyleGAN2's ResBlock. Differences from StyleGAN2, as in the
animator: no blur before downsampling (2x2 average instead), plain He-initialised weights instead
of the equalised learning rate.

Images `[N, H, W, 3]` float in [-1, 1], H = W a power of two >= 8; returns logits `[N]` float32
(D's probability is σ(logit); `jaxtalk.losses.nonsaturating_*` take the logits).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers
from jaxtalk.models.gohd import animator as animator_lib

Dtype = Any


def minibatch_stddev(x, group_size: int = 4):
  """StyleGAN's minibatch standard deviation: one channel holding, for every sample, the mean over
  features and pixels of the std of its group of `group_size` samples (the largest divisor of N
  not above it). x `[N, H, W, C]` -> `[N, H, W, C + 1]`, float32 statistics."""
  n = x.shape[0]
  g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
  y = x.astype(jnp.float32).reshape((g, n // g) + x.shape[1:])
  std = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)                       # [N/g, H, W, C]
  s = jnp.mean(std, axis=(1, 2, 3))                                 # [N/g]
  s = jnp.tile(s, g)[:, None, None, None]                           # sample i -> group i % (N/g)
  s = jnp.broadcast_to(s, x.shape[:3] + (1,)).astype(x.dtype)
  return jnp.concatenate([x, s], axis=-1)


class ImageDiscriminator(nn.Module):
  """StyleGAN2 residual discriminator (module docstring).

  Attributes:
    image_size: H = W. channel_base / channel_max: widths (`animator.channels_at`).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    images: `[N, H, W, 3]` in [-1, 1].

  Returns:
    logits `[N]` float32.

  Raises:
    ValueError: images of another shape, or an image_size that is not a power of two >= 8.
  """
  image_size: int = 256
  channel_base: int = 16384
  channel_max: int = 512
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images):
    s = self.image_size
    animator_lib.decoder_resolutions(s)
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
      raise ValueError(f"ImageDiscriminator: expected images [N, {s}, {s}, 3], got "
                       f"{images.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    ch = lambda r: animator_lib.channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
    act = animator_lib._act  # pylint: disable=protected-access
    x = act(layers.Conv(ch(s), 1, name="from_rgb", **kw)(images.astype(self.dtype)))
    r = s
    while r > 4:
      r //= 2
      x = animator_lib.DownBlock(ch(r), name=f"down{r}", **kw)(x)
    x = minibatch_stddev(x)
    x = act(layers.Conv(ch(4), 3, name="conv_out", **kw)(x))
    x = x.reshape(x.shape[0], -1)
    x = act(layers.Dense(ch(4), names=("mlp", "mlp"), name="dense", **kw)(x))
    return layers.Dense(1, names=("mlp", "latent"), name="logit", dtype=jnp.float32,
                        param_dtype=self.param_dtype)(x.astype(jnp.float32))[:, 0]


def discriminator_from_config(model_cfg, dtype="float32") -> ImageDiscriminator:
  """`ImageDiscriminator` at the animator's size: reads `image_size`, `channel_base`,
  `channel_max` of the animator's `config.model` (defaults: the release's 256² / 16384 / 512)."""
  m = dict(model_cfg)
  return ImageDiscriminator(image_size=int(m.get("image_size", 256)),
                            channel_base=int(m.get("channel_base", 16384)),
                            channel_max=int(m.get("channel_max", 512)),
                            dtype=jnp.dtype(dtype))
