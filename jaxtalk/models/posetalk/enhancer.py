"""Portrait Enhancer and the full PoseTalk renderer (CoarseNet -> RefineNet -> Enhancer).

Enhancer (PoseTalk "Portrait Enhancer", supplementary Fig. 10c): a UNet in the style of
PIRender's editing network (Ren et al. 2021): the source frame and the stage-2 (RefineNet) frame
are concatenated, encoded by residual down blocks, passed through residual bottleneck blocks and
decoded with skip connections; a conv + tanh gives the final frame. As in RefineNet, the output
conv is zero-initialised with an `atanh(stage-2 frame)` skip (`layers.tanh_skip`), so an untrained
enhancer returns its input frame and learns the residual detail.

`PoseTalkRenderer` chains the three networks: (source image, per-frame motion, audio) -> frames.
Its params are `{"coarse": ..., "refine": ..., "enhancer": ...}`, the params of the three stages.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models.posetalk import coarse_net as coarse_lib
from jaxtalk.models import layers
from jaxtalk.models.posetalk import refine_net as refine_lib

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


class PoseTalkRenderer(nn.Module):
  """CoarseNet -> RefineNet -> Enhancer (PoseTalk Fig. 3b): the whole video generator.

  Attributes:
    coarse_kwargs / refine_kwargs / enhancer_kwargs: attributes of the three networks (dicts).
    stages: how far to run: 1 = CoarseNet, 2 = + RefineNet, 3 = + Enhancer.
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    source `[B, H, W, 3]` in [-1, 1]; pose `[B, T, 6]`; gaze `[B, T, 2]`; mel `[B, T, 16, 80]`;
    source_pose `[B, 6]`; mask optional `[B, T]`.

  Returns:
    `(frames, aux)`: frames `[B, T, H, W, 3]` float32 of the last stage run; aux `coarse`,
    `refined` (frames of stages 1-2), `coarse_flow`, `flow` (eq. 5 final flow, stage >= 2).
  """
  coarse_kwargs: Any = None
  refine_kwargs: Any = None
  enhancer_kwargs: Any = None
  stages: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, source, pose, gaze, mel, source_pose, *, mask=None, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    coarse, caux = coarse_lib.CoarseNet(**dict(self.coarse_kwargs or {}), name="coarse", **kw)(
        source, pose, gaze, mel, source_pose, mask=mask, train=train)
    aux = dict(coarse=coarse, coarse_flow=caux["flow"])
    out = coarse
    if self.stages >= 2:
      out, raux = refine_lib.RefineNet(**dict(self.refine_kwargs or {}), name="refine", **kw)(
          coarse, caux["flow"], pose, gaze, mel, source_pose, mask=mask, train=train)
      aux.update(refined=out, flow=raux["flow"])
    if self.stages >= 3:
      out, _ = Enhancer(**dict(self.enhancer_kwargs or {}), name="enhancer", **kw)(source, out)
    return out, aux
