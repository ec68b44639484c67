"""Image reconstruction metrics: SSIM, PSNR and an LPIPS-style perceptual distance.

Images are float `[..., H, W, 3]` in [-1, 1] (any leading dims); each metric returns per-image
float32 values with the leading dims (average them yourself, e.g. over valid frames).

* SSIM (Wang et al. 2004) via dm-pix on images mapped to [0, 1]: 11x11 Gaussian window,
  sigma 1.5, k1 = 0.01, k2 = 0.03, computed per RGB channel and averaged (PoseTalk Tables 1-2).
* PSNR = 10 log10(1 / MSE) on images in [0, 1] (MSE floored at 1e-10, so identical images give
  100 dB).
* Perceptual distance: LPIPS's formula without its learned linear layers (the "baseline"
  variant of Zhang et al. 2018): for each feature layer l, features are unit-normalised over
  channels, and d = sum_l mean_{h,w} || f_l(x) - f_l(y) ||^2. The backbone is
  `jaxtalk.losses.PerceptualNet`: ImageNet VGG19 (relu1_1..relu5_1) when converted weights are
  given, else the documented random-feature substitute (whose value is NOT comparable to LPIPS;
  the report names which backbone was used).
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp

from jaxtalk import losses


def _check(pred, target, name):
  if pred.shape != target.shape or pred.ndim < 3 or pred.shape[-1] != 3:
    raise ValueError(f"{name}: pred {pred.shape} and target {target.shape} must both be "
                     "[..., H, W, 3]")


def _to01(x):
  return (jnp.asarray(x, jnp.float32) + 1.0) * 0.5


def ssim(pred, target) -> jax.Array:
  """Per-image SSIM, float32 with the leading dims. Identical images give 1."""
  _check(pred, target, "ssim")
  lead = pred.shape[:-3]
  a = _to01(pred).reshape((-1,) + pred.shape[-3:])
  b = _to01(target).reshape((-1,) + target.shape[-3:])
  return pix.ssim(a, b, max_val=1.0).reshape(lead)


def psnr(pred, target) -> jax.Array:
  """Per-image PSNR in dB (see module docstring), float32 with the leading dims."""
  _check(pred, target, "psnr")
  mse = jnp.mean((_to01(pred) - _to01(target)) ** 2, axis=(-3, -2, -1))
  return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


def perceptual_distance(pred, target, *, net: losses.PerceptualNet, params) -> jax.Array:
  """Per-image LPIPS-style distance (see module docstring); 0 for identical images."""
  _check(pred, target, "perceptual_distance")
  lead = pred.shape[:-3]
  a = jnp.asarray(pred, jnp.float32).reshape((-1,) + pred.shape[-3:])
  b = jnp.asarray(target, jnp.float32).reshape((-1,) + target.shape[-3:])
  n = a.shape[0]
  feats = net.features(params, jnp.concatenate([a, b]).astype(net.dtype))
  total = jnp.zeros((n,), jnp.float32)
  for f in feats:
    f = f / jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + 1e-10)
    total = total + jnp.mean(jnp.sum((f[:n] - f[n:]) ** 2, axis=-1), axis=(1, 2))
  return total.reshape(lead)


def backbone_name(net: losses.PerceptualNet) -> str:
  """"vgg19" or "random-features (substitute, not LPIPS-comparable)"."""
  return "vgg19" if net.kind == "vgg19" else "random-features (substitute, not LPIPS-comparable)"


def frame_metrics(pred, target, source, mouth_box, mask=None, *, mouth_size: int = 32,
                  box_scale: float = 1.0) -> dict:
  """Self-reenactment metrics of `pred` and of the repeat-the-source baseline.

  Args:
    pred / target: `[B, T, H, W, 3]` in [-1, 1]. source: `[B, H, W, 3]` (repeated over T for the
      baseline). mouth_box: `[B, T, 4]` (x0, y0, x1, y1) in [0, 1]. mask: optional `[B, T]`
      valid frames.
    mouth_size / box_scale: the mouth crop (`losses.mouth_l1`, square boxes).

  Returns:
    float32 scalars "l1", "mouth_l1", "ssim" of `pred` and the same with "_source" of the
    source frame, averaged over valid frames.
  """
  src = jnp.broadcast_to(source[:, None], target.shape)
  w = None if mask is None else mask.astype(jnp.float32)

  def per(p):
    s = ssim(p.reshape((-1,) + p.shape[2:]), target.reshape((-1,) + target.shape[2:]))
    s = s.reshape(target.shape[:2])
    mean_ssim = jnp.mean(s) if w is None else jnp.sum(s * w) / jnp.maximum(jnp.sum(w), 1.0)
    return {"l1": losses.l1_loss(p, target, mask),
            "mouth_l1": losses.mouth_l1(p, target, mouth_box, size=mouth_size,
                                        box_scale=box_scale, square=True, mask=mask),
            "ssim": mean_ssim}

  m = per(pred)
  m.update({f"{k}_source": v for k, v in per(src).items()})
  return m


def frame_features(images, *, net: losses.PerceptualNet, params) -> jax.Array:
  """Per-image features for the FID* column (a Fréchet distance between feature sets, Heusel et
  al. 2017, computed with `motion.frechet_distance`): each layer of the perceptual backbone
  (`losses.PerceptualNet`: VGG19 relu1_1..relu5_1, or the random-feature substitute) averaged
  over (h, w) and concatenated.

  The papers' FID uses Inception-v3 pool3 features of 299 px images; these features are NOT
  Inception's, so FID* is comparable only between rows computed with the same backbone (the
  table names it).

  Args:
    images: float `[..., H, W, 3]` in [-1, 1].

  Returns:
    float32 `[..., D]` (D = the sum of the backbone's layer widths).
  """
  if images.ndim < 3 or images.shape[-1] != 3:
    raise ValueError(f"frame_features: images {images.shape} must be [..., H, W, 3]")
  lead = images.shape[:-3]
  x = jnp.asarray(images, jnp.float32).reshape((-1,) + images.shape[-3:])
  feats = net.features(params, x.astype(net.dtype))
  out = jnp.concatenate([jnp.mean(f.astype(jnp.float32), axis=(1, 2)) for f in feats], axis=-1)
  return out.reshape(lead + (out.shape[-1],))
