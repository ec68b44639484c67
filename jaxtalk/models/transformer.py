"""Transformer blocks of the pose latent diffusion (PoseTalk "Pose Generation", after MLD).

* `TransformerBlock`: pre-LayerNorm block, self-attention, optional cross-attention to a memory,
  feed-forward (GELU). Sequences `[B, S, D]`.
* `SkipTransformer`: MLD's encoder with long skip connections (Chen et al. 2023, "Executing
  your commands via motion diffusion in latent space"): `depth = 2k + 1` blocks; the outputs of
  the k input blocks are kept and, in reverse order, concatenated to the input of each of the k
  output blocks and projected back to D by a linear layer (as in a U-Net). PoseTalk builds its
  denoiser on it ("a Transformer-based denoising model with long skip connections").

Masks are `[B, S]` bool, True = valid token; invalid tokens are excluded as attention keys, so
valid outputs never depend on their content.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models import layers

Dtype = Any


class Attention(nn.Module):
  """Multi-head (self or cross) attention; softmax in float32.

  Params are plain rank-2 kernels (`[D, H*dh]` named ("embed", "mlp"), output `[H*dh, D]` named
  ("mlp", "embed")), so they shard under logical rules inside a mesh context (flax's
  `DenseGeneral` reshapes a boxed rank-2 init to rank 3, which fails there).

  Attributes:
    num_heads: H. dropout: attention-weight dropout. dtype / param_dtype.

  Args (call):
    x: `[B, S, D]` queries. context: `[B, M, Dc]` keys/values (default `x`).
    mask: `[B, M]` bool, True = valid key (invalid keys get exactly zero weight; a row with no
      valid key outputs zeros). train: dropout on/off.

  Returns:
    `[B, S, D]` in `dtype`.
  """
  num_heads: int = 4
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, *, mask=None, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    context = x if context is None else context
    b, s, d = x.shape
    h = self.num_heads
    if d % h:
      raise ValueError(f"Attention: width {d} not divisible by {h} heads")
    dh = d // h
    q = layers.Dense(d, names=("embed", "mlp"), name="query", **kw)(x).reshape(b, s, h, dh)
    k = layers.Dense(d, names=("embed", "mlp"), name="key", **kw)(context)
    v = layers.Dense(d, names=("embed", "mlp"), name="value", **kw)(context)
    m = context.shape[1]
    k = k.reshape(b, m, h, dh)
    v = v.reshape(b, m, h, dh)
    scores = jnp.einsum("bshd,bmhd->bhsm", q.astype(jnp.float32), k.astype(jnp.float32))
    scores = scores / math.sqrt(dh)
    if mask is not None:
      if mask.shape != (b, m):
        raise ValueError(f"Attention: mask {mask.shape} does not match keys {(b, m)}")
      scores = jnp.where(mask[:, None, None, :], scores, -1e30)
    w = jax.nn.softmax(scores, axis=-1)
    if mask is not None:
      w = jnp.where(jnp.any(mask, axis=-1)[:, None, None, None], w, 0.0)
    w = nn.Dropout(self.dropout, deterministic=not train)(w)
    out = jnp.einsum("bhsm,bmhd->bshd", w.astype(self.dtype), v.astype(self.dtype))
    return layers.Dense(d, names=("mlp", "embed"), name="out", **kw)(out.reshape(b, s, d))


class TransformerBlock(nn.Module):
  """Pre-LN transformer block: `x + SA(LN x)` -> `+ CA(LN x, memory)` -> `+ FFN(LN x)`.

  Attributes:
    num_heads: attention heads.
    mlp_mult: hidden width of the feed-forward = `mlp_mult * D`.
    cross: add a cross-attention sub-layer (then `memory` is required).
    dropout: dropout on attention weights and residual branches (with `train=True`).
    dtype / param_dtype: compute / parameter dtypes (LayerNorm statistics and softmax in f32).

  Args (call):
    x: `[B, S, D]`. mask: optional `[B, S]` bool for the self-attention keys.
    memory: `[B, M, Dm]` for cross-attention. memory_mask: optional `[B, M]` bool.
    train: dropout on/off.

  Returns:
    `[B, S, D]` in `dtype`.
  """
  num_heads: int = 4
  mlp_mult: int = 4
  cross: bool = False
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None, memory=None, memory_mask=None, train: bool = False):
    if x.ndim != 3:
      raise ValueError(f"TransformerBlock: expected [B, S, D], got {x.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    x = nn.with_logical_constraint(x.astype(self.dtype), ("batch", "time", "embed"))
    y = layers.LayerNorm(name="ln_sa", **kw)(x)
    y = Attention(self.num_heads, self.dropout, name="self_attn", **kw)(
        y, mask=mask, train=train)
    x = x + drop(y)
    if self.cross:
      if memory is None:
        raise ValueError("TransformerBlock(cross=True) needs `memory`")
      y = layers.LayerNorm(name="ln_ca", **kw)(x)
      y = Attention(self.num_heads, self.dropout, name="cross_attn", **kw)(
          y, memory.astype(self.dtype), mask=memory_mask, train=train)
      x = x + drop(y)
    d = x.shape[-1]
    y = layers.LayerNorm(name="ln_ff", **kw)(x)
    y = nn.gelu(layers.Dense(self.mlp_mult * d, names=("embed", "mlp"), name="fc1", **kw)(y))
    y = layers.Dense(d, names=("mlp", "embed"), name="fc2", **kw)(drop(y))
    x = x + drop(y)
    return nn.with_logical_constraint(x, ("batch", "time", "embed"))


class TransformerStack(nn.Module):
  """`depth` `TransformerBlock`s followed by a final LayerNorm.

  Attributes: as `TransformerBlock`, plus `depth`.
  """
  depth: int = 2
  num_heads: int = 4
  mlp_mult: int = 4
  cross: bool = False
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None, memory=None, memory_mask=None, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    for i in range(self.depth):
      x = TransformerBlock(self.num_heads, self.mlp_mult, self.cross, self.dropout,
                           name=f"block_{i}", **kw)(x, mask=mask, memory=memory,
                                                    memory_mask=memory_mask, train=train)
    return layers.LayerNorm(name="ln_out", **kw)(x)


class SkipTransformer(nn.Module):
  """MLD's transformer encoder with long skip connections (see module docstring).

  Attributes:
    depth: number of blocks, odd (2k + 1): k input blocks, 1 middle block, k output blocks.
    num_heads / mlp_mult / dropout / dtype / param_dtype: as `TransformerBlock`.

  Args (call):
    x: `[B, S, D]`. mask: optional `[B, S]` bool (True = valid). train: dropout on/off.

  Returns:
    (`[B, S, D]` after a final LayerNorm, aux) with aux `{"skips": [k x [B, S, D]]}`.

  Raises:
    ValueError: if `depth` is even or < 1.
  """
  depth: int = 5
  num_heads: int = 4
  mlp_mult: int = 4
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask: Optional[jnp.ndarray] = None, train: bool = False):
    if self.depth < 1 or self.depth % 2 == 0:
      raise ValueError(f"SkipTransformer: depth must be odd (2k + 1), got {self.depth}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    block = lambda name: TransformerBlock(self.num_heads, self.mlp_mult, False, self.dropout,
                                          name=name, **kw)
    k = self.depth // 2
    d = x.shape[-1]
    skips = []
    for i in range(k):
      x = block(f"in_{i}")(x, mask=mask, train=train)
      skips.append(x)
    x = block("middle")(x, mask=mask, train=train)
    for i in range(k):
      x = jnp.concatenate([x, skips[k - 1 - i]], axis=-1)
      x = layers.Dense(d, names=("mlp", "embed"), name=f"skip_proj_{i}", **kw)(x)
      x = block(f"out_{i}")(x, mask=mask, train=train)
    return layers.LayerNorm(name="ln_out", **kw)(x), {"skips": skips}
