"""PC-Talk's implicit-keypoint renderer (section 3.1, eqs. 1-3; LivePortrait's F, M, W, G).

    volume f_s = F(I_s)                               appearance feature volume [D, h, w, C]
    (K_c, R, t, s, δ) = M(I)                          motion extractor
    K = s · (K_c Rᵀ + δ) + t                          eq. 1 (`keypoints.transform_keypoints`)
    (w, o) = W_dense(f_s, K_s, K_d)                   dense 3-D backward field w, occlusion o
    Î = G(o ⊙ Conv(reshape(warp(f_s, w))))           eq. 3: warping module + SPADE decoder

Images are `[N, R, R, 3]` float32 in [-1, 1] (R = `image_size`, divisible by 32 for the motion
extractor). The volume is `[N, D, R/4, R/4, C]` (NDHWC) spanning [-1, 1]³ in keypoint units
(`keypoints` module docstring: x along the width, y along the height, z depth).

What mirrors LivePortrait (Guo et al. 2024, `src/modules`; face-vid2vid's dense motion):
  * F: SameBlock 3x3 -> `num_down_blocks` DownBlocks (conv 3x3, norm, ReLU, 2x2 average pool;
    channels block_expansion·2^(i+1)) -> 1x1 conv to C·D channels -> reshape to the volume ->
    `num_resblocks` 3-D residual blocks (paper: 64, 2 down blocks, C 32 x D 16 at 64², 6 blocks).
  * M: a ConvNeXt-V2 backbone (stem 4x4/4, stages of depthwise 7x7 + LayerNorm + MLP with GRN,
    LayerNorm + 2x2/2 downsampling between stages; tiny = depths 3-3-9-3, dims 96-768), global
    average pool + LayerNorm, linear heads for K_c [K, 3], δ [K, 3], yaw / pitch / roll, t, s.
  * W: the dense motion network: the volume compressed to `compress` channels by a 1x1x1 conv;
    K + 1 sparse backward fields (the identity, and for keypoint k: p − K_d,k + K_s,k); the
    compressed volume sampled by each; Gaussian heatmaps exp(−‖p − K‖² / (2·0.01)) of K_d minus
    K_s (0 for the identity); both concatenated -> a 3-D hourglass (pooling only in h, w) ->
    softmax masks over the K + 1 fields (7x7x7 conv, `mask_kernel`) -> w = Σ_k mask_k · field_k; occlusion o =
    sigmoid(7x7 conv of the hourglass output folded to 2-D; `mask_kernel`). The volume is sampled at w
    (`layers.trilinear_sample`), folded to `[h, w, C·D]`, then a 3x3 SameBlock and a 1x1 conv to
    `warp_features` (paper 256) channels, multiplied by o.
  * G: SPADE decoder: 3x3 conv to 2x the input channels, `middle_blocks` SPADE residual blocks
    (instance norm modulated by 3x3 convs of the warped feature itself, hidden `spade_hidden`),
    2x upsampling, a SPADE block to the input channels, 2x upsampling, a SPADE block to
    `out_features`, LeakyReLU, 3x3 conv to 3·upscale² and pixel shuffle (`upscale` 2: LivePortrait's
    512² output from 256² input; 1 here by default).

Where jaxtalk differs (and says so):
  * GroupNorm in place of BatchNorm (F, W; no running statistics to export or synchronise
    across data-parallel replicas), no spectral norm in G;
  * the pose head regresses yaw, pitch, roll in radians directly (LivePortrait: 66 bins of 3°
    with a softmax expectation), supervised by the stored pose; t_xy and s likewise regress
    preprocessing's (2·tx, 2·ty) and face scale (`keypoints.pose_to_rts`), t_z = 0;
  * the frame is tanh(RGB) in [-1, 1] (LivePortrait: sigmoid in [0, 1]).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers
from jaxtalk.models.pctalk import keypoints as kp_lib

Dtype = Any
KP_VARIANCE = 0.01     # face-vid2vid / LivePortrait Gaussian heatmap variance (keypoint units²)
SCALE_INIT = 0.6       # initial s: about preprocessing's face size / crop side


def _kw(m):
  return dict(dtype=m.dtype, param_dtype=m.param_dtype)


class SameBlock(nn.Module):
  """Conv (k x k, `ndim`-D) -> GroupNorm -> ReLU."""
  features: int
  kernel_size: int = 3
  ndim: int = 2
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = layers.Conv(self.features, self.kernel_size, ndim=self.ndim, name="conv", **_kw(self))(x)
    return nn.relu(layers.GroupNorm(name="gn", **_kw(self))(x))


def _pool_hw(x):
  """2x2 average pooling over the two axes before the channels (h, w of 2-D or 3-D maps)."""
  window = (1,) * (x.ndim - 3) + (2, 2)
  return nn.avg_pool(x, window, strides=window)


def _upsample_hw(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class ResBlock3d(nn.Module):
  """(GN, ReLU, 3x3x3 conv) x 2 + identity (LivePortrait's ResBlock3d)."""
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    h = layers.Conv(c, 3, ndim=3, name="conv1", **_kw(self))(
        nn.relu(layers.GroupNorm(name="gn1", **_kw(self))(x)))
    h = layers.Conv(c, 3, ndim=3, name="conv2", **_kw(self))(
        nn.relu(layers.GroupNorm(name="gn2", **_kw(self))(h)))
    return x + h


class AppearanceExtractor(nn.Module):
  """F: image `[N, R, R, 3]` -> feature volume `[N, D, R/2^n, R/2^n, C]` (module docstring)."""
  block_expansion: int = 64
  num_down_blocks: int = 2
  volume_channels: int = 32
  volume_depth: int = 16
  num_resblocks: int = 6
  max_features: int = 512
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, image):
    x = SameBlock(self.block_expansion, name="first", **_kw(self))(image.astype(self.dtype))
    for i in range(self.num_down_blocks):
      feats = min(self.max_features, self.block_expansion * 2 ** (i + 1))
      x = _pool_hw(SameBlock(feats, name=f"down{i}", **_kw(self))(x))
    c, d = self.volume_channels, self.volume_depth
    x = layers.Conv(c * d, 1, name="to_volume", **_kw(self))(x)
    n, h, w, _ = x.shape
    x = jnp.transpose(x.reshape(n, h, w, c, d), (0, 4, 1, 2, 3))          # [N, D, h, w, C]
    for i in range(self.num_resblocks):
      x = ResBlock3d(name=f"res{i}", **_kw(self))(x)
    return x


class GRN(nn.Module):
  """ConvNeXt-V2's global response normalisation: x + γ·(x·N(x)) + β, N(x) = G(x)/mean_c G(x),
  G(x) the L2 norm over h, w per channel (statistics in float32)."""
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    gamma = self.param("gamma", layers.zeros_init(("norm",)), (c,), self.param_dtype)
    beta = self.param("beta", layers.zeros_init(("norm",)), (c,), self.param_dtype)
    x32 = x.astype(jnp.float32)
    gx = jnp.sqrt(jnp.sum(jnp.square(x32), axis=(1, 2), keepdims=True))
    nx = gx / (jnp.mean(gx, axis=-1, keepdims=True) + 1e-6)
    return (x32 + gamma * (x32 * nx) + beta).astype(x.dtype)


class ConvNeXtBlock(nn.Module):
  """Depthwise 7x7 -> LayerNorm -> Dense 4d -> GELU -> GRN -> Dense d, + x (ConvNeXt-V2)."""
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    h = layers.Conv(d, 7, feature_group_count=d, name="dwconv", **_kw(self))(x)
    h = layers.LayerNorm(name="ln", **_kw(self))(h)
    h = nn.gelu(layers.Dense(4 * d, names=("embed", "mlp"), name="fc1", **_kw(self))(h))
    h = GRN(param_dtype=self.param_dtype, name="grn")(h)
    return x + layers.Dense(d, names=("mlp", "embed"), name="fc2", **_kw(self))(h)


class MotionExtractor(nn.Module):
  """M: image `[N, R, R, 3]` -> {"canonical" K_c `[N, K, 3]`, "delta" δ `[N, K, 3]`, "angles"
  (yaw, pitch, roll) `[N, 3]` rad, "translation" `[N, 3]` (t_z = 0), "scale" `[N]`}, float32."""
  depths: Sequence[int] = (3, 3, 9, 3)
  dims: Sequence[int] = (96, 192, 384, 768)
  num_keypoints: int = kp_lib.NUM_KEYPOINTS
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, image):
    x = layers.Conv(self.dims[0], 4, strides=4, padding="VALID", name="stem",
                    **_kw(self))(image.astype(self.dtype))
    x = layers.LayerNorm(name="stem_ln", **_kw(self))(x)
    for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
      if i:
        x = layers.LayerNorm(name=f"down{i}_ln", **_kw(self))(x)
        x = layers.Conv(dim, 2, strides=2, padding="VALID", name=f"down{i}", **_kw(self))(x)
      for j in range(depth):
        x = ConvNeXtBlock(name=f"stage{i}_{j}", **_kw(self))(x)
    x = layers.LayerNorm(name="head_ln", dtype=jnp.float32,
                         param_dtype=self.param_dtype)(jnp.mean(x.astype(jnp.float32), (1, 2)))
    k = self.num_keypoints
    head = lambda f, name, zero=False: layers.Dense(  # noqa: E731
        f, names=("embed", "mlp"), zero_init=zero, name=name, param_dtype=self.param_dtype)(x)
    angles = head(3, "angles", zero=True)
    t = head(2, "translation", zero=True)
    return {"canonical": head(3 * k, "canonical").reshape(-1, k, 3),
            "delta": 0.1 * head(3 * k, "delta").reshape(-1, k, 3),
            "angles": angles,
            "translation": jnp.concatenate([t, jnp.zeros_like(t[:, :1])], -1),
            "scale": SCALE_INIT + head(1, "scale", zero=True)[:, 0]}


class Hourglass3d(nn.Module):
  """FOMM-style 3-D hourglass (pooling over h, w only); returns the input concatenated with the
  last decoder features (`block_expansion` + in channels), as face-vid2vid's."""
  block_expansion: int = 32
  num_blocks: int = 5
  max_features: int = 1024
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    skips = [x]
    for i in range(self.num_blocks):
      f = min(self.max_features, self.block_expansion * 2 ** (i + 1))
      skips.append(_pool_hw(SameBlock(f, ndim=3, name=f"down{i}", **_kw(self))(skips[-1])))
    out = skips.pop()
    for i in reversed(range(self.num_blocks)):
      f = min(self.max_features, self.block_expansion * 2 ** i)
      out = SameBlock(f, ndim=3, name=f"up{i}", **_kw(self))(_upsample_hw(out))
      out = jnp.concatenate([out, skips.pop()], -1)
    return out


def volume_grid(depth: int, height: int, width: int) -> jax.Array:
  """`[D, H, W, 3]` float32 voxel-centre coordinates (x, y, z) in [-1, 1] (keypoint units)."""
  lin = lambda n: jnp.linspace(-1.0, 1.0, n, dtype=jnp.float32)  # noqa: E731
  z, y, x = jnp.meshgrid(lin(depth), lin(height), lin(width), indexing="ij")
  return jnp.stack([x, y, z], -1)


def sample_volume(volume, field) -> jax.Array:
  """Samples `volume [N, D, H, W, C]` at `field [N, ..., 3]` in keypoint units [-1, 1]
  (align_corners=True; outside the volume: 0)."""
  d, h, w = volume.shape[1:4]
  size = jnp.asarray([w - 1, h - 1, d - 1], jnp.float32)
  coords = (field.astype(jnp.float32) + 1.0) / 2.0 * size
  return layers.trilinear_sample(volume, coords)


class DenseMotion(nn.Module):
  """W's dense motion network: (volume, K_s, K_d) -> backward field w `[N, D, h, w, 3]`
  (keypoint units) and occlusion `[N, h, w, 1]` in (0, 1) (module docstring)."""
  block_expansion: int = 32
  num_blocks: int = 5
  max_features: int = 1024
  compress: int = 4
  mask_kernel: int = 7
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, volume, kp_source, kp_driving):
    n, d, h, w, _ = volume.shape
    k = kp_source.shape[1]
    grid = volume_grid(d, h, w)
    shift = (kp_source - kp_driving).astype(jnp.float32)[:, :, None, None, None, :]
    fields = jnp.concatenate([jnp.broadcast_to(grid, (n, 1, d, h, w, 3)),
                              grid[None, None] + shift], axis=1)         # [N, K+1, D, h, w, 3]
    small = layers.Conv(self.compress, 1, ndim=3, name="compress", **_kw(self))(volume)
    deformed = sample_volume(small, fields.reshape(n, (k + 1) * d, h, w, 3)
                             ).reshape(n, k + 1, d, h, w, self.compress)
    gauss = lambda kp: jnp.exp(-0.5 * jnp.sum(jnp.square(  # noqa: E731
        grid[None, None] - kp.astype(jnp.float32)[:, :, None, None, None, :]), -1) / KP_VARIANCE)
    heat = gauss(kp_driving) - gauss(kp_source)
    heat = jnp.concatenate([jnp.zeros_like(heat[:, :1]), heat], 1)[..., None]
    x = jnp.concatenate([heat, deformed.astype(jnp.float32)], -1)      # [N, K+1, D, h, w, c+1]
    x = jnp.transpose(x, (0, 2, 3, 4, 1, 5)).reshape(n, d, h, w, -1).astype(self.dtype)
    pred = Hourglass3d(self.block_expansion, self.num_blocks, self.max_features,
                       name="hourglass", **_kw(self))(x)
    logits = layers.Conv(k + 1, self.mask_kernel, ndim=3, name="mask",
                         **_kw(self))(pred).astype(jnp.float32)
    mask = jax.nn.softmax(logits, -1)                                    # [N, D, h, w, K+1]
    # Σ_k mask_k·field_k written as p + Σ_k mask_k·(K_s,k − K_d,k): equal keypoints give the
    # identity field exactly (the masks' sum is 1 only to rounding).
    field = grid[None] + jnp.einsum("ndhwk,nkc->ndhwc", mask[..., 1:], shift[:, :, 0, 0, 0])
    folded = jnp.transpose(pred, (0, 2, 3, 1, 4)).reshape(n, h, w, -1)
    occlusion = jax.nn.sigmoid(layers.Conv(1, self.mask_kernel, name="occlusion",
                                           **_kw(self))(folded)
                               .astype(jnp.float32))
    return field, occlusion, mask


class WarpingModule(nn.Module):
  """W: (volume, K_s, K_d) -> warped 2-D feature `[N, h, w, warp_features]` and aux {"field",
  "occlusion", "mask", "warped_volume"}."""
  warp_features: int = 256
  block_expansion: int = 32
  num_blocks: int = 5
  max_features: int = 1024
  compress: int = 4
  mask_kernel: int = 7
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, volume, kp_source, kp_driving):
    field, occlusion, mask = DenseMotion(self.block_expansion, self.num_blocks, self.max_features,
                                         self.compress, self.mask_kernel, name="dense_motion",
                                         **_kw(self))(volume, kp_source, kp_driving)
    warped = sample_volume(volume, field)
    n, d, h, w, c = warped.shape
    x = jnp.transpose(warped, (0, 2, 3, 4, 1)).reshape(n, h, w, c * d)
    x = SameBlock(self.warp_features, name="third", **_kw(self))(x)
    x = layers.Conv(self.warp_features, 1, name="fourth", **_kw(self))(x)
    x = x * occlusion.astype(x.dtype)
    return x, {"field": field, "occlusion": occlusion, "mask": mask, "warped_volume": warped}


class SPADE(nn.Module):
  """Instance norm of x modulated by γ, β from 3x3 convs of `seg` (resized to x): IN(x)(1+γ)+β."""
  hidden: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, seg):
    c = x.shape[-1]
    if seg.shape[1:3] != x.shape[1:3]:
      seg = jax.image.resize(seg, seg.shape[:1] + x.shape[1:3] + seg.shape[-1:], "nearest")
    a = nn.relu(layers.Conv(self.hidden, 3, name="shared", **_kw(self))(seg))
    gamma = layers.Conv(c, 3, name="gamma", **_kw(self))(a).astype(jnp.float32)
    beta = layers.Conv(c, 3, name="beta", **_kw(self))(a).astype(jnp.float32)
    return (layers.instance_norm(x) * (1.0 + gamma) + beta).astype(self.dtype)


class SPADEResBlock(nn.Module):
  """SPADE residual block (Park et al. 2019): two SPADE-LReLU-conv3x3, learned shortcut when the
  channel count changes."""
  features: int
  hidden: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, seg):
    fin = x.shape[-1]
    mid = min(fin, self.features)
    sp = lambda name: SPADE(self.hidden, name=name, **_kw(self))  # noqa: E731
    dx = layers.Conv(mid, 3, name="conv0", **_kw(self))(nn.leaky_relu(sp("norm0")(x, seg), 0.2))
    dx = layers.Conv(self.features, 3, name="conv1", **_kw(self))(
        nn.leaky_relu(sp("norm1")(dx, seg), 0.2))
    if fin != self.features:
      x = layers.Conv(self.features, 1, use_bias=False, name="shortcut",
                      **_kw(self))(sp("norm_s")(x, seg))
    return x + dx


class SPADEDecoder(nn.Module):
  """G: warped feature `[N, h, w, C]` -> frame `[N, 4h·upscale, 4w·upscale, 3]` in (-1, 1)."""
  middle_blocks: int = 6
  hidden: int = 128
  out_features: int = 64
  upscale: int = 1
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, feature):
    c = feature.shape[-1]
    block = lambda f, name: SPADEResBlock(f, self.hidden, name=name, **_kw(self))  # noqa: E731
    x = layers.Conv(2 * c, 3, name="fc", **_kw(self))(feature)
    for i in range(self.middle_blocks):
      x = block(2 * c, f"middle{i}")(x, feature)
    x = block(c, "up0")(_upsample_hw(x), feature)
    x = block(self.out_features, "up1")(_upsample_hw(x), feature)
    u = self.upscale
    x = layers.Conv(3 * u * u, 3, name="to_rgb", **_kw(self))(nn.leaky_relu(x, 0.2))
    n, h, w, _ = x.shape
    x = x.reshape(n, h, w, u, u, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * u, w * u, 3)
    return jnp.tanh(x.astype(jnp.float32))


class Renderer(nn.Module):
  """F, M, W, G together (module docstring). Sub-networks are built from `config` (the keys of
  `configs/pctalk/common.py::renderer_model_config`)."""
  config: Any
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    c, kw = self.config, _kw(self)
    self.appearance = AppearanceExtractor(
        c.block_expansion, c.num_down_blocks, c.volume_channels, c.volume_depth, c.num_resblocks,
        name="appearance", **kw)
    self.motion_extractor = MotionExtractor(tuple(c.motion_depths), tuple(c.motion_dims),
                                            c.num_keypoints, name="motion_extractor", **kw)
    self.warping = WarpingModule(c.warp_features, c.dense_block_expansion, c.dense_num_blocks,
                                 c.dense_max_features, c.compress, c.mask_kernel,
                                 name="warping", **kw)
    self.decoder = SPADEDecoder(c.middle_blocks, c.spade_hidden, c.decoder_features, c.upscale,
                                name="decoder", **kw)

  def extract(self, image):
    """F(image) volume and M(image) motion dict (see `MotionExtractor`)."""
    return self.appearance(image), self.motion_extractor(image)

  def motion(self, image):
    return self.motion_extractor(image)

  def render(self, volume, kp_source, kp_driving):
    """Î and W's aux from the source volume and keypoints `[N, K, 3]`."""
    feature, aux = self.warping(volume, kp_source, kp_driving)
    return self.decoder(feature), aux

  def __call__(self, source, driving):
    """Self-reenactment (LivePortrait's training pass): K_c and the volume from `source`,
    R, t, s, δ from `driving` (`[N, R, R, 3]` each). Returns Î `[N, R, R, 3]` and aux with
    "kp_source", "kp_driving", "motion_source", "motion_driving" and W's aux."""
    volume, ms = self.extract(source)
    md = self.motion_extractor(driving)
    kp_s = keypoints_of(ms)
    kp_d = keypoints_of(md, canonical=ms["canonical"])
    frame, aux = self.render(volume, kp_s, kp_d)
    return frame, dict(aux, kp_source=kp_s, kp_driving=kp_d, motion_source=ms, motion_driving=md)


def keypoints_of(motion: dict, canonical=None) -> jax.Array:
  """Eq. 1 keypoints `[N, K, 3]` of a motion-extractor output (K_c from `canonical` when given:
  the source's, as LivePortrait drives)."""
  a = motion["angles"]
  rot = kp_lib.rotation_matrix(a[:, 0], a[:, 1], a[:, 2])
  kc = motion["canonical"] if canonical is None else canonical
  return kp_lib.transform_keypoints(kc, rot, motion["translation"], motion["scale"],
                                    motion["delta"])


def renderer_from_config(model_cfg, dtype="float32") -> Renderer:
  """The renderer of a `renderer_model_config` (dtype "float32" or "bfloat16")."""
  return Renderer(model_cfg, dtype=jnp.dtype(dtype))
