"""Portrait Enhancer, stage 3 of PoseTalk's renderer.

Enhancer (PoseTalk "Portrait Enhancer", supplementary Fig. 10c): a UNet in the style of
PIRender's editing network (Ren et al. 2021): the source frame and the stage-2 (RefineNet) frame
are concatenated, encoded by residual down blocks, passed through residual bottleneck blocks and
decoded with skip connections; a conv + tanh gives the final frame. As in RefineNet, the output
conv is zero-initialised with an `atanh(stage-2 frame)` skip (`layers.tanh_skip`), so an untrained
enhancer returns its input frame and learns the residual detail.

The three networks are chained by `jaxtalk.renderers.posetalk.make_render` (the renderer that is
trained, exported, served and benchmarked).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers

Dtype = Any


class Enhancer(nn.Module):
  """PoseTalk Portrait Enhancer (UNet, PIRender-editing-network style).

  Attributes:
    channels: encoder widths, full resolution first (one 2x downsampling between levels).
    num_bottleneck: residual blocks at the lowest resolution.
    dtype / param_dtype: compute / parameter dtypes (output float32).

  Args (call):
    source: `[N, H, W, 3]` (or `[B, H, W, 3]` broadcast over T when `frames` is 5-D) in [-1, 1].
    frames: `[N, H, W, 3]` or `[B, T, H, W, 3]` stage-2 frames in [-1, 1].

  Returns:
    `(out, aux)`: `out` float32 with the shape of `frames`, in [-1, 1]; aux `residual` (the
    pre-tanh output conv, same shape as `frames`).
  """
  channels: Sequence[int] = (32, 64, 128, 256)
  num_bottleneck: int = 2
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, source, frames):
    lead = frames.shape[:-3]
    h, w = frames.shape[-3:-1]
    if frames.ndim == 5:
      if source.shape != (frames.shape[0], h, w, 3):
        raise ValueError(f"Enhancer: source {source.shape} does not match frames {frames.shape}")
      source = jnp.broadcast_to(source[:, None], frames.shape)
    elif source.shape != frames.shape:
      raise ValueError(f"Enhancer: source {source.shape} does not match frames {frames.shape}")
    n_down = len(self.channels) - 1
    if h % 2 ** n_down or w % 2 ** n_down:
      raise ValueError(f"Enhancer: H, W = {h}, {w} must be divisible by {2 ** n_down}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    img = frames.reshape((-1, h, w, 3)).astype(jnp.float32)
    src = source.reshape((-1, h, w, 3)).astype(jnp.float32)
    x = jnp.concatenate([src, img], axis=-1).astype(self.dtype)
    x = layers.Conv(self.channels[0], 7, name="stem", **kw)(x)
    skips = []
    for i, c in enumerate(self.channels):
      x = layers.ResBlock(c, name=f"enc{i}", **kw)(x)
      x = nn.with_logical_constraint(x, ("batch", "height", "width", "embed"))
      if i < n_down:
        skips.append(x)
        x = nn.avg_pool(x, (2, 2), (2, 2))
    for j in range(self.num_bottleneck):
      x = layers.ResBlock(self.channels[-1], name=f"mid{j}", **kw)(x)
    for i in reversed(range(n_down)):
      x = layers.UpBlock(self.channels[i], name=f"up{i}", **kw)(x)
      x = layers.ResBlock(self.channels[i], name=f"dec{i}", **kw)(
          jnp.concatenate([x, skips[i]], axis=-1))
    logits = layers.Conv(3, 3, zero_init=True, name="out_conv", **kw)(x)
    out = layers.tanh_skip(logits, img)
    return out.reshape(lead + (h, w, 3)), dict(residual=logits.astype(jnp.float32).reshape(
        lead + (h, w, 3)))


def from_config(model_cfg, dtype="float32") -> Enhancer:
  """`Enhancer` from its stage config's `model.enhancer` mapping (the class's attributes; lists
  become tuples, as JSON configs store them) and a compute dtype name."""
  kw = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model_cfg).items()}
  return Enhancer(**kw, dtype=jnp.dtype(dtype))
