"""Head-motion generation metrics (PoseTalk Table 3, GoHD Table 2), computed without a network.

Motion here is a pose+gaze sequence `[T, 8]` (or `[B, T, 8]`) in NORMALISED units (dataset
mean/std; `jaxtalk.motion.normalize`), order (yaw, pitch, roll, tx, ty, scale, gaze pitch,
gaze yaw).

Motion features (`motion_features`), one 48-d vector per window of W frames (default 50 = 2 s):
  for each of the 8 dimensions:  mean and std of the position,
                                 mean |v| and std of v, v = x[t+1] - x[t] (per frame),
                                 mean |a| and std of a, a = v[t+1] - v[t].
PoseTalk's FID and Div. follow Guo et al. 2022 on features of a trained motion network; no such
network is available here, so jaxtalk uses these documented statistics. Before the Fréchet
distance and Diversity, features of both sets are z-scored with the REAL set's per-feature mean
and std (so position, velocity and acceleration terms weigh alike). Values are therefore not
comparable with the paper's numbers, only between methods/modes evaluated the same way.

* `frechet_distance`: ||μ_r - μ_g||² + Tr(Σ_r + Σ_g - 2 (Σ_r Σ_g)^½) (Heusel et al. 2017).
* `diversity`: Guo et al. 2022: two random subsets of S windows (S = min(300, n)), mean L2
  distance between the paired features.
* `variance_ratio`: per-dimension variance of generated frames over variance of real frames
  (over all valid frames of all sequences), `[8]`; 1 = statistical match, ≪ 1 = collapse to a mean
  pose (PoseTalk's D1 problem).
* `ssim_p`: GoHD's SSIM_p: 1-D SSIM (Wang et al. 2004) between generated and real sequences of
  each dimension with an 11-frame Gaussian window (σ = 1.5), C1 = (0.01 L)², C2 = (0.03 L)²,
  L = max - min of the real sequence of that dimension; averaged over positions, dimensions and
  sequences. (GoHD computes it on poses re-detected from videos; here on the motion itself.)
* `evaluate_modes`: PoseTalk Table 3 on held-out clips: sample with text+audio, text-only,
  audio-only (and unconditional) and report FD, Div, variance ratio and SSIM_p per mode, plus the
  real clips' Div (Table 3's GT column).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np
import scipy.linalg

FEATURE_NAMES = tuple(
    f"{stat}_{d}" for d in ("yaw", "pitch", "roll", "tx", "ty", "scale", "gaze_pitch",
                            "gaze_yaw")
    for stat in ("pos_mean", "pos_std", "vel_absmean", "vel_std", "acc_absmean", "acc_std"))


def motion_features(x) -> np.ndarray:
  """`[..., T, 8]` windows -> `[..., 48]` float64 features (see module docstring; T >= 3)."""
  x = np.asarray(x, np.float64)
  if x.shape[-2] < 3:
    raise ValueError(f"motion_features: windows need >= 3 frames, got shape {x.shape}")
  v = np.diff(x, axis=-2)
  a = np.diff(v, axis=-2)
  parts = [x.mean(-2), x.std(-2), np.abs(v).mean(-2), v.std(-2), np.abs(a).mean(-2), a.std(-2)]
  return np.stack(parts, axis=-1).reshape(x.shape[:-2] + (-1,))


def cut_windows(seqs: Sequence[np.ndarray], window: int = 50, stride: Optional[int] = None):
  """Non-overlapping (or `stride`) windows `[M, window, 8]` from sequences `[T_i, 8]`."""
  stride = stride or window
  out = [s[i:i + window] for s in seqs for i in range(0, len(s) - window + 1, stride)]
  if not out:
    raise ValueError(f"no sequence is as long as the window ({window} frames)")
  return np.stack(out).astype(np.float64)


def standardize(real_feats, *others):
  """z-scores feature sets with the real set's per-feature mean/std (std floored at 1e-6)."""
  mu = real_feats.mean(0)
  sd = np.maximum(real_feats.std(0), 1e-6)
  return [(f - mu) / sd for f in (real_feats,) + others]


def frechet_distance(feats_a, feats_b, eps: float = 1e-6) -> float:
  """Fréchet distance between Gaussians fitted to `[n, F]` and `[m, F]` (n, m >= 2)."""
  a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
  if a.shape[0] < 2 or b.shape[0] < 2:
    raise ValueError(f"frechet_distance needs >= 2 samples per set, got {a.shape}, {b.shape}")
  mu1, mu2 = a.mean(0), b.mean(0)
  s1 = np.cov(a, rowvar=False) + eps * np.eye(a.shape[1])
  s2 = np.cov(b, rowvar=False) + eps * np.eye(b.shape[1])
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * covmean))


def diversity(feats, num_pairs: int = 300, seed: int = 0) -> float:
  """Guo et al. 2022 diversity: mean L2 distance of `min(num_pairs, n)` random pairs."""
  f = np.asarray(feats, np.float64)
  n = f.shape[0]
  if n < 2:
    raise ValueError(f"diversity needs >= 2 samples, got {n}")
  s = min(num_pairs, n)
  rng = np.random.default_rng(seed)
  i, j = rng.choice(n, s, replace=False), rng.choice(n, s, replace=False)
  return float(np.mean(np.linalg.norm(f[i] - f[j], axis=-1)))


def variance_ratio(gen, real, mask=None, real_mask=None):
  """Per-dimension variance ratio `[D]` (generated / real) over valid frames; jnp, traceable.

  Args:
    gen: `[B, T, D]` (or `[T, D]`). real: `[B', T', D]` (any number of frames).
    mask: optional valid frames of `gen`; also used for `real` when `real_mask` is None and the
      shapes match. real_mask: optional valid frames of `real`.
  """
  g = jnp.asarray(gen, jnp.float32).reshape(-1, gen.shape[-1])
  r = jnp.asarray(real, jnp.float32).reshape(-1, real.shape[-1])
  if real_mask is None and mask is not None and tuple(real.shape) == tuple(gen.shape):
    real_mask = mask
  weights = lambda x, m: (jnp.ones(x.shape[:1], jnp.float32) if m is None
                          else jnp.asarray(m, jnp.float32).reshape(-1))

  def var(x, m):
    w = weights(x, m)
    n = jnp.maximum(jnp.sum(w), 1.0)
    m = jnp.sum(x * w[:, None], 0) / n
    return jnp.sum(((x - m) ** 2) * w[:, None], 0) / n

  return var(g, mask) / jnp.maximum(var(r, real_mask), 1e-12)


def _gauss(size: int = 11, sigma: float = 1.5):
  k = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
  return k / k.sum()


def ssim_p(gen, real, size: int = 11, sigma: float = 1.5) -> float:
  """GoHD SSIM_p between sequences `[B, T, D]` (or `[T, D]`), T >= `size` (see docstring)."""
  g = np.asarray(gen, np.float64)
  r = np.asarray(real, np.float64)
  if g.shape != r.shape:
    raise ValueError(f"ssim_p: shapes differ: {g.shape} vs {r.shape}")
  if g.ndim == 2:
    g, r = g[None], r[None]
  if g.shape[1] < size:
    raise ValueError(f"ssim_p: sequences need >= {size} frames, got {g.shape[1]}")
  k = _gauss(size, sigma)
  filt = lambda x: np.apply_along_axis(lambda s: np.convolve(s, k, mode="valid"), 1, x)
  rng_ = r.max(1, keepdims=True) - r.min(1, keepdims=True)
  rng_ = np.maximum(rng_, 1e-6)
  c1, c2 = (0.01 * rng_) ** 2, (0.03 * rng_) ** 2
  mg, mr = filt(g), filt(r)
  sgg = filt(g * g) - mg ** 2
  srr = filt(r * r) - mr ** 2
  sgr = filt(g * r) - mg * mr
  s = ((2 * mg * mr + c1) * (2 * sgr + c2)) / ((mg ** 2 + mr ** 2 + c1) * (sgg + srr + c2))
  return float(np.mean(s))


def compare(gen_seqs: Sequence[np.ndarray], real_seqs: Sequence[np.ndarray], *,
            window: int = 50, seed: int = 0) -> dict:
  """FD, Div, variance ratios and SSIM_p of generated vs real sequences (normalised `[T_i, 8]`,
  paired by index for SSIM_p; lengths are cut to the shorter of each pair)."""
  pairs = [(np.asarray(g)[:min(len(g), len(r))], np.asarray(r)[:min(len(g), len(r))])
           for g, r in zip(gen_seqs, real_seqs)]
  gw = cut_windows([g for g, _ in pairs], window)
  rw = cut_windows([r for _, r in pairs], window)
  fr, fg = standardize(motion_features(rw), motion_features(gw))
  ratio = np.asarray(variance_ratio(np.concatenate([g for g, _ in pairs])[None],
                                    np.concatenate([r for _, r in pairs])[None]))
  return {
      "fd": frechet_distance(fr, fg) if len(fr) > 1 and len(fg) > 1 else float("nan"),
      "diversity": diversity(fg, seed=seed) if len(fg) > 1 else float("nan"),
      "real_diversity": diversity(fr, seed=seed) if len(fr) > 1 else float("nan"),
      "var_ratio": ratio.tolist(),
      "var_ratio_min": float(ratio.min()),
      "var_ratio_max": float(ratio.max()),
      "ssim_p": float(np.mean([ssim_p(g, r) for g, r in pairs if len(g) >= 11])),
  }


def evaluate_modes(sample_fn: Callable[[str, int, int], np.ndarray],
                   real_seqs: Sequence[np.ndarray], *,
                   modes: Sequence[str] = ("text_audio", "text", "audio"),
                   seeds: Sequence[int] = (0,), window: int = 50) -> Mapping[str, dict]:
  """PoseTalk Table 3: metrics of each conditioning mode on held-out clips.

  Args:
    sample_fn: `(mode, clip_index, seed) -> [T_i, 8]` normalised generated motion for clip i
      (same audio length) with the mode's conditions ("text_audio", "text", "audio", "none").
    real_seqs: the clips' real normalised motion `[T_i, 8]`.
    modes / seeds: modes to compare; one sample per clip and seed.
    window: feature window (frames).

  Returns:
    {mode: compare(...)} for every mode.
  """
  out = {}
  for mode in modes:
    gen, real = [], []
    for i, r in enumerate(real_seqs):
      for s in seeds:
        gen.append(np.asarray(sample_fn(mode, i, s), np.float64))
        real.append(np.asarray(r, np.float64))
    out[mode] = compare(gen, real, window=window)
  return out


def pld_sample_fn(params, clips: Sequence[Mapping], guidance: float = 7.5):
  """`sample_fn` for `evaluate_modes` from a `jaxtalk.generators.pld.PLDParams` bundle.

  Args:
    params: the bundle. clips: dicts with "wav" (16 kHz float32 [N]) and "text" (str).
    guidance: s of PoseTalk eq. 3.

  Returns:
    `(mode, i, seed) -> [T, 8]` normalised motion.
  """
  from jaxtalk import motion as motion_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top
  st = params.denoiser["stats"]

  def fn(mode, i, seed):
    c = clips[i]
    seconds = len(c["wav"]) / 16000.0
    use_audio = mode in ("text_audio", "audio")
    use_text = mode in ("text_audio", "text")
    m = pld_lib.sample_motion(params, c["wav"] if use_audio else None,
                               c.get("text") if use_text else None,
                               seconds=None if use_audio else seconds, guidance=guidance,
                               seed=seed)
    raw = np.asarray(m.as_features()[0])
    return motion_lib.normalize(raw, np.asarray(st["feat_mean"]), np.asarray(st["feat_std"]))

  return fn
