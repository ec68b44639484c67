"""Losses shared by stages: reconstruction (multi-scale perceptual, mouth-region, L1) for the
renderers; least-squares GAN terms and the sequence SSIM of GoHD eq. 26 for the motion stages;
the non-saturating GAN terms of GoHD's animator (eq. 16).

Conventions: images are float `[..., H, W, 3]` in [-1, 1] (any leading dims, e.g. `[N]` or
`[B, T]`); boxes are float `[..., 4]` = (x0, y0, x1, y1) in [0, 1] crop coordinates with the same
leading dims (the batch's `mouth_box`); an optional `mask` (bool/float, leading dims) weights
images (False = padding frame). Every loss returns a float32 scalar and is computed in float32.

Perceptual feature network (`PerceptualNet`):
* `PerceptualNet.create(vgg_weights="vgg19.npz")`: ImageNet VGG19 (converted torchvision / Keras
  weights, see `jaxtalk.models.vgg`), layers relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, as in
  FOMM (Siarohin et al. 2019), which PoseTalk's eq. 6 follows.
* `PerceptualNet.create(None)`: no weights available. Logs ONE warning and uses the documented
  substitute `"random"`: the raw pixels plus the ReLU outputs of a fixed, randomly initialised
  4-stage conv net (3x3 convs with 32, 64, 128, 128 channels; stage k > 1 starts with a 2x2
  average pool, so the layers are at full, 1/2, 1/4 and 1/8 resolution; weights drawn from
  `numpy.random.default_rng(0)` as N(0, 2 / fan_in), biases 0). Random conv features are a known
  weak-but-useful perceptual proxy (they respond to local structure and edges) and, with the pixel
  term, the distance is zero only for identical images. It is NOT ImageNet VGG: loss values and
  the derived perceptual metric are not comparable to published numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.core import logging_utils
from jaxtalk.models import vgg as vgg_lib

LAMBDA_P = 10.0  # PoseTalk eq. 6
RANDOM_WIDTHS = (32, 64, 128, 128)
SUBSTITUTE_KEY = "jaxtalk.losses: random perceptual features"  # announced once.


# ---------------------------------------------------------------------------------------------
# Feature networks.
# ---------------------------------------------------------------------------------------------
class RandomFeatureNet(nn.Module):
  """The no-weights substitute for VGG19 (see module docstring for its exact definition).

  Attributes:
    widths: output channels of the 3x3 conv of each stage.
    dtype: compute dtype.
  """

  widths: Sequence[int] = RANDOM_WIDTHS
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[list[jax.Array], dict]:
    """x `[N, H, W, 3]` in [-1, 1] -> ([pixels, relu1..relu4] float32, aux by name)."""
    feats = [x.astype(jnp.float32)]
    h = x.astype(self.dtype)
    for i, w in enumerate(self.widths):
      if i:
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
      h = nn.relu(nn.Conv(w, (3, 3), padding="SAME", dtype=self.dtype, param_dtype=jnp.float32,
                          name=f"conv{i + 1}")(h))
      feats.append(h.astype(jnp.float32))
    names = ["pixels"] + [f"relu{i + 1}" for i in range(len(self.widths))]
    return feats, dict(zip(names, feats))


def random_feature_params(widths: Sequence[int] = RANDOM_WIDTHS) -> dict:
  """Deterministic params of `RandomFeatureNet`: N(0, 2/fan_in) from default_rng(0), zero bias."""
  rng = np.random.default_rng(0)
  params, c_in = {}, 3
  for i, w in enumerate(widths):
    fan_in = 9 * c_in
    params[f"conv{i + 1}"] = {
      "kernel": (rng.standard_normal((3, 3, c_in, w)) * np.sqrt(2.0 / fan_in)).astype(np.float32),
      "bias": np.zeros((w,), np.float32)}
    c_in = w
  return params


@dataclasses.dataclass(frozen=True)
class PerceptualNet:
  """A frozen feature extractor; its params live apart (put them in a task's `frozen`).

  Attributes:
    kind: "vgg19" (ImageNet VGG19 from converted weights) or "random" (documented substitute).
    preprocess_mode: VGG pixel normalisation ("torch" / "caffe"); unused for "random".
    layers: VGG19 layers returned (for "vgg19").
    dtype: compute dtype of the network (features and losses are float32).
  """

  kind: str = "random"
  preprocess_mode: str = "torch"
  layers: tuple[str, ...] = vgg_lib.PERCEPTUAL_LAYERS
  dtype: jnp.dtype = jnp.float32

  @classmethod
  def create(cls, vgg_weights: Optional[str] = None, *, dtype=jnp.float32,
             layers: Sequence[str] = vgg_lib.PERCEPTUAL_LAYERS) -> tuple["PerceptualNet", dict]:
    """Returns `(net, params)`.

    Args:
      vgg_weights: path of a converted VGG19 `.npz`, or None/"" for the random substitute (which
        logs one warning per process).
      dtype: compute dtype.
      layers: VGG19 layers to compare.

    Raises:
      ValueError: if `vgg_weights` is given but cannot be loaded (message names the file).
    """
    if vgg_weights:
      params, mode = vgg_lib.load_vgg19(vgg_weights)
      return cls("vgg19", mode, tuple(layers), dtype), params
    logging_utils.announce_once(
        SUBSTITUTE_KEY,
        "jaxtalk.losses: no VGG19 weights given (config vgg_weights is empty): the perceptual "
        "loss/metric uses the documented SUBSTITUTE 'random' = pixels + ReLU features of a fixed "
        "random 4-stage conv net (seed 0), not ImageNet VGG19. Convert weights with `python -m "
        "jaxtalk.pretrained.vgg19 --src vgg19.pth --out vgg19.npz` and pass the .npz path.")
    return cls("random", "torch", (), dtype), random_feature_params()

  def features(self, params: dict, images: jax.Array) -> list[jax.Array]:
    """images `[N, H, W, 3]` in [-1, 1] -> list of float32 feature maps `[N, h, w, C]`."""
    if self.kind == "vgg19":
      x = vgg_lib.preprocess(images, self.preprocess_mode)
      feats, _ = vgg_lib.VGG19(self.layers, dtype=self.dtype).apply({"params": params}, x)
      return feats
    if self.kind == "random":
      feats, _ = RandomFeatureNet(dtype=self.dtype).apply({"params": params}, images)
      return feats
    raise ValueError(f"PerceptualNet.kind {self.kind!r}; expected 'vgg19' or 'random'")


# ---------------------------------------------------------------------------------------------
# Geometry helpers.
# ---------------------------------------------------------------------------------------------
def _flatten(images: jax.Array, name: str) -> tuple[jax.Array, tuple[int, ...]]:
  if images.ndim < 4 or images.shape[-1] != 3:
    raise ValueError(f"{name}: expected [..., H, W, 3] with >= 1 leading dim, got {images.shape}")
  lead = images.shape[:-3]
  return images.reshape((-1,) + images.shape[-3:]), lead


def _flat_weights(mask, lead: tuple[int, ...]) -> Optional[jax.Array]:
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.shape != lead:
    raise ValueError(f"mask shape {mask.shape} != images' leading dims {lead}")
  return mask.reshape(-1).astype(jnp.float32)


def _weighted_mean(per_image: jax.Array, w: Optional[jax.Array]) -> jax.Array:
  if w is None:
    return jnp.mean(per_image)
  return jnp.sum(per_image * w) / jnp.maximum(jnp.sum(w), 1.0)


def downsample(images: jax.Array, factor: int) -> jax.Array:
  """`[N, H, W, C]` -> `[N, H/f, W/f, C]` by f x f average pooling (H, W divisible by f)."""
  if factor == 1:
    return images
  n, h, w, c = images.shape
  if h % factor or w % factor:
    raise ValueError(f"downsample by {factor}: size {h}x{w} not divisible")
  return images.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def expand_boxes(boxes: jax.Array, scale: float = 1.0, square: bool = False) -> jax.Array:
  """Scales boxes `[..., 4]` about their centres; `square` uses max(w, h) for both sides.

  Square is in crop-relative units (square in pixels for square crops). Not clipped: pixels
  outside the image repeat the border in `crop_and_resize`.
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
  w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  if square:
    w = h = jnp.maximum(w, h)
  w, h = w * scale / 2, h * scale / 2
  return jnp.stack([cx - w, cy - h, cx + w, cy + h], axis=-1)


def _interp_matrix(lo: jax.Array, hi: jax.Array, out: int, size: int) -> jax.Array:
  """`[N, out, size]` bilinear weights sampling `out` pixel centres of [lo, hi] (units of 1)."""
  t = (jnp.arange(out, dtype=jnp.float32) + 0.5) / out
  coord = (lo[:, None] + t[None, :] * (hi - lo)[:, None]) * size - 0.5   # pixel-centre coords
  coord = jnp.clip(coord, 0.0, size - 1.0)                                # border replicate
  grid = jnp.arange(size, dtype=jnp.float32)
  return jnp.maximum(0.0, 1.0 - jnp.abs(coord[..., None] - grid))


def crop_and_resize(images: jax.Array, boxes: jax.Array, size) -> jax.Array:
  """Differentiable crop-and-resize (bilinear; gradients reach images and boxes).

  Args:
    images: `[..., H, W, C]` float.
    boxes: `[..., 4]` (x0, y0, x1, y1) in [0, 1] (image-relative; 0 = left/top edge, 1 =
      right/bottom edge), same leading dims. Samples outside the image repeat the border.
    size: int or (h, w) of the output.

  Returns:
    float32 `[..., h, w, C]`. Box pixel centres are sampled exactly (align_corners=False
    convention), so the box (0, 0, 1, 1) at the input size returns the image unchanged.
  """
  oh, ow = (size, size) if isinstance(size, int) else tuple(size)
  lead = images.shape[:-3]
  if boxes.shape != lead + (4,):
    raise ValueError(f"boxes shape {boxes.shape}; expected {lead + (4,)} for images "
                     f"{images.shape}")
  h, w, c = images.shape[-3:]
  x = images.reshape((-1, h, w, c)).astype(jnp.float32)
  b = boxes.reshape((-1, 4)).astype(jnp.float32)
  ry = _interp_matrix(b[:, 1], b[:, 3], oh, h)
  rx = _interp_matrix(b[:, 0], b[:, 2], ow, w)
  out = jnp.einsum("nih,nhwc,njw->nijc", ry, x, rx)
  return out.reshape(lead + (oh, ow, c))


# ---------------------------------------------------------------------------------------------
# Losses.
# ---------------------------------------------------------------------------------------------
def l1_loss(pred: jax.Array, target: jax.Array, mask=None) -> jax.Array:
  """Mean absolute error over pixels (float32 scalar); `mask` weights images (leading dims)."""
  if pred.shape != target.shape:
    raise ValueError(f"l1_loss: pred {pred.shape} != target {target.shape}")
  p, lead = _flatten(pred, "pred")
  t, _ = _flatten(target, "target")
  per = jnp.mean(jnp.abs(p.astype(jnp.float32) - t.astype(jnp.float32)), axis=(1, 2, 3))
  return _weighted_mean(per, _flat_weights(mask, lead))


def _resize_weights(pixel_weights: jax.Array, h: int, w: int) -> jax.Array:
  """`[N, H, W]` weights -> `[N, h, w, 1]` by average pooling (h, w divide H, W)."""
  n, big_h, big_w = pixel_weights.shape
  if big_h % h or big_w % w:
    raise ValueError(f"pixel weights {big_h}x{big_w} cannot be pooled to a {h}x{w} feature map")
  fh, fw = big_h // h, big_w // w
  return pixel_weights.reshape(n, h, fh, w, fw).mean(axis=(2, 4))[..., None]


def perceptual_loss(pred: jax.Array, target: jax.Array, *, net: PerceptualNet, params: dict,
                    scales: Sequence[float] = (1.0, 0.5), weight: float = LAMBDA_P,
                    mask=None, pixel_weights=None) -> jax.Array:
  """Multi-scale perceptual loss, PoseTalk eq. 6 (after FOMM); GoHD eq. 12 with `pixel_weights`.

  `sum_scales sum_layers weight * mean|phi_l(pred_s) - phi_l(target_s)| [⊙ W_l]`, averaged over
  images (the 1/T of eq. 6), where `*_s` is the image average-pooled to `scale` (PoseTalk: 256
  and 128, i.e. scales (1, 0.5); GoHD: 256, 128, 64, 32). The target side is `stop_gradient`-ed.

  Args:
    pred, target: `[..., H, W, 3]` in [-1, 1] (f32 or bf16); H, W divisible by 1/min(scales).
    net, params: from `PerceptualNet.create`.
    scales: each 1/k for an integer k.
    weight: lambda_p (10 in PoseTalk; GoHD's λ_perc = 1 multiplies the sum instead).
    mask: optional leading-dims weights (False = padding frame).
    pixel_weights: optional `[..., H, W]` per-pixel weights (GoHD's 1 + M_lip&eye); average-
      pooled to every feature map's resolution (which must divide H, W) and multiplied into the
      absolute differences before their mean.

  Returns:
    float32 scalar.

  Raises:
    ValueError: shapes that differ, a scale that is not 1/k, pixel weights of another shape.
  """
  if pred.shape != target.shape:
    raise ValueError(f"perceptual_loss: pred {pred.shape} != target {target.shape}")
  p, lead = _flatten(pred, "pred")
  t, _ = _flatten(jax.lax.stop_gradient(target), "target")
  w = _flat_weights(mask, lead)
  pw = None
  if pixel_weights is not None:
    if tuple(pixel_weights.shape) != tuple(pred.shape[:-1]):
      raise ValueError(f"perceptual_loss: pixel_weights {pixel_weights.shape}; expected "
                       f"{pred.shape[:-1]}")
    pw = jnp.asarray(pixel_weights, jnp.float32).reshape((-1,) + pred.shape[-3:-1])
  n = p.shape[0]
  total = jnp.zeros((), jnp.float32)
  for s in scales:
    factor = int(round(1.0 / s))
    if factor < 1 or abs(factor * s - 1.0) > 1e-6:
      raise ValueError(f"perceptual_loss: scale {s} must be 1/k for an integer k")
    both = downsample(jnp.concatenate([p, t], axis=0).astype(jnp.float32), factor)
    for f in net.features(params, both.astype(net.dtype)):
      diff = jnp.abs(f[:n] - f[n:])
      if pw is not None:
        diff = diff * _resize_weights(pw, f.shape[1], f.shape[2])
      per = jnp.mean(diff, axis=tuple(range(1, f.ndim)))
      total = total + weight * _weighted_mean(per, w)
  return total


def mouth_perceptual_loss(pred: jax.Array, target: jax.Array, boxes: jax.Array, *,
                          net: PerceptualNet, params: dict, size: int = 64,
                          box_scale: float = 1.0, square: bool = False,
                          scales: Sequence[float] = (1.0,), weight: float = LAMBDA_P,
                          mask=None) -> jax.Array:
  """Perceptual loss on mouth crops (the `I^mouth` terms of PoseTalk eqs. 9-10).

  Both images are cropped with the SAME boxes (the ground-truth mouth box, optionally expanded
  by `box_scale` / made `square`) and resized to `size` x `size` by `crop_and_resize`, then
  compared with `perceptual_loss`.

  Args:
    pred, target: `[..., H, W, 3]` in [-1, 1].
    boxes: `[..., 4]` in [0, 1] (the batch's `mouth_box`).
    size: crop side in pixels (divisible by 1/min(scales)).
    Others: as `perceptual_loss`.
  """
  boxes = expand_boxes(boxes, box_scale, square)
  pc = crop_and_resize(pred, boxes, size)
  tc = crop_and_resize(target, boxes, size)
  return perceptual_loss(pc, tc, net=net, params=params, scales=scales, weight=weight, mask=mask)


def mouth_l1(pred: jax.Array, target: jax.Array, boxes: jax.Array, *, size: int = 32,
             box_scale: float = 1.0, square: bool = False, mask=None) -> jax.Array:
  """L1 between mouth crops of `pred` and `target` (same boxes, `size` x `size`); f32 scalar."""
  boxes = expand_boxes(boxes, box_scale, square)
  return l1_loss(crop_and_resize(pred, boxes, size), crop_and_resize(target, boxes, size), mask)


# ---------------------------------------------------------------------------------------------
# Adversarial and sequence losses (motion stages).
# ---------------------------------------------------------------------------------------------
def _score_mean(scores: jax.Array, mask=None) -> jax.Array:
  s = scores.astype(jnp.float32)
  if mask is None:
    return jnp.mean(s)
  w = jnp.broadcast_to(mask.astype(jnp.float32).reshape(mask.shape + (1,) * (s.ndim - mask.ndim)),
                       s.shape)
  return jnp.sum(s * w) / jnp.maximum(jnp.sum(w), 1.0)


def lsgan_disc_loss(real_scores: jax.Array, fake_scores: jax.Array, mask=None) -> jax.Array:
  """Least-squares GAN discriminator loss (Mao et al. 2017, a = 0, b = 1):
  mean (D(real) − 1)² + mean D(fake)², float32 scalar. `mask` (leading dims of the scores, e.g.
  `[B, T]` for per-frame scores) weights the scores."""
  return (_score_mean((real_scores - 1.0) ** 2, mask)
          + _score_mean(fake_scores ** 2, mask))


def lsgan_gen_loss(fake_scores: jax.Array, mask=None) -> jax.Array:
  """Least-squares GAN generator loss (c = 1): mean (D(fake) − 1)², float32 scalar."""
  return _score_mean((fake_scores - 1.0) ** 2, mask)


def nonsaturating_gen_loss(fake_logits: jax.Array, mask=None) -> jax.Array:
  """Non-saturating GAN generator loss (Goodfellow et al. 2014; GoHD eq. 16, StyleGAN2):
  mean −log σ(D(fake)) = mean softplus(−D(fake)), float32 scalar; `D` returns logits."""
  return _score_mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)), mask)


def nonsaturating_disc_loss(real_logits: jax.Array, fake_logits: jax.Array,
                            mask=None) -> jax.Array:
  """Its discriminator loss: mean softplus(−D(real)) + mean softplus(D(fake)) (= −log σ(D(real))
  − log(1 − σ(D(fake)))), float32 scalar."""
  return (_score_mean(jax.nn.softplus(-real_logits.astype(jnp.float32)), mask)
          + _score_mean(jax.nn.softplus(fake_logits.astype(jnp.float32)), mask))


def sequence_ssim(gen: jax.Array, real: jax.Array, mask=None) -> jax.Array:
  """GoHD supplementary eq. 26 before the "1 −": the mean over dimensions (and sequences) of

      (2 μ_i μ̂_i + C1)(2 cov_i + C2) / ((μ_i² + μ̂_i² + C1)(σ_i² + σ̂_i² + C2))

  with whole-sequence population statistics of dimension i over the valid frames, C1 =
  (0.01 L_i)², C2 = (0.03 L_i)², L_i = max − min of the real sequence's dimension i (floored at
  1e-6; not differentiated): the definition `evaluators.motion.ssim_1d` uses (window=None), so
  `1 − sequence_ssim` (L_ssim) and the SSIM_e metric read the same quantity.

  Args:
    gen, real: `[B, T, D]` sequences (same shape). mask: optional `[B, T]` bool, True = valid.

  Returns:
    float32 scalar, 1 when gen == real on the valid frames.
  """
  if gen.shape != real.shape or gen.ndim != 3:
    raise ValueError(f"sequence_ssim: expected two [B, T, D] of one shape, got {gen.shape}, "
                     f"{real.shape}")
  g, r = gen.astype(jnp.float32), real.astype(jnp.float32)
  w = (jnp.ones(g.shape[:2], jnp.float32) if mask is None
       else mask.astype(jnp.float32))[..., None]
  n = jnp.maximum(jnp.sum(w, axis=1), 1.0)                       # [B, 1]
  mean = lambda x: jnp.sum(x * w, axis=1) / n                     # [B, D]
  mg, mr = mean(g), mean(r)
  vgg, vrr = mean((g - mg[:, None]) ** 2), mean((r - mr[:, None]) ** 2)
  vgr = mean((g - mg[:, None]) * (r - mr[:, None]))
  big = jnp.where(w > 0, r, -jnp.inf).max(1)
  small = jnp.where(w > 0, r, jnp.inf).min(1)
  span = jax.lax.stop_gradient(jnp.maximum(big - small, 1e-6))
  c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
  ssim = ((2 * mg * mr + c1) * (2 * vgr + c2)) / ((mg ** 2 + mr ** 2 + c1) * (vgg + vrr + c2))
  return jnp.mean(ssim)
