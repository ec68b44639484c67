"""wav2vec 2.0 (Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning of
Speech Representations") in Flax linen, inference only: PoseTalk's audio condition.

Written for jaxtalk to run PyTorch checkpoints of transformers' `Wav2Vec2Model` (loaded by
`jaxtalk.features.wav2vec.load_wav2vec`), including the wav2vec2-base family that transformers' own
`FlaxWav2Vec2Model` does not implement. Both published variants:

* `feat_extract_norm="group"`, `do_stable_layer_norm=False` (wav2vec2-base, base-960h): the first
  conv layer has a GroupNorm with one group per channel (each channel normalised over time), the
  other conv layers have no norm; the transformer is post-LN (paper section 2; fairseq
  `layer_norm_first=False`).
* `feat_extract_norm="layer"`, `do_stable_layer_norm=True` (large-lv60, XLSR): a LayerNorm over
  channels after every conv; the transformer is pre-LN with a final LayerNorm.

The forward pass (B batch, N samples at 16 kHz, L frames at 50 Hz, C conv channels, D width):
  1. feature encoder: `len(conv_dim)` valid (unpadded) Conv1d layers, each followed by its norm
     (above) and `feat_extract_activation` -> extract `[B, L, C]`;
  2. feature projection: LayerNorm(C) then Dense(C -> D); `aux["extract_features"]` is the
     LayerNorm output, as in transformers;
  3. positional conv embedding: grouped Conv1d(D -> D, kernel `num_conv_pos_embeddings`, groups
     `num_conv_pos_embedding_groups`, padding kernel // 2, bias), weight-normalised over
     PyTorch's dim=2 (one norm per kernel tap: `w[k] = g[k] * v[k] / ||v[k]||`); with an even
     kernel the last output frame is dropped; then `feat_extract_activation`;
  4. encoder:
     post-LN: `x = LN(x + pos(x))`; per layer `x = LN1(x + Attn(x)); x = LN2(x + FF(x))`.
     stable:  `x = x + pos(x)`; per layer `x = x + Attn(LN1(x)); x = x + FF(LN2(x))`; then LN.
  Hidden states (`output_hidden_states=True`) follow transformers exactly: entry 0 is the input
  of the first layer (post-LN: after the encoder LayerNorm; stable: before any LayerNorm), entry
  k the output of layer k, and the last entry equals `last_hidden_state` (stable: the output of
  the last layer after the final encoder LayerNorm). There are `num_hidden_layers + 1` entries.

Padding: with `mask [B, N]` (True = real sample, a prefix of each row) the valid frames of each
row equal those of the unpadded row: padded frames are zeroed before the positional conv and
excluded as attention keys (as transformers does), and, unlike transformers, the per-channel
GroupNorm of the group variant takes its statistics over valid frames only (transformers
normalises over the padding too, which is why its base checkpoints say "do not pass an attention
mask"). Outputs at padded frames are unspecified.

Not implemented (inference only): dropout, LayerDrop, SpecAugment masking (`masked_spec_embed`),
adapters (`add_adapter`, `adapter_attn_dim`).

Parameter tree = transformers' module names with `/` for `.` (`encoder/layers/0/attention/
q_proj/kernel`), so a PyTorch key maps to a path by name; kernels in Flax layouts (Dense
`[in, out]`, Conv `[k, in/groups, out]`); the positional conv holds `weight_v [K, D/G, D]` and
`weight_g [K]`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# transformers' ACT2FN names -> functions ("gelu" is the exact erf GELU, as in PyTorch).
ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}
CONV_NORM_EPS = 1e-5  # PyTorch GroupNorm / LayerNorm default, used by the conv stack's norms.


def activation(name: str):
  """The activation function called `name` in transformers' configs.

  Raises:
    ValueError: an unknown name (the supported ones are `ACTIVATIONS`' keys).
  """
  if name not in ACTIVATIONS:
    raise ValueError(f"wav2vec 2.0: unsupported activation {name!r}; supported: "
                     f"{sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def conv_output_length(num_samples, conv_kernel: Sequence[int], conv_stride: Sequence[int]):
  """Frames the conv stack makes from `num_samples` samples (PyTorch Conv1d, no padding).

  `L = floor((n - k) / s) + 1` per layer, clamped at 0. For the standard stack (kernels
  10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: receptive field 400 samples, stride 320) this is
  `floor((N - 400) / 320) + 1` for N >= 400: 1 s of 16 kHz audio gives 49 frames.

  Args:
    num_samples: int or int array `[...]`.
    conv_kernel, conv_stride: per-layer kernel sizes and strides.

  Returns:
    int or int array `[...]` (same type as `num_samples`).
  """
  n = num_samples
  for k, s in zip(conv_kernel, conv_stride):
    n = (n - k) // s + 1
    n = max(n, 0) if isinstance(n, (int, np.integer)) else jnp.maximum(n, 0)
  return n


def receptive_field(conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
  """Samples seen by one output frame of the conv stack (400 for the standard stack)."""
  field, jump = 1, 1
  for k, s in zip(conv_kernel, conv_stride):
    field += (k - 1) * jump
    jump *= s
  return field


class ChannelNorm(nn.Module):
  """GroupNorm with one group per channel (PyTorch `GroupNorm(C, C)`): each channel of each row
  is normalised over time, statistics in float32, optionally over valid frames only.

  Attributes:
    epsilon: added to the variance. dtype / param_dtype.

  Args (call):
    x: `[B, L, C]`. mask: optional `[B, L]` bool, True = frame counted in the statistics.

  Returns:
    `[B, L, C]` in dtype (params `scale [C]`, `bias [C]`).
  """
  epsilon: float = CONV_NORM_EPS
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
    x = x.astype(jnp.float32)
    if mask is None:
      w = jnp.ones(x.shape[:2] + (1,), jnp.float32)
    else:
      w = mask[:, :, None].astype(jnp.float32)
    n = jnp.maximum(w.sum(axis=1, keepdims=True), 1.0)
    mean = (x * w).sum(axis=1, keepdims=True) / n
    var = (jnp.square(x - mean) * w).sum(axis=1, keepdims=True) / n
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(self.dtype)


class ConvLayer(nn.Module):
  """One feature-encoder layer: valid Conv1d -> norm ("group" / "layer" / "none") -> activation.

  Attributes:
    features: output channels. kernel, stride: conv size and stride (samples / frames).
    use_bias: conv bias (`conv_bias`). norm: "group" (ChannelNorm), "layer" (LayerNorm over
      channels) or "none". act: activation name. dtype / param_dtype.

  Args (call):
    x: `[B, L_in, C_in]`. mask: `[B, L_out]` bool, valid output frames (used by "group").

  Returns:
    `[B, L_out, features]` in dtype, `L_out = floor((L_in - kernel) / stride) + 1`.
  """
  features: int
  kernel: int
  stride: int
  use_bias: bool = False
  norm: str = "none"
  act: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Conv(self.features, (self.kernel,), strides=(self.stride,), padding="VALID",
                use_bias=self.use_bias, name="conv", **kw)(x)
    if self.norm == "group":
      x = ChannelNorm(name="layer_norm", **kw)(x, mask)
    elif self.norm == "layer":
      x = nn.LayerNorm(epsilon=CONV_NORM_EPS, use_fast_variance=False, name="layer_norm", **kw)(x)
    elif self.norm != "none":
      raise ValueError(f"ConvLayer: norm must be 'group', 'layer' or 'none', got {self.norm!r}")
    return activation(self.act)(x)


class ConvStack(nn.Module):
  """The feature encoder's conv layers, named "0", "1", ... (transformers' `conv_layers`).

  Attributes: see `Wav2Vec2Model` (conv_dim, conv_kernel, conv_stride, conv_bias,
  feat_extract_norm, act, dtype, param_dtype).

  Args (call):
    x: `[B, N, 1]` samples. lengths: optional `[B]` int, valid samples per row.

  Returns:
    `[B, L, C]` in dtype.
  """
  conv_dim: Sequence[int]
  conv_kernel: Sequence[int]
  conv_stride: Sequence[int]
  conv_bias: bool = False
  feat_extract_norm: str = "group"
  act: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, lengths=None):
    if self.feat_extract_norm not in ("group", "layer"):
      raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got "
                       f"{self.feat_extract_norm!r}")
    for i, (c, k, s) in enumerate(zip(self.conv_dim, self.conv_kernel, self.conv_stride)):
      if self.feat_extract_norm == "layer":
        norm = "layer"
      else:
        norm = "group" if i == 0 else "none"
      mask = None
      if norm == "group" and lengths is not None:
        out_len = (x.shape[1] - k) // s + 1
        valid = conv_output_length(lengths, [k], [s])
        mask = jnp.arange(out_len)[None, :] < valid[:, None]
      x = ConvLayer(c, k, s, use_bias=self.conv_bias, norm=norm, act=self.act, name=str(i),
                    dtype=self.dtype, param_dtype=self.param_dtype)(x, mask)
    return x


class FeatureEncoder(nn.Module):
  """Raw audio `[B, N]` -> conv features `[B, L, C]` (transformers' `feature_extractor`).

  Attributes: as `ConvStack`.
  """
  conv_dim: Sequence[int]
  conv_kernel: Sequence[int]
  conv_stride: Sequence[int]
  conv_bias: bool = False
  feat_extract_norm: str = "group"
  act: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, wav, lengths=None):
    return ConvStack(self.conv_dim, self.conv_kernel, self.conv_stride, self.conv_bias,
                     self.feat_extract_norm, self.act, self.dtype, self.param_dtype,
                     name="conv_layers")(wav[:, :, None].astype(self.dtype), lengths)


class FeatureProjection(nn.Module):
  """LayerNorm(C) then Dense(C -> D).

  Args (call):
    x: `[B, L, C]`.

  Returns:
    (`[B, L, D]`, normed `[B, L, C]`), both in dtype.
  """
  hidden_size: int
  layer_norm_eps: float = 1e-5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    normed = nn.LayerNorm(epsilon=self.layer_norm_eps, use_fast_variance=False,
                          name="layer_norm", **kw)(x)
    return nn.Dense(self.hidden_size, name="projection", **kw)(normed), normed


class WeightNormConv(nn.Module):
  """Grouped "same" Conv1d with weight normalisation over PyTorch's dim=2 (the kernel tap).

  `kernel[k] = weight_g[k] * weight_v[k] / ||weight_v[k]||` (norm over input and output
  channels), as `torch.nn.utils.weight_norm(conv, dim=2)`. Padding kernel // 2 on both sides;
  with an even kernel the last output frame is dropped (transformers' `Wav2Vec2SamePadLayer`),
  so the output has the input's length.

  Attributes:
    features: D (= input channels). kernel: K. groups: G. dtype / param_dtype.

  Args (call):
    x: `[B, L, D]`.

  Returns:
    `[B, L, D]` in dtype. Params `weight_v [K, D/G, D]`, `weight_g [K]`, `bias [D]`.
  """
  features: int
  kernel: int
  groups: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d, k, g = self.features, self.kernel, self.groups
    if x.shape[-1] != d or d % g:
      raise ValueError(f"WeightNormConv: input channels {x.shape[-1]} must equal features {d} "
                       f"and be divisible by groups {g}")
    v = self.param("weight_v", nn.initializers.he_normal(), (k, d // g, d), self.param_dtype)
    gain = self.param("weight_g", lambda _, shape, dt: jnp.linalg.norm(v, axis=(1, 2)).astype(dt),
                      (k,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (d,), self.param_dtype)
    v32 = v.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(v32), axis=(1, 2), keepdims=True))
    kernel = gain.astype(jnp.float32)[:, None, None] * v32 / norm
    pad = k // 2
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), window_strides=(1,),
        padding=[(pad, pad)], dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=g)
    if k % 2 == 0:
      y = y[:, :-1]
    return y + bias.astype(self.dtype)


class PositionalConvEmbedding(nn.Module):
  """Relative positions from a grouped conv (paper section 2): `act(WeightNormConv(x))`.

  Args (call):
    x: `[B, L, D]`.

  Returns:
    `[B, L, D]` in dtype (added to x by the encoder).
  """
  features: int
  kernel: int
  groups: int
  act: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = WeightNormConv(self.features, self.kernel, self.groups, self.dtype, self.param_dtype,
                       name="conv")(x)
    return activation(self.act)(y)


class SelfAttention(nn.Module):
  """Multi-head self-attention (q/k/v/out projections with bias), softmax in float32.

  Attributes:
    num_heads: H (D must be divisible). dtype / param_dtype.

  Args (call):
    x: `[B, L, D]`. mask: optional `[B, L]` bool, True = valid key.

  Returns:
    `[B, L, D]` in dtype.
  """
  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    b, l, d = x.shape
    h = self.num_heads
    if d % h:
      raise ValueError(f"SelfAttention: width {d} not divisible by {h} heads")
    dense = functools.partial(nn.Dense, d, dtype=self.dtype, param_dtype=self.param_dtype)
    q = dense(name="q_proj")(x).reshape(b, l, h, d // h)
    k = dense(name="k_proj")(x).reshape(b, l, h, d // h)
    v = dense(name="v_proj")(x).reshape(b, l, h, d // h)
    scores = jnp.einsum("bqhc,bkhc->bhqk", q.astype(jnp.float32), k.astype(jnp.float32))
    scores = scores / math.sqrt(d // h)
    if mask is not None:
      scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    w = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhqk,bkhc->bqhc", w.astype(self.dtype), v.astype(self.dtype))
    return dense(name="out_proj")(out.reshape(b, l, d))


class FeedForward(nn.Module):
  """Dense(D -> F), activation, Dense(F -> D) (`intermediate_dense`, `output_dense`)."""
  hidden_size: int
  intermediate_size: int
  act: str = "gelu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Dense(self.intermediate_size, name="intermediate_dense", **kw)(x)
    return nn.Dense(self.hidden_size, name="output_dense", **kw)(activation(self.act)(x))


class EncoderLayer(nn.Module):
  """One transformer layer, post-LN (`stable=False`) or pre-LN (`stable=True`), see module doc.

  Args (call):
    x: `[B, L, D]`. mask: optional `[B, L]` bool valid frames.

  Returns:
    `[B, L, D]` in dtype.
  """
  hidden_size: int
  num_heads: int
  intermediate_size: int
  act: str = "gelu"
  layer_norm_eps: float = 1e-5
  stable: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    ln = functools.partial(nn.LayerNorm, epsilon=self.layer_norm_eps, use_fast_variance=False,
                           **kw)
    attn = SelfAttention(self.num_heads, name="attention", **kw)
    ff = FeedForward(self.hidden_size, self.intermediate_size, self.act, name="feed_forward", **kw)
    norm1, norm2 = ln(name="layer_norm"), ln(name="final_layer_norm")
    if self.stable:
      x = x + attn(norm1(x), mask)
      return x + ff(norm2(x))
    x = norm1(x + attn(x, mask))
    return norm2(x + ff(x))


class EncoderLayers(nn.Module):
  """`num_layers` `EncoderLayer`s named "0", "1", ...; returns every layer's output (a list)."""
  num_layers: int
  hidden_size: int
  num_heads: int
  intermediate_size: int
  act: str = "gelu"
  layer_norm_eps: float = 1e-5
  stable: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    outs = []
    for i in range(self.num_layers):
      x = EncoderLayer(self.hidden_size, self.num_heads, self.intermediate_size, self.act,
                       self.layer_norm_eps, self.stable, self.dtype, self.param_dtype,
                       name=str(i))(x, mask)
      outs.append(x)
    return outs


class Encoder(nn.Module):
  """Positional conv embedding + transformer (post-LN or stable), see the module docstring.

  Args (call):
    x: `[B, L, D]` projected features. mask: optional `[B, L]` bool valid frames.

  Returns:
    (last_hidden_state `[B, L, D]`, hidden_states: tuple of `num_layers + 1` `[B, L, D]`), in
    dtype; hidden_states follow transformers' definition (module docstring).
  """
  num_layers: int
  hidden_size: int
  num_heads: int
  intermediate_size: int
  pos_kernel: int
  pos_groups: int
  act: str = "gelu"
  pos_act: str = "gelu"
  layer_norm_eps: float = 1e-5
  stable: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if mask is not None:
      x = jnp.where(mask[:, :, None], x, 0).astype(x.dtype)
    x = x + PositionalConvEmbedding(self.hidden_size, self.pos_kernel, self.pos_groups,
                                    self.pos_act, name="pos_conv_embed", **kw)(x)
    ln = nn.LayerNorm(epsilon=self.layer_norm_eps, use_fast_variance=False, name="layer_norm",
                      **kw)
    if not self.stable:
      x = ln(x)
    outs = EncoderLayers(self.num_layers, self.hidden_size, self.num_heads,
                         self.intermediate_size, self.act, self.layer_norm_eps, self.stable,
                         name="layers", **kw)(x, mask)
    last = outs[-1] if outs else x
    if self.stable:
      last = ln(last)
    hidden = (x,) + tuple(outs[:-1]) + (last,) if outs else (last,)
    return last, hidden


class Wav2Vec2Model(nn.Module):
  """wav2vec 2.0 base model (transformers' `Wav2Vec2Model`), inference only.

  Attributes mirror transformers' `Wav2Vec2Config` fields of the same names (read from a
  checkpoint's config.json by `jaxtalk.features.wav2vec.model_from_config`):
    conv_dim, conv_kernel, conv_stride: per conv layer channels, kernel, stride (equal lengths).
    conv_bias: conv layers have a bias. feat_extract_norm: "group" or "layer".
    feat_extract_activation: conv stack and positional conv activation.
    hidden_size: D. num_hidden_layers, num_attention_heads, intermediate_size, hidden_act:
      transformer depth, heads, feed-forward width and activation.
    num_conv_pos_embeddings, num_conv_pos_embedding_groups: positional conv kernel and groups.
    layer_norm_eps: epsilon of the projection and transformer LayerNorms (the conv stack's norms
      use PyTorch's default 1e-5, as transformers' PyTorch model does).
    do_stable_layer_norm: pre-LN transformer with final LayerNorm (True) or post-LN (False).
    dtype: compute dtype (bf16 on accelerators); norms and softmax compute in float32.
    param_dtype: float32.

  Args (call):
    wav: `[B, N]` float 16 kHz samples, normalised as the checkpoint's feature extractor expects
      (`jaxtalk.features.wav2vec.normalize_wav`). Needs N >= the receptive field (400) for one
      frame.
    mask: optional `[B, N]` bool/int, 1 = real sample; each row's real samples must be a prefix.
    output_hidden_states: also return every layer's hidden state.

  Returns:
    (last_hidden_state `[B, L, D]` in dtype, aux) with aux:
      "extract_features": `[B, L, C]` LayerNorm-ed conv features (transformers' same-named
        output); "frame_mask": `[B, L]` bool valid frames (all True without `mask`);
      "hidden_states" (only with output_hidden_states): tuple of `num_hidden_layers + 1`
        `[B, L, D]`, transformers' definition (module docstring).
    `L = conv_output_length(N)` (see `num_frames`).

  Raises:
    ValueError: wav not rank 2, or too short for one frame; mask shape differs from wav's.
  """
  conv_dim: Sequence[int] = (512,) * 7
  conv_kernel: Sequence[int] = (10, 3, 3, 3, 3, 2, 2)
  conv_stride: Sequence[int] = (5, 2, 2, 2, 2, 2, 2)
  conv_bias: bool = False
  feat_extract_norm: str = "group"
  feat_extract_activation: str = "gelu"
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  layer_norm_eps: float = 1e-5
  do_stable_layer_norm: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def num_frames(self, num_samples):
    """Output frames L for `num_samples` (int or int array), see `conv_output_length`."""
    return conv_output_length(num_samples, self.conv_kernel, self.conv_stride)

  @property
  def samples_per_frame(self) -> int:
    """Total conv stride in samples (320 for the standard stack: 50 frames/s at 16 kHz)."""
    return int(np.prod(self.conv_stride))

  @property
  def receptive_field(self) -> int:
    """Samples one frame sees (400 for the standard stack); frame j sees
    `[j * samples_per_frame, j * samples_per_frame + receptive_field)`."""
    return receptive_field(self.conv_kernel, self.conv_stride)

  @nn.compact
  def __call__(self, wav, *, mask: Optional[jax.Array] = None, output_hidden_states: bool = False):
    if wav.ndim != 2:
      raise ValueError(f"Wav2Vec2Model: wav must be [B, N], got shape {wav.shape}")
    if self.num_frames(wav.shape[1]) < 1:
      raise ValueError(f"Wav2Vec2Model: {wav.shape[1]} samples give no frame (the receptive "
                       f"field is {self.receptive_field} samples)")
    if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
      raise ValueError(f"conv_dim {self.conv_dim}, conv_kernel {self.conv_kernel} and conv_stride "
                       f"{self.conv_stride} must have the same length")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    lengths = None
    if mask is not None:
      if mask.shape != wav.shape:
        raise ValueError(f"Wav2Vec2Model: mask {mask.shape} must match wav {wav.shape}")
      lengths = jnp.sum(mask.astype(jnp.int32), axis=1)
    feats = FeatureEncoder(self.conv_dim, self.conv_kernel, self.conv_stride, self.conv_bias,
                           self.feat_extract_norm, self.feat_extract_activation,
                           name="feature_extractor", **kw)(wav, lengths)
    l = feats.shape[1]
    if lengths is None:
      frame_mask = jnp.ones((wav.shape[0], l), bool)
    else:
      frame_mask = jnp.arange(l)[None, :] < self.num_frames(lengths)[:, None]
    x, extract = FeatureProjection(self.hidden_size, self.layer_norm_eps,
                                   name="feature_projection", **kw)(feats)
    last, hidden = Encoder(
        self.num_hidden_layers, self.hidden_size, self.num_attention_heads,
        self.intermediate_size, self.num_conv_pos_embeddings, self.num_conv_pos_embedding_groups,
        self.hidden_act, self.feat_extract_activation, self.layer_norm_eps,
        self.do_stable_layer_norm, name="encoder", **kw)(x, None if mask is None else frame_mask)
    aux = {"extract_features": extract, "frame_mask": frame_mask}
    if output_hidden_states:
      aux["hidden_states"] = hidden
    return last, aux
