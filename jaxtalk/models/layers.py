"""Shared building blocks: convolutions, residual/up blocks, AdaIN, attention, Conformer,
warping.

Conventions used throughout jaxtalk:

* Images and feature maps are NHWC: `[N, H, W, C]`. Sequences are `[B, T, D]`.
* Parameters are float32 (`param_dtype`), computation runs in `dtype` (float32 or bfloat16).
  Normalisation statistics, softmax, flow fields and sampling coordinates are always float32.
* Parameters carry logical axis names from `jaxtalk.core.sharding.LOGICAL_AXES`.

Warping (PoseTalk eqs. 4-5, "differentiable backward warping"):

* A flow is `[N, H, W, 2]` float32 **in pixels of the grid it is defined on**, channel order
  `(dx, dy)` (dx along width / columns, dy along height / rows).
* It is a *backward* flow: output pixel `p = (x, y)` samples the input at `p + flow(p)`.
* Pixel `(x, y)` is the centre of column x, row y; coordinates are integers at pixel centres.
  This is `align_corners=True` in pixel units: sample positions `0 .. W-1` cover the image from
  the first to the last pixel centre. Resizing a flow from width W to W' multiplies dx by W'/W
  (dy by H'/H) and resamples it at pixel centres (`resize_flow`).
* Bilinear interpolation; samples falling outside the image take the value 0 (`padding="zeros"`,
  each of the 4 neighbours outside the image contributes 0) or the nearest border pixel
  (`padding="border"`). Gradients flow to both the image and the flow (the flow gradient is the
  bilinear slope, defined almost everywhere; at exact integer positions it is the one-sided slope
  towards the next pixel).
* A zero flow gives the input exactly (the weights are exactly 1 and 0).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

Dtype = Any

# ---------------------------------------------------------------------------------------------
# Parameter initialisers with logical axis names.
# ---------------------------------------------------------------------------------------------


def _part(init, names):
  return nn.with_logical_partitioning(init, names)


def conv_kernel_init(ndim: int = 2, scale: float = 1.0):
  """He-style (fan-in) normal init for a conv kernel with logical names."""
  init = nn.initializers.variance_scaling(scale, "fan_in", "normal")
  return _part(init, ("kernel",) * ndim + ("conv_in", "conv_out"))


def dense_kernel_init(names=("embed", "mlp"), scale: float = 1.0):
  init = nn.initializers.variance_scaling(scale, "fan_in", "normal")
  return _part(init, names)


def zeros_init(names):
  return _part(nn.initializers.zeros_init(), names)


def ones_init(names):
  return _part(nn.initializers.ones_init(), names)


class Conv(nn.Module):
  """2D (or 1D) convolution with logical-axis-annotated params.

  Attributes:
    features: output channels.
    kernel_size: spatial kernel size (int or tuple).
    strides: stride (int or tuple).
    padding: "SAME", "VALID" or explicit padding.
    use_bias: add a bias.
    feature_group_count: groups (channels for depthwise).
    zero_init: initialise kernel and bias to zero (output heads that should start as identity).
    bias_init_value: constant initial bias.
    ndim: 2 for images `[N, H, W, C]`, 1 for sequences `[B, T, C]`.
    kernel_dilation: dilation of the kernel (int or tuple; 1 = dense), as `nn.Conv`'s.
    dtype / param_dtype: compute / parameter dtypes.
  """
  features: int
  kernel_size: Any = 3
  strides: Any = 1
  kernel_dilation: Any = 1
  padding: Any = "SAME"
  use_bias: bool = True
  feature_group_count: int = 1
  zero_init: bool = False
  bias_init_value: float = 0.0
  ndim: int = 2
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    ks = self.kernel_size
    ks = (ks,) * self.ndim if isinstance(ks, int) else tuple(ks)
    st = self.strides
    st = (st,) * self.ndim if isinstance(st, int) else tuple(st)
    if self.zero_init:
      kinit = _part(nn.initializers.zeros_init(), ("kernel",) * self.ndim + ("conv_in", "conv_out"))
    else:
      kinit = conv_kernel_init(self.ndim)
    binit = _part(nn.initializers.constant(self.bias_init_value), ("conv_out",))
    return nn.Conv(
        self.features, ks, strides=st, padding=self.padding, use_bias=self.use_bias,
        kernel_dilation=self.kernel_dilation, feature_group_count=self.feature_group_count, kernel_init=kinit, bias_init=binit,
        dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)


class Dense(nn.Module):
  """Dense layer with logical axis names `names` = (in, out)."""
  features: int
  names: Sequence[str] = ("embed", "mlp")
  use_bias: bool = True
  zero_init: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kinit = (_part(nn.initializers.zeros_init(), tuple(self.names)) if self.zero_init
             else dense_kernel_init(tuple(self.names)))
    return nn.Dense(
        self.features, use_bias=self.use_bias, kernel_init=kinit,
        bias_init=zeros_init((self.names[-1],)), dtype=self.dtype,
        param_dtype=self.param_dtype, name="dense")(x)


class LayerNorm(nn.Module):
  """LayerNorm over the last axis; statistics in float32, output in `dtype`."""
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    return nn.LayerNorm(
        dtype=self.dtype, param_dtype=self.param_dtype, use_scale=self.use_scale,
        use_bias=self.use_bias, scale_init=ones_init(("norm",)), bias_init=zeros_init(("norm",)),
        name="ln")(x.astype(jnp.float32)).astype(self.dtype)


def instance_norm(x, eps: float = 1e-5):
  """Per-sample, per-channel normalisation over H, W of `[N, H, W, C]`, in float32."""
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  var = jnp.var(x32, axis=(1, 2), keepdims=True)
  return (x32 - mean) * jax.lax.rsqrt(var + eps)


class GroupNorm(nn.Module):
  """GroupNorm (statistics in float32), `num_groups` capped at the channel count."""
  num_groups: int = 8
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    g = math.gcd(self.num_groups, c)
    y = nn.GroupNorm(
        num_groups=g, dtype=jnp.float32, param_dtype=self.param_dtype,
        scale_init=ones_init(("norm",)), bias_init=zeros_init(("norm",)), name="gn")(
            x.astype(jnp.float32))
    return y.astype(self.dtype)


class AdaIN(nn.Module):
  """Adaptive instance normalisation (Huang & Belongie 2017): injects a latent into features.

  `out = IN(x) * (1 + gamma(z)) + beta(z)`, with `gamma`, `beta` linear in `z` (zero-initialised,
  so at initialisation AdaIN is a plain instance norm). Statistics in float32.

  Attributes:
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    x: `[N, H, W, C]` features.
    z: `[N, D]` latent (one per image).

  Returns:
    `[N, H, W, C]` in `dtype`.
  """
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, z):
    if x.ndim != 4 or z.ndim != 2 or z.shape[0] != x.shape[0]:
      raise ValueError(f"AdaIN: expected x [N,H,W,C] and z [N,D], got {x.shape} and {z.shape}")
    c = x.shape[-1]
    style = Dense(2 * c, names=("embed", "mlp"), zero_init=True, dtype=jnp.float32,
                  param_dtype=self.param_dtype, name="style")(z.astype(jnp.float32))
    gamma, beta = jnp.split(style, 2, axis=-1)
    y = instance_norm(x) * (1.0 + gamma[:, None, None, :]) + beta[:, None, None, :]
    return y.astype(self.dtype)


def _act(x):
  return nn.leaky_relu(x, 0.2)


class ConvAdaIN(nn.Module):
  """Conv -> AdaIN(z) -> LeakyReLU(0.2): the CoarseNet/RefineNet block (PoseTalk Fig. 11)."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, z):
    x = Conv(self.features, self.kernel_size, self.strides, dtype=self.dtype,
             param_dtype=self.param_dtype, name="conv")(x)
    x = AdaIN(dtype=self.dtype, param_dtype=self.param_dtype, name="adain")(x, z)
    return _act(x)


class ResBlock(nn.Module):
  """Pre-activation residual block: (GN, LReLU, conv) x 2 + (1x1) shortcut.

  Attributes:
    features: output channels.
    dtype / param_dtype: compute / parameter dtypes.
  """
  features: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = Conv(self.features, 3, name="conv1", **kw)(_act(GroupNorm(name="gn1", **kw)(x)))
    h = Conv(self.features, 3, name="conv2", **kw)(_act(GroupNorm(name="gn2", **kw)(h)))
    if x.shape[-1] != self.features:
      x = Conv(self.features, 1, use_bias=False, name="skip", **kw)(x)
    return x + h


class UpBlock(nn.Module):
  """2x nearest upsampling -> Conv(3x3) -> GN -> LReLU."""
  features: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = upsample2x(x)
    return _act(GroupNorm(name="gn", **kw)(Conv(self.features, 3, name="conv", **kw)(x)))


def upsample2x(x):
  """Nearest-neighbour 2x upsampling of `[N, H, W, C]`."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


# ---------------------------------------------------------------------------------------------
# Warping and resampling.
# ---------------------------------------------------------------------------------------------


def pixel_grid(height: int, width: int) -> jax.Array:
  """`[H, W, 2]` float32 grid of pixel-centre coordinates `(x, y)` (x = column, y = row)."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                        jnp.arange(width, dtype=jnp.float32), indexing="ij")
  return jnp.stack([xs, ys], axis=-1)


def bilinear_sample(image, coords, *, padding: str = "zeros"):
  """Samples `image` at absolute pixel coordinates with bilinear interpolation.

  Args:
    image: `[N, H, W, C]` image or features, any float dtype.
    coords: `[N, Ho, Wo, 2]` sample positions `(x, y)` in input pixels (pixel centres are
      integers); cast to float32.
    padding: "zeros" (outside neighbours contribute 0) or "border" (clamp to the edge pixel).

  Returns:
    `[N, Ho, Wo, C]` in the dtype of `image` (interpolation itself runs in float32).

  Raises:
    ValueError: on mismatched ranks/batch sizes or an unknown padding mode.
  """
  if image.ndim != 4 or coords.ndim != 4 or coords.shape[-1] != 2:
    raise ValueError(f"bilinear_sample: expected image [N,H,W,C] and coords [N,Ho,Wo,2], got "
                     f"{image.shape} and {coords.shape}")
  if image.shape[0] != coords.shape[0]:
    raise ValueError(f"bilinear_sample: batch mismatch {image.shape} vs {coords.shape}")
  if padding not in ("zeros", "border"):
    raise ValueError(f"bilinear_sample: padding must be 'zeros' or 'border', got {padding!r}")
  n, h, w, c = image.shape
  coords = coords.astype(jnp.float32)
  x, y = coords[..., 0], coords[..., 1]
  if padding == "border":
    x = jnp.clip(x, 0.0, w - 1.0)
    y = jnp.clip(y, 0.0, h - 1.0)
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  wx1 = x - x0
  wy1 = y - y0
  wx0 = 1.0 - wx1
  wy0 = 1.0 - wy1
  x0i = x0.astype(jnp.int32)
  y0i = y0.astype(jnp.int32)
  flat = image.reshape(n, h * w, c)
  ho, wo = coords.shape[1:3]

  def tap(yi, xi, wgt):
    valid = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
    idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
    vals = jnp.take_along_axis(flat, idx.reshape(n, ho * wo, 1), axis=1).reshape(n, ho, wo, c)
    wgt = jnp.where(valid, wgt, 0.0)
    return vals.astype(jnp.float32) * wgt[..., None]

  out = (tap(y0i, x0i, wy0 * wx0) + tap(y0i, x0i + 1, wy0 * wx1)
         + tap(y0i + 1, x0i, wy1 * wx0) + tap(y0i + 1, x0i + 1, wy1 * wx1))
  return out.astype(image.dtype)


def warp(image, flow, *, padding: str = "zeros"):
  """Backward-warps `image` by `flow`: `out[p] = image[p + flow[p]]` (bilinear).

  Args:
    image: `[N, H, W, C]` image or feature map.
    flow: `[N, H, W, 2]` backward flow in pixels, `(dx, dy)`, same H, W as `image` (see the
      module docstring for conventions). Kept in float32.
    padding: "zeros" or "border".

  Returns:
    `[N, H, W, C]` in the dtype of `image`. A zero flow returns `image` exactly.

  Raises:
    ValueError: if the shapes do not match.
  """
  if flow.ndim != 4 or flow.shape[-1] != 2 or flow.shape[:3] != image.shape[:3]:
    raise ValueError(f"warp: expected flow [N,H,W,2] matching image {image.shape}, got "
                     f"{flow.shape}")
  grid = pixel_grid(image.shape[1], image.shape[2])
  return bilinear_sample(image, grid[None] + flow.astype(jnp.float32), padding=padding)


def trilinear_sample(volume, coords):
  """Samples a feature volume at absolute voxel coordinates with trilinear interpolation.

  The 3-D counterpart of `bilinear_sample` (PC-Talk / LivePortrait's `grid_sample` of the
  appearance volume): voxel centres are integers, samples outside the volume take 0 (each of
  the 8 neighbours outside contributes 0, `padding_mode="zeros"`).

  Args:
    volume: `[N, D, H, W, C]` features, any float dtype.
    coords: `[N, Do, Ho, Wo, 3]` positions `(x, y, z)` in voxels (x along W, y along H, z along
      D); cast to float32.

  Returns:
    `[N, Do, Ho, Wo, C]` in the dtype of `volume` (interpolation in float32). Integer coordinates
    return the voxels exactly.

  Raises:
    ValueError: on mismatched ranks or batch sizes.
  """
  if volume.ndim != 5 or coords.ndim != 5 or coords.shape[-1] != 3:
    raise ValueError(f"trilinear_sample: expected volume [N,D,H,W,C] and coords [N,Do,Ho,Wo,3], "
                     f"got {volume.shape} and {coords.shape}")
  if volume.shape[0] != coords.shape[0]:
    raise ValueError(f"trilinear_sample: batch mismatch {volume.shape} vs {coords.shape}")
  n, d, h, w, c = volume.shape
  coords = coords.astype(jnp.float32)
  lo = jnp.floor(coords)
  frac = coords - lo
  lo = lo.astype(jnp.int32)
  flat = volume.reshape(n, d * h * w, c)
  out_shape = coords.shape[:-1]
  m = out_shape[1] * out_shape[2] * out_shape[3]
  out = jnp.zeros(out_shape + (c,), jnp.float32)
  for dz in (0, 1):
    for dy in (0, 1):
      for dx in (0, 1):
        xi, yi, zi = lo[..., 0] + dx, lo[..., 1] + dy, lo[..., 2] + dz
        wgt = ((frac[..., 0] if dx else 1.0 - frac[..., 0])
               * (frac[..., 1] if dy else 1.0 - frac[..., 1])
               * (frac[..., 2] if dz else 1.0 - frac[..., 2]))
        valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (zi >= 0) & (zi < d)
        idx = (jnp.clip(zi, 0, d - 1) * h + jnp.clip(yi, 0, h - 1)) * w + jnp.clip(xi, 0, w - 1)
        vals = jnp.take_along_axis(flat, idx.reshape(n, m, 1), axis=1).reshape(out_shape + (c,))
        out = out + vals.astype(jnp.float32) * jnp.where(valid, wgt, 0.0)[..., None]
  return out.astype(volume.dtype)


def resize_images(x, height: int, width: int):
  """Bilinear resize of `[N, H, W, C]` at pixel centres (antialiased when shrinking)."""
  n, _, _, c = x.shape
  return jax.image.resize(x, (n, height, width, c), method="linear").astype(x.dtype)


def resize_flow(flow, height: int, width: int):
  """Resizes a pixel-unit flow `[N, H, W, 2]` to `(height, width)` and rescales its vectors.

  dx is multiplied by `width / W` and dy by `height / H`, so the flow keeps pointing at the same
  image content. Returns float32.
  """
  n, h, w, _ = flow.shape
  f = jax.image.resize(flow.astype(jnp.float32), (n, height, width, 2), method="linear")
  scale = jnp.asarray([width / w, height / h], jnp.float32)
  return f * scale


# ---------------------------------------------------------------------------------------------
# Attention and Conformer.
# ---------------------------------------------------------------------------------------------


def sinusoidal_embedding(positions, dim: int):
  """`[..., dim]` float32 sin/cos embedding of (possibly negative) positions."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))
  ang = positions.astype(jnp.float32)[..., None] * freqs
  emb = jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
  return emb


class MultiHeadAttention(nn.Module):
  """Multi-head (self or cross) attention, optionally with relative positions.

  With `relative=True` (self-attention only) the scores follow Transformer-XL (Dai et al. 2019),
  as in Conformer (Gulati et al. 2020): `(q + u)·k + (q + v)·W_r r(i - j)` with sinusoidal
  `r(·)` of the relative distance and learnt per-head biases `u`, `v`.

  Attributes:
    num_heads: heads. head_dim: per-head width (default `D // num_heads`).
    relative: use relative-position scores.
    dropout: attention-weight dropout (active when `train=True`).
    dtype / param_dtype: compute / parameter dtypes (softmax in float32).

  Args (call):
    x: `[B, T, D]` queries. context: `[B, S, Dc]` keys/values (default `x`).
    mask: `[B, S]` bool, True = valid key; invalid keys get zero weight.
    train: enables dropout (needs the 'dropout' rng).

  Returns:
    `[B, T, D]` in `dtype`.
  """
  num_heads: int = 4
  head_dim: Optional[int] = None
  relative: bool = False
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, context=None, *, mask=None, train: bool = False):
    d = x.shape[-1]
    h = self.num_heads
    dh = self.head_dim or d // h
    if dh * h == 0:
      raise ValueError(f"MultiHeadAttention: width {d} too small for {h} heads")
    self_attn = context is None
    context = x if self_attn else context
    if self.relative and not self_attn:
      raise ValueError("relative positions are only defined for self-attention")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def proj(name, inp):
      return HeadsProjection(h, dh, name=name, **kw)(inp)

    q = proj("query", x)          # [B, T, H, dh]
    k = proj("key", context)      # [B, S, H, dh]
    v = proj("value", context)
    q32, k32 = q.astype(jnp.float32), k.astype(jnp.float32)
    scale = 1.0 / math.sqrt(dh)
    if self.relative:
      u = self.param("pos_bias_u", zeros_init(("heads", "kv")), (h, dh), self.param_dtype)
      vb = self.param("pos_bias_v", zeros_init(("heads", "kv")), (h, dh), self.param_dtype)
      t = x.shape[1]
      rel = jnp.arange(t - 1, -t, -1)                          # distances i - j: t-1 .. -(t-1)
      r = sinusoidal_embedding(rel, d)                         # [2T-1, D]
      r = HeadsProjection(h, dh, use_bias=False, dtype=jnp.float32,
                          param_dtype=self.param_dtype, name="pos_proj")(r)  # [2T-1, H, dh]
      content = jnp.einsum("bthd,bshd->bhts", q32 + u, k32)
      pos = jnp.einsum("bthd,rhd->bhtr", q32 + vb, r)          # [B, H, T, 2T-1]
      # Entry (i, j) needs relative distance i - j, stored at index (t - 1) - (i - j).
      idx = (t - 1) - (jnp.arange(t)[:, None] - jnp.arange(t)[None, :])   # [T, T]
      pos = jnp.take_along_axis(
          pos, jnp.broadcast_to(idx, pos.shape[:2] + (t, t)), axis=-1)
      scores = (content + pos) * scale
    else:
      scores = jnp.einsum("bthd,bshd->bhts", q32, k32) * scale
    if mask is not None:
      if mask.shape != (x.shape[0], context.shape[1]):
        raise ValueError(f"attention mask: expected {(x.shape[0], context.shape[1])}, got "
                         f"{mask.shape}")
      scores = jnp.where(mask[:, None, None, :], scores, -1e30)
    weights = jax.nn.softmax(scores, axis=-1)
    if mask is not None:  # Rows whose keys are all masked give zeros, not a uniform average.
      weights = jnp.where(jnp.any(mask, axis=-1)[:, None, None, None], weights, 0.0)
    weights = nn.Dropout(self.dropout, deterministic=not train)(weights)
    out = jnp.einsum("bhts,bshd->bthd", weights.astype(self.dtype), v.astype(self.dtype))
    kernel = self.param(
        "out_kernel", _part(nn.initializers.variance_scaling(1.0, "fan_in", "normal",
                                                             in_axis=(0, 1), out_axis=2),
                            ("heads", "kv", "embed")), (h, dh, d), self.param_dtype)
    bias = self.param("out_bias", zeros_init(("embed",)), (d,), self.param_dtype)
    return (jnp.einsum("bthd,hde->bte", out, kernel.astype(self.dtype)) +
            bias.astype(self.dtype))


class HeadsProjection(nn.Module):
  """`[..., D] -> [..., H, dh]` projection with a `[D, H, dh]` kernel (names embed/heads/kv).

  (flax's DenseGeneral reshapes multi-axis kernels through a 2-D initialiser, which breaks
  logical-axis constraints, hence this explicit version.)
  """
  num_heads: int
  head_dim: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=0, out_axis=(1, 2))
    kernel = self.param("kernel", _part(init, ("embed", "heads", "kv")),
                        (d, self.num_heads, self.head_dim), self.param_dtype)
    y = jnp.einsum("...d,dhk->...hk", x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", zeros_init(("heads", "kv")), (self.num_heads, self.head_dim),
                        self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


class FeedForward(nn.Module):
  """LayerNorm -> Dense(mult*D) -> Swish -> Dropout -> Dense(D) -> Dropout (Conformer FFN).

  With `dilation` set, the first layer is a kernel-3 Conv1d over time with that dilation instead
  of the Dense (GoHD section 3.1: conformers whose feed-forward is a dilated convolution, as
  DiffWave's layers); then the input must be `[B, T, D]` and padded frames (`mask=False`) are
  zeroed before the convolution.
  """
  mult: int = 4
  dropout: float = 0.0
  dilation: Optional[int] = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    d = x.shape[-1]
    y = LayerNorm(name="ln", **kw)(x)
    if self.dilation is None:
      y = Dense(self.mult * d, names=("embed", "mlp"), name="fc1", **kw)(y)
    else:
      if mask is not None:
        y = jnp.where(mask[..., None], y, 0)
      y = Conv(self.mult * d, 3, kernel_dilation=self.dilation, ndim=1, name="fc1", **kw)(y)
    y = nn.swish(y)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    y = Dense(d, names=("mlp", "embed"), name="fc2", **kw)(y)
    return nn.Dropout(self.dropout, deterministic=not train)(y)


class ConvModule(nn.Module):
  """Conformer convolution module: LN -> pointwise(2D) -> GLU -> depthwise conv -> norm -> Swish
  -> pointwise -> dropout.

  The paper's BatchNorm is replaced by LayerNorm (no running statistics, and padded frames cannot
  leak into the statistics). Padded frames (`mask=False`) are zeroed before the depthwise conv,
  so valid outputs never depend on padding content.
  """
  kernel_size: int = 15
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    d = x.shape[-1]
    y = LayerNorm(name="ln", **kw)(x)
    y = Dense(2 * d, names=("embed", "mlp"), name="pw1", **kw)(y)
    y = nn.glu(y, axis=-1)
    if mask is not None:
      y = jnp.where(mask[..., None], y, 0)
    y = Conv(d, self.kernel_size, feature_group_count=d, ndim=1, name="dw", **kw)(y)
    y = nn.swish(LayerNorm(name="ln_dw", **kw)(y))
    y = Dense(d, names=("mlp", "embed"), name="pw2", **kw)(y)
    return nn.Dropout(self.dropout, deterministic=not train)(y)


class ConformerBlock(nn.Module):
  """Conformer block (Gulati et al. 2020, Fig. 1).

  `x + ½FFN(x)` -> `+ MHSA_rel(LN(x))` -> `+ Conv(x)` -> `+ ½FFN(x)` -> LayerNorm.

  Attributes:
    num_heads: attention heads. ff_mult: FFN expansion. conv_kernel: depthwise kernel size.
    ff_dilation: when set, both FFNs start with a dilated kernel-3 Conv1d (`FeedForward`), as in
      GoHD's pose denoiser (section 3.1, Fig. 3).
    dropout: dropout rate (active when `train=True`).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    x: `[B, T, D]` (any T >= 1, odd or even).
    mask: optional `[B, T]` bool (True = valid). Padded frames are excluded from attention keys
      and zeroed before the depthwise convolution, so valid outputs do not depend on them.
      Outputs at padded frames are set to 0.
    train: dropout on/off.

  Returns:
    `[B, T, D]` in `dtype`.
  """
  num_heads: int = 4
  ff_mult: int = 4
  conv_kernel: int = 15
  ff_dilation: Optional[int] = None
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, mask=None, train: bool = False):
    if x.ndim != 3:
      raise ValueError(f"ConformerBlock: expected [B, T, D], got {x.shape}")
    if mask is not None and mask.shape != x.shape[:2]:
      raise ValueError(f"ConformerBlock: mask {mask.shape} does not match x {x.shape[:2]}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = x.astype(self.dtype)
    if mask is not None:
      x = jnp.where(mask[..., None], x, 0)
    x = nn.with_logical_constraint(x, ("batch", "time", "embed"))
    ff = functools.partial(FeedForward, self.ff_mult, self.dropout, self.ff_dilation, **kw)
    x = x + 0.5 * ff(name="ff1")(x, mask=mask, train=train)
    y = LayerNorm(name="ln_att", **kw)(x)
    y = MultiHeadAttention(self.num_heads, relative=True, dropout=self.dropout, name="mhsa",
                           **kw)(y, mask=mask, train=train)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
    x = x + ConvModule(self.conv_kernel, self.dropout, name="conv", **kw)(x, mask=mask,
                                                                         train=train)
    x = x + 0.5 * ff(name="ff2")(x, mask=mask, train=train)
    x = LayerNorm(name="ln_out", **kw)(x)
    if mask is not None:
      x = jnp.where(mask[..., None], x, 0)
    return nn.with_logical_constraint(x, ("batch", "time", "embed"))


def tanh_skip(logits, base, eps: float = 1e-3):
  """`tanh(logits + atanh(base))`: a conv + tanh output head with a skip from an image.

  With zero `logits` this returns `base` (clipped to `[-1+eps, 1-eps]`), so an output head
  initialised at zero starts as the identity on `base`. Float32.
  """
  b = jnp.clip(base.astype(jnp.float32), -1.0 + eps, 1.0 - eps)
  return jnp.tanh(logits.astype(jnp.float32) + jnp.arctanh(b))
