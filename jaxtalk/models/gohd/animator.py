"""GoHD's latent navigable face animator (section 3.3, eq. 9, Fig. 2, Fig. 8), LIA-style.

LIA (Wang et al. 2022, "Latent Image Animator") navigates a latent space: a source image is
encoded to a code z^R and multi-scale features; a motion is a vector η = Σ_i ξ_i m_i over a
learned orthonormal codebook M = [m_1 .. m_n]; a StyleGAN2-style decoder styled by
z^D = z^R + η predicts, at every scale, a flow and a mask that warp the encoder's feature of that
scale, and outputs the frame. GoHD keeps LIA's source encoder, codebook and decoder and replaces
LIA's driving *image* by explicit descriptors (its "driving branch"):

    q_{t-r:t+r} = p_{t-r:t+r} ⊕ e_{t-r:t+r}          pose (6) ⊕ expression (64) of 2r+1 frames
    ρ^D_t = maxpool_window(Conv1d-stack(q)) ⊕ g       g: gaze (pitch, yaw), [2]
    ξ = MLP(ρ^D_t ⊕ z^R)                              [n] magnitudes (n = 20)
    η_{R->D_t} = Σ_i ξ_i m_i = M ξ                    eq. 9, M [latent, n], MᵀM = I
    z^D_t = z^R + λ η_{R->D_t}                         λ = 1 (Fig. 8 interpolates λ in [0, 1])
    Î^D_t = Decoder(z^D_t, features(I^S))

Units: pose, expression and gaze enter as the input pipeline delivers them (pose and gaze
normalised with the dataset statistics, expression in the basis' units, `jaxtalk/tasks`); the
animator must be driven in the units it was trained on. Images are `[N, H, W, 3]` float32 in
[-1, 1], square, H a power of two >= 8.

What mirrors LIA / the GoHD release (github Jia1018/GoHD, `Generator_Semantic`):
  * source encoder (LIA `EncoderApp`): 1x1 conv, then residual blocks halving the resolution down
    to 4x4, then a 4x4 VALID conv to the latent (no bias); features of every resolution from 8 to
    H are kept for the decoder. Channels per resolution r: min(channel_max, channel_base / r)
    (LIA: 512 up to 32², 256 / 128 / 64 at 64² / 128² / 256², i.e. channel_base = 16384 x LIA's
    channel multiplier, channel_max = 512). LeakyReLU(0.2) x sqrt(2) (LIA's FusedLeakyReLU).
  * codebook (LIA `Direction`): a learned `[latent, n]` weight, orthonormalised by a QR
    decomposition at every call (M = Q of QR(W + 1e-8)), so MᵀM = I whatever the weight.
  * decoder (LIA `Synthesis`): a learned 4x4 constant, then per resolution 8 .. H two
    StyledConvs (modulated 3x3 convolutions with demodulation, Karras et al. 2020, styled by z^D;
    the first upsamples), a ToFlow head (modulated 1x1 conv without demodulation -> 3 logits;
    the logits of the coarser scale, upsampled, are added: the flow accumulates across scales),
    offset = tanh(logits[:2]) in normalised image units, mask = sigmoid(logits[2]); the encoder
    feature of that scale is backward-warped by the offset (`layers.warp`, zero padding as
    `grid_sample`) and blended: x = mask·warp(feat) + (1 - mask)·x; a ToRGB 1x1 conv of the
    masked warped feature is added to the upsampled RGB of the coarser scale (StyleGAN2 skips).
  * driving branch (release `MappingNet`): Conv1d k=7, then `driving_layers` residual blocks of
    LeakyReLU(0.1) and a k=3, dilation-3 Conv1d; radius 13 (27 frames) in the release.

Where jaxtalk differs (and says so):
  * the window is max-pooled, as the paper says (the release average-pools); convolutions use
    SAME padding so any radius works (the release's VALID convs need 2r+1 >= 7 + 6·layers);
  * gaze is concatenated after the pooling (paper Fig. 2: ρ^D is "gaze-conditioned"; the
    release appends gaze as two extra per-frame channels of q);
  * the ξ MLP has LeakyReLU(0.2) between its layers (LIA's and the release's EqualLinear stack
    has no activation, i.e. is linear); plain He-initialised weights instead of LIA's
    equalised learning rate; no noise injection (LIA's inference passes none); nearest 2x
    upsampling before the StyledConv (LIA: transposed conv + blur) and bilinear upsampling of
    the RGB / flow skips (LIA: upfirdn blur); the encoder's downsampling averages 2x2 before its
    convolutions (LIA: blur + stride 2);
  * the ToFlow head starts at a tenth of LIA's random init (flows of a few percent of the image
    and masks near 0.5 before training; a zero init would make the untrained frame independent
    of z, so the driving branch would get no gradient at the first step); ToRGB is a plain 1x1
    conv (LIA's applies a LeakyReLU to the RGB);
  * the frame is tanh(RGB) (LIA outputs the raw RGB sum and clamps only for display).

Sizes: `configs/gohd/common.py::animator_model_config` ("paper" = the release: latent 512,
20 directions, 256², channel multiplier 1; "tiny": latent 64, channels 16-32 at 64²).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers

Dtype = Any
NUM_POSE = 6        # p = r ⊕ t (rotation, translation), GoHD appendix A.
NUM_EXP = 64        # e in R^64.
NUM_GAZE = 2        # g = (pitch, yaw).
NUM_COEFFS = NUM_POSE + NUM_EXP
_SQRT2 = math.sqrt(2.0)
_IMAGE_AXES = ("batch", "height", "width", "embed")


def _act(x):
  """LIA's FusedLeakyReLU without its bias: LeakyReLU(0.2) x sqrt(2) (keeps the variance)."""
  return nn.leaky_relu(x, 0.2) * _SQRT2


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
  """Feature width at resolution `res`: min(channel_max, channel_base // res) (LIA's table)."""
  return int(max(1, min(channel_max, channel_base // res)))


def decoder_resolutions(image_size: int) -> tuple[int, ...]:
  """(8, 16, ..., image_size): the resolutions with a flow, a mask and an encoder feature.

  Raises:
    ValueError: `image_size` is not a power of two >= 8.
  """
  if image_size < 8 or image_size & (image_size - 1):
    raise ValueError(f"animator: image_size must be a power of two >= 8, got {image_size}")
  return tuple(2 ** i for i in range(3, int(math.log2(image_size)) + 1))


def driving_windows(coeffs, radius: int):
  """Centred windows q_{t-r:t+r} of a per-frame sequence, clip borders replicate-padded.

  Frame t's window holds frames t-r .. t+r; indices outside [0, T-1] take the first / last
  frame (as `np.pad(mode="edge")`), so every frame of a clip, first and last included, gets a
  full window without reading another clip.

  Args:
    coeffs: `[B, T, C]` per-frame descriptors (any dtype; e.g. pose ⊕ expression, C = 70).
    radius: r >= 0 (GoHD's release: 13, windows of 27 frames).

  Returns:
    `[B, T, 2r+1, C]` in the dtype of `coeffs`; `[:, t, r]` is frame t.

  Raises:
    ValueError: `coeffs` not of rank 3 (or T = 0), or a negative / non-integer radius.
  """
  if coeffs.ndim != 3 or coeffs.shape[1] == 0:
    raise ValueError(f"driving_windows: expected coeffs [B, T, C] with T >= 1, got {coeffs.shape}")
  if int(radius) != radius or radius < 0:
    raise ValueError(f"driving_windows: radius must be an integer >= 0, got {radius!r}")
  radius = int(radius)
  t = coeffs.shape[1]
  idx = jnp.arange(t)[:, None] + jnp.arange(-radius, radius + 1)[None, :]     # [T, 2r+1]
  return jnp.take(coeffs, jnp.clip(idx, 0, t - 1), axis=1)


# ---------------------------------------------------------------------------------------------
# StyleGAN2 blocks.
# ---------------------------------------------------------------------------------------------


class ModulatedConv(nn.Module):
  """Modulated convolution (StyleGAN2, Karras et al. 2020 eqs. 1-3; LIA `ModulatedConv2d`).

  w'_{ijk} = s_i · w_{ijk} with per-sample input scales s = Dense(style) + 1 (LIA's bias init 1);
  with demodulation the output channel j is divided by sqrt(Σ_{i,k} w'_{ijk}² + 1e-8). Computed
  as StyleGAN2's non-fused form: conv(x · s, w) · d, which is the same linear map batch-wide.
  The kernel is N(0, 1) scaled by 1/sqrt(fan-in) at run time; scales and demodulation in
  float32.

  Attributes:
    features: output channels. kernel_size: square kernel (SAME padding, stride 1).
    demodulate: divide by the modulated kernel's norm (True in StyledConv, False in ToFlow).
    use_bias: add a per-channel bias. init_scale: the kernel starts N(0, init_scale²) (before the
      1/sqrt(fan-in) scale; 1 as LIA, 0.1 for the ToFlow head).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    x: `[N, H, W, Cin]`. style: `[N, D]` (z^D).

  Returns:
    `[N, H, W, features]` in `dtype`.

  Raises:
    ValueError: x not `[N, H, W, C]` or a style of another batch.
  """
  features: int
  kernel_size: int = 3
  demodulate: bool = True
  use_bias: bool = True
  init_scale: float = 1.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, style):
    if x.ndim != 4 or style.ndim != 2 or style.shape[0] != x.shape[0]:
      raise ValueError(f"ModulatedConv: expected x [N,H,W,C] and style [N,D], got {x.shape} and "
                       f"{style.shape}")
    cin, k = x.shape[-1], self.kernel_size
    s = layers.Dense(cin, names=("embed", "mlp"), dtype=jnp.float32, param_dtype=self.param_dtype,
                     name="modulation")(style.astype(jnp.float32)) + 1.0          # [N, Cin]
    init = nn.initializers.normal(self.init_scale)
    w = self.param("kernel", nn.with_logical_partitioning(
        init, ("kernel", "kernel", "conv_in", "conv_out")), (k, k, cin, self.features),
                   self.param_dtype).astype(jnp.float32) / math.sqrt(cin * k * k)
    y = jax.lax.conv_general_dilated(
        (x.astype(jnp.float32) * s[:, None, None, :]).astype(self.dtype), w.astype(self.dtype),
        (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.demodulate:
      d = jax.lax.rsqrt(jnp.square(s) @ jnp.sum(jnp.square(w), axis=(0, 1)) + 1e-8)  # [N, Cout]
      y = y * d[:, None, None, :].astype(self.dtype)
    if self.use_bias:
      b = self.param("bias", layers.zeros_init(("conv_out",)), (self.features,), self.param_dtype)
      y = y + b.astype(self.dtype)
    return y


class StyledConv(nn.Module):
  """[nearest 2x upsample ->] 3x3 ModulatedConv (demodulated) + bias -> LeakyReLU·sqrt(2).

  LIA's StyledConv (its upsampling is a transposed conv + blur; its noise is never injected).
  Args (call): x `[N, H, W, C]`, style `[N, D]`. Returns `[N, H', W', features]` in `dtype`.
  """
  features: int
  upsample: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, style):
    if self.upsample:
      x = layers.upsample2x(x)
    y = ModulatedConv(self.features, 3, dtype=self.dtype, param_dtype=self.param_dtype,
                      name="conv")(x, style)
    return _act(y)


class DownBlock(nn.Module):
  """LIA's encoder ResBlock: conv3x3 -> act -> 2x2 average -> conv3x3 -> act, plus a 2x2 average
  -> 1x1 conv (no bias) shortcut, summed and divided by sqrt(2). Halves H and W."""
  features: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    pool = lambda v: nn.avg_pool(v, (2, 2), (2, 2))  # noqa: E731
    h = _act(layers.Conv(x.shape[-1], 3, name="conv1", **kw)(x))
    h = _act(layers.Conv(self.features, 3, name="conv2", **kw)(pool(h)))
    skip = layers.Conv(self.features, 1, use_bias=False, name="skip", **kw)(pool(x))
    return (h + skip) / _SQRT2


# ---------------------------------------------------------------------------------------------
# Networks.
# ---------------------------------------------------------------------------------------------


class SourceEncoder(nn.Module):
  """E: source image -> identity code z^R and the features the decoder warps (LIA `EncoderApp`).

  Attributes:
    image_size: H = W (power of two >= 8). latent_dim: size of z^R.
    channel_base / channel_max: widths per resolution (`channels_at`).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    image: `[N, H, W, 3]` in [-1, 1].

  Returns:
    (z^R `[N, latent_dim]` float32, feats: a tuple with one `[N, r, r, channels_at(r)]` feature
    (in `dtype`) per r in `decoder_resolutions(H)`, coarse (8) to fine (H)).

  Raises:
    ValueError: an image of another shape.
  """
  image_size: int = 256
  latent_dim: int = 512
  channel_base: int = 16384
  channel_max: int = 512
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, image):
    s = self.image_size
    decoder_resolutions(s)
    if image.ndim != 4 or image.shape[1:] != (s, s, 3):
      raise ValueError(f"SourceEncoder: expected image [N, {s}, {s}, 3], got {image.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
    x = _act(layers.Conv(ch(s), 1, name="conv_in", **kw)(image.astype(self.dtype)))
    feats = {s: x}
    r = s
    while r > 4:
      r //= 2
      x = DownBlock(ch(r), name=f"down{r}", **kw)(x)
      x = nn.with_logical_constraint(x, _IMAGE_AXES)
      feats[r] = x
    z = layers.Conv(self.latent_dim, 4, padding="VALID", use_bias=False, name="to_latent",
                    **kw)(x)
    return z[:, 0, 0, :].astype(jnp.float32), tuple(feats[r] for r in decoder_resolutions(s))


class DrivingEncoder(nn.Module):
  """GoHD's driving branch: ρ^D = maxpool_window(Conv1d stack(q_{t-r:t+r})) ⊕ g (section 3.3).

  Conv1d k=7 to `channels`, then `num_layers` residual blocks (LeakyReLU(0.1), Conv1d k=3,
  dilation 3), SAME padding (the release's `MappingNet`, VALID there), max over the window.

  Attributes:
    channels: width of the projection (512 in the release). num_layers: residual blocks (3).
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    windows: `[N, 2r+1, C]` coefficient windows (`driving_windows`, C = 70 = pose ⊕ expression).
    gaze: `[N, 2]` driving gaze (pitch, yaw).

  Returns:
    ρ^D `[N, channels + 2]` float32.

  Raises:
    ValueError: windows not `[N, W, C]` or gaze not `[N, 2]`.
  """
  channels: int = 512
  num_layers: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, windows, gaze):
    if windows.ndim != 3 or gaze.shape != (windows.shape[0], NUM_GAZE):
      raise ValueError(f"DrivingEncoder: expected windows [N, W, C] and gaze [N, 2], got "
                       f"{windows.shape} and {gaze.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, ndim=1)
    x = layers.Conv(self.channels, 7, name="conv_in", **kw)(windows.astype(self.dtype))
    for i in range(self.num_layers):
      x = x + layers.Conv(self.channels, 3, kernel_dilation=3, name=f"conv{i}", **kw)(
          nn.leaky_relu(x, 0.1))
    pooled = jnp.max(x, axis=1).astype(jnp.float32)
    return jnp.concatenate([pooled, gaze.astype(jnp.float32)], axis=-1)


class MotionCodebook(nn.Module):
  """M_θ = {m_1 .. m_n}: `n` orthonormal directions in the latent space (GoHD eq. 9, LIA
  `Direction`). Returns M = Q of the reduced QR of (W + 1e-8), W `[latent, n]` learned, N(0, 1)
  init: `[latent_dim, n]` float32 with MᵀM = I for any W of full column rank (the gradient flows
  through the QR)."""
  latent_dim: int = 512
  num_directions: int = 20
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self):
    if self.num_directions > self.latent_dim:
      raise ValueError(f"MotionCodebook: {self.num_directions} directions do not fit in a "
                       f"{self.latent_dim}-d latent")
    w = self.param("directions", nn.with_logical_partitioning(
        nn.initializers.normal(1.0), ("embed", "latent")),
                   (self.latent_dim, self.num_directions), self.param_dtype)
    q, _ = jnp.linalg.qr(w.astype(jnp.float32) + 1e-8, mode="reduced")
    return q


def _flow_and_mask(logits):
  """ToFlow logits `[N, r, r, 3]` -> (backward flow `[N, r, r, 2]` in pixels, mask `[N, r, r, 1]`).

  LIA samples at grid + tanh(logits[:2]) with the grid in normalised units (-1 .. 1 from the
  first to the last pixel centre), so one normalised unit is (r - 1) / 2 pixels. Float32.
  """
  r_h, r_w = logits.shape[1:3]
  scale = jnp.asarray([(r_w - 1) / 2.0, (r_h - 1) / 2.0], jnp.float32)
  flow = jnp.tanh(logits[..., :2]) * scale
  return flow, jax.nn.sigmoid(logits[..., 2:3])


class Decoder(nn.Module):
  """G: z -> frame, warping the source features at every scale (LIA `Synthesis`, module doc).

  Attributes:
    image_size / channel_base / channel_max: as `SourceEncoder`'s (the features must match).
    dtype / param_dtype: compute / parameter dtypes (flows, masks and the image in float32).

  Args (call):
    z: `[N, D]` style (z^D, or z^R for the reference frame I^R of Fig. 8).
    feats: `SourceEncoder` features, one `[N, r, r, channels_at(r)]` per decoder resolution.

  Returns:
    (frame `[N, H, W, 3]` float32 = tanh(RGB) in (-1, 1), aux) with aux "flows" (tuple of
    `[N, r, r, 2]` float32 backward flows in pixels of each scale, `(dx, dy)`), "masks" (tuple of
    `[N, r, r, 1]` in (0, 1), the weight of the warped feature) and "pyramid" (tuple of tanh of
    the RGB accumulated up to each scale, `[N, r, r, 3]`, the release's multi-scale output);
    coarse to fine.

  Raises:
    ValueError: features of the wrong number or shape.
  """
  image_size: int = 256
  channel_base: int = 16384
  channel_max: int = 512
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z, feats):
    ress = decoder_resolutions(self.image_size)
    n = z.shape[0]
    ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
    want = [(n, r, r, ch(r)) for r in ress]
    if z.ndim != 2 or [tuple(f.shape) for f in feats] != want:
      raise ValueError(f"Decoder: expected z [N, D] and features {want}, got {z.shape} and "
                       f"{[tuple(f.shape) for f in feats]}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    const = self.param("const", nn.with_logical_partitioning(
        nn.initializers.normal(1.0), ("height", "width", "embed")), (4, 4, ch(4)),
                       self.param_dtype)
    x = jnp.broadcast_to(const.astype(self.dtype), (n,) + const.shape)
    x = StyledConv(ch(4), name="conv4", **kw)(x, z)
    rgb = logits = None
    flows, masks, pyramid = [], [], []
    for r, feat in zip(ress, feats):
      x = StyledConv(ch(r), upsample=True, name=f"conv{r}_up", **kw)(x, z)
      x = StyledConv(ch(r), name=f"conv{r}", **kw)(x, z)
      new = ModulatedConv(3, 1, demodulate=False, init_scale=0.1, name=f"to_flow{r}", **kw)(
          x, z).astype(jnp.float32)
      logits = new if logits is None else new + layers.resize_images(logits, r, r)
      flow, mask = _flow_and_mask(logits)
      warped = layers.warp(feat.astype(self.dtype), flow) * mask.astype(self.dtype)
      x = nn.with_logical_constraint(warped + x * (1.0 - mask).astype(self.dtype), _IMAGE_AXES)
      new_rgb = layers.Conv(3, 1, name=f"to_rgb{r}", **kw)(warped).astype(jnp.float32)
      rgb = new_rgb if rgb is None else new_rgb + layers.resize_images(rgb, r, r)
      flows.append(flow)
      masks.append(mask)
      pyramid.append(jnp.tanh(rgb))
    aux = {"flows": tuple(flows), "masks": tuple(masks), "pyramid": tuple(pyramid)}
    return pyramid[-1], aux


class Animator(nn.Module):
  """GoHD's face animator: source encoder, driving branch, codebook, decoder (module docstring).

  Methods (all batch-first; `apply(params, ..., method=Animator.encode)` etc.):
    encode(source) -> (z^R, feats): once per portrait.
    navigate(z_r, windows, gaze, lam) -> (z^D, aux): eq. 9 and z^D = z^R + λη.
    render(feats, z) -> (frame, aux): the decoder on any latent (z^R gives I^R of Fig. 8).
    decode(feats, z_r, windows, gaze, lam) -> (frames, aux): T frames per portrait.
    __call__(source, windows, gaze, lam) -> encode then decode.

  Attributes:
    image_size: H = W. latent_dim: size of z (512). num_directions: n (20).
    channel_base / channel_max: feature widths (`channels_at`; 16384 / 512 in the release).
    driving_channels / driving_layers: the Conv1d stack (512 / 3). mlp_layers: hidden layers of
    the ξ MLP (width latent_dim; 4 in the release).
    dtype / param_dtype: compute / parameter dtypes (float32 or bfloat16 compute; params float32).
  """
  image_size: int = 256
  latent_dim: int = 512
  num_directions: int = 20
  channel_base: int = 16384
  channel_max: int = 512
  driving_channels: int = 512
  driving_layers: int = 3
  mlp_layers: int = 4
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    img = dict(image_size=self.image_size, channel_base=self.channel_base,
               channel_max=self.channel_max)
    self.encoder = SourceEncoder(latent_dim=self.latent_dim, **img, **kw)
    self.driving = DrivingEncoder(self.driving_channels, self.driving_layers, **kw)
    self.mlp = [layers.Dense(self.latent_dim, names=("embed", "mlp") if i == 0 else
                             ("mlp", "mlp"), **kw) for i in range(self.mlp_layers)]
    self.to_xi = layers.Dense(self.num_directions, names=("mlp", "latent"), dtype=jnp.float32,
                              param_dtype=self.param_dtype)
    self.codebook = MotionCodebook(self.latent_dim, self.num_directions, self.param_dtype)
    self.decoder = Decoder(**img, **kw)

  def encode(self, source):
    """source `[N, H, W, 3]` in [-1, 1] -> (z^R `[N, latent]` float32, feats; `SourceEncoder`)."""
    return self.encoder(source)

  def directions(self):
    """M `[latent_dim, num_directions]` float32, orthonormal columns (MᵀM = I)."""
    return self.codebook()

  def navigate(self, z_r, windows, gaze, lam=1.0, xi=None):
    """z^D = z^R + λ·M ξ (GoHD eq. 9 and the addition after it; λ of Fig. 8).

    Args:
      z_r: `[N, latent]` identity codes. windows: `[N, 2r+1, 70]` coefficient windows.
      gaze: `[N, 2]`. lam: λ, a scalar or `[N]` (1 = the driven frame, 0 = the reference).
      xi: optional `[N, n]` magnitudes that replace the MLP's (e.g. zeros; editing).

    Returns:
      (z^D `[N, latent]` float32, aux {"xi" `[N, n]`, "eta" `[N, latent]`, "rho" `[N, C + 2]`},
      all float32). λ = 0 or ξ = 0 gives z^D == z^R exactly.

    Raises:
      ValueError: mismatched batch sizes, a z_r of another width or a xi of another shape.
    """
    n = z_r.shape[0]
    if z_r.shape != (n, self.latent_dim) or windows.shape[0] != n or gaze.shape[0] != n:
      raise ValueError(f"navigate: z_r {z_r.shape} (expected [N, {self.latent_dim}]), windows "
                       f"{windows.shape}, gaze {gaze.shape} do not match")
    if xi is not None and xi.shape != (n, self.num_directions):
      raise ValueError(f"navigate: xi {xi.shape}, expected [{n}, {self.num_directions}]")
    rho = self.driving(windows, gaze)
    h = jnp.concatenate([rho, z_r.astype(jnp.float32)], axis=-1).astype(self.dtype)
    for dense in self.mlp:
      h = nn.leaky_relu(dense(h), 0.2)
    xi_mlp = self.to_xi(h.astype(jnp.float32))    # always run, so init creates its params
    xi = xi_mlp if xi is None else xi.astype(jnp.float32)
    eta = xi @ self.directions().T                                       # Σ_i ξ_i m_i, eq. 9
    lam = jnp.asarray(lam, jnp.float32)
    lam = lam[:, None] if lam.ndim == 1 else lam
    return z_r.astype(jnp.float32) + lam * eta, {"xi": xi, "eta": eta, "rho": rho}

  def render(self, feats, z):
    """The decoder on latents z `[N, latent]` with the features of their sources -> (frame
    `[N, H, W, 3]` float32 in (-1, 1), aux) (`Decoder`)."""
    return self.decoder(z, feats)

  def decode(self, feats, z_r, windows, gaze, lam=1.0, xi=None):
    """Renders T frames per portrait from its encoding (frames in one batch of B·T).

    Args:
      feats / z_r: `encode` of B portraits (`[B, ...]`, `[B, latent]`).
      windows: `[B, T, 2r+1, 70]` (`driving_windows` of pose ⊕ expression). gaze: `[B, T, 2]`.
      lam: λ, scalar, `[B]` or `[B, T]`. xi: optional `[B, T, n]` magnitudes (see `navigate`).

    Returns:
      (frames `[B, T, H, W, 3]` float32 in (-1, 1), aux): aux has navigate's "xi", "eta",
      "rho" and "z_d" as `[B, T, ...]`, and the decoder's "flows", "masks", "pyramid" as tuples
      of `[B, T, r, r, ...]`.

    Raises:
      ValueError: inconsistent B or T.
    """
    if windows.ndim != 4 or gaze.shape != windows.shape[:2] + (NUM_GAZE,):
      raise ValueError(f"decode: expected windows [B, T, W, C] and gaze [B, T, 2], got "
                       f"{windows.shape} and {gaze.shape}")
    b, t = windows.shape[:2]
    if z_r.shape[0] != b or any(f.shape[0] != b for f in feats):
      raise ValueError(f"decode: {z_r.shape[0]} identity codes for {b} driving sequences")
    rep = lambda v: jnp.broadcast_to(v[:, None], (b, t) + v.shape[1:]).reshape(  # noqa: E731
        (b * t,) + v.shape[1:])
    flat = lambda v: v.reshape((b * t,) + v.shape[2:])  # noqa: E731
    lam = jnp.broadcast_to(jnp.asarray(lam, jnp.float32).reshape(
        jnp.shape(lam) + (1,) * (2 - jnp.ndim(lam))), (b, t)).reshape(b * t)
    z_d, nav = self.navigate(rep(z_r), flat(windows), flat(gaze), lam,
                             None if xi is None else flat(xi))
    frames, dec = self.render(tuple(rep(f) for f in feats), z_d)
    unflat = lambda v: v.reshape((b, t) + v.shape[1:])  # noqa: E731
    aux = {k: unflat(v) for k, v in nav.items()}
    aux["z_d"] = unflat(z_d)
    aux.update({k: tuple(unflat(v) for v in vs) for k, vs in dec.items()})
    return unflat(frames), aux

  def __call__(self, source, windows, gaze, lam=1.0, xi=None, *, train: bool = False):
    """encode(source `[B, H, W, 3]`) then decode (see `decode`); `train` is unused (no dropout,
    no noise). Returns (frames `[B, T, H, W, 3]` float32, aux with "z_r" `[B, latent]` too)."""
    del train
    z_r, feats = self.encode(source)
    frames, aux = self.decode(feats, z_r, windows, gaze, lam, xi)
    aux["z_r"] = z_r
    return frames, aux


def animator_from_config(model_cfg, dtype="float32") -> Animator:
  """`Animator` from `config.model` (keys image_size, latent_dim, num_directions, channel_base,
  channel_max, driving_channels, driving_layers, mlp_layers; defaults: the release's sizes).

  `dtype` is the compute dtype ("float32" or "bfloat16"); params stay float32.
  """
  m = dict(model_cfg)
  return Animator(image_size=int(m.get("image_size", 256)),
                  latent_dim=int(m.get("latent_dim", 512)),
                  num_directions=int(m.get("num_directions", 20)),
                  channel_base=int(m.get("channel_base", 16384)),
                  channel_max=int(m.get("channel_max", 512)),
                  driving_channels=int(m.get("driving_channels", 512)),
                  driving_layers=int(m.get("driving_layers", 3)),
                  mlp_layers=int(m.get("mlp_layers", 4)),
                  dtype=jnp.dtype(dtype))


def num_params(params) -> int:
  """Total number of parameter values in a (possibly boxed) param tree."""
  return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(nn.unbox(params))))
