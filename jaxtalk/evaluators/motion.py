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
* `ssim_1d` / `ssim_p` / `ssim_e`: GoHD's SSIM_p (pose) and SSIM_e (eye features f, 21-D):
  1-D SSIM (Wang et al. 2004) of each dimension over time in the form of GoHD supp. eq. 26
  (per-dimension mean, variance, covariance; mean over dimensions), C1 = (0.01 L)²,
  C2 = (0.03 L)², L = max - min of the real sequence of that dimension. Default: whole-sequence
  statistics, as eq. 26 (so SSIM_e = 1 - L_ssim); `window=11` gives 11-frame Gaussian windows
  (σ = 1.5). Optional `[B, T]` masks drop padded frames. (GoHD computes SSIM_p on poses
  re-detected from videos and SSIM_e on landmarks of re-detected coefficients; here on the
  motion itself, so values are not comparable with Table 2.)
* `mld`: GoHD's mouth landmark distance (Tables 5-6) from expression coefficients: mean L2
  distance of the 20 mouth landmarks (68-pt 48-67) of the expression-only meshes
  (`features.expression`), in IOD of the canonical face (the paper's are render pixels: not
  comparable). `compare_expression` gives MLD and SSIM_e of coefficient sequences.
* `evaluate_modes`: PoseTalk Table 3 on held-out clips: sample with text+audio, text-only,
  audio-only (and unconditional) and report FD, Div, variance ratio and SSIM_p per mode, plus the
  real clips' Div (Table 3's GT column).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxtalk.features import expression as expression_lib

NUM_EYE_FEATURES = expression_lib.NUM_EYE_FEATURES   # GoHD's f in R^21.
MOUTH_68 = tuple(range(48, 68))                      # iBUG-68 outer + inner lip points.

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


def _as_btd(x, name: str, caller: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim == 2:
    x = x[None]
  if x.ndim != 3:
    raise ValueError(f"{caller}: {name} must be [B, T, D] or [T, D], got shape {x.shape}")
  return x


def _frame_mask(mask, shape, caller: str) -> np.ndarray:
  """`[B, T]` float64 weights (1 valid, 0 padded) from an optional `[B, T]`/`[T]` mask."""
  if mask is None:
    return np.ones(shape[:2], np.float64)
  m = np.asarray(mask, np.float64)
  if m.ndim == 1:
    m = m[None]
  if m.shape != tuple(shape[:2]):
    raise ValueError(f"{caller}: mask must be [B, T] = {tuple(shape[:2])}, got {np.shape(mask)}")
  return m


def _ssim_terms(mg, mr, vgg, vrr, vgr, c1, c2):
  return ((2 * mg * mr + c1) * (2 * vgr + c2)) / ((mg ** 2 + mr ** 2 + c1) * (vgg + vrr + c2))


def ssim_1d(gen, real, mask=None, *, window: Optional[int] = None, sigma: float = 1.5,
            caller: str = "ssim_1d") -> float:
  """1-D SSIM (Wang et al. 2004) of each dimension over time, averaged (GoHD supp. eq. 26).

  Per sequence b and dimension i, with weights w_t (the mask) over the valid frames:

    SSIM_i = (2 μ_i μ̂_i + C1)(2 cov_i + C2) / ((μ_i² + μ̂_i² + C1)(σ_i² + σ̂_i² + C2)),

  C1 = (0.01 L_i)², C2 = (0.03 L_i)² (Wang et al.'s K1, K2), L_i = max - min of the REAL
  sequence's dimension i over its valid frames (floored at 1e-6), so the constants follow each
  dimension's own range and the metric does not depend on its units. Statistics are population
  (1/N) moments.
  * `window=None` (default; eq. 26): μ, σ², cov over the whole valid sequence. This is the form
    GoHD writes for L_ssim, so for eye features `ssim_e = 1 - L_ssim` of eq. 26 and the stage-2
    loss and the metric read the same quantity; it compares each dimension's mean, spread and
    whole-sequence correlation.
  * `window=K` (odd, e.g. 11): image-SSIM style, statistics in a K-frame Gaussian window (σ =
    `sigma` frames) at every position whose window holds only valid frames, averaged over those
    positions: local (K / 25 s) agreement instead of whole-sequence agreement.
  The result is the mean over dimensions, then over sequences (each sequence once). SSIM is not
  shift-invariant: values can be negative for signed signals of opposite sign (GoHD's Table 2
  numbers come from poses re-detected in rendered videos, so they are not comparable).

  Args:
    gen, real: `[B, T, D]` or `[T, D]`, same shape, same units (e.g. normalised pose).
    mask: optional `[B, T]` (or `[T]`) bool/0-1, True = valid frame (padded frames are ignored).
    window / sigma: see above. caller: name used in error messages.

  Returns:
    float, 1.0 when gen == real on the valid frames.

  Raises:
    ValueError: shapes differ or are not `[B, T, D]`/`[T, D]`, a bad mask shape, a sequence with
      fewer than 2 valid frames (global) or no fully valid window (windowed).
  """
  g, r = _as_btd(gen, "gen", caller), _as_btd(real, "real", caller)
  if g.shape != r.shape:
    raise ValueError(f"{caller}: shapes differ: gen {np.shape(gen)} vs real {np.shape(real)}")
  m = _frame_mask(mask, g.shape, caller)
  n = m.sum(1)
  if window is None and np.any(n < 2):
    raise ValueError(f"{caller}: every sequence needs >= 2 valid frames, got {n.tolist()}")
  valid = m[..., None] > 0
  big = np.finfo(np.float64).max
  rng_ = np.where(valid, r, -big).max(1) - np.where(valid, r, big).min(1)  # [B, D]
  rng_ = np.maximum(rng_, 1e-6)[:, None]
  c1, c2 = (0.01 * rng_) ** 2, (0.03 * rng_) ** 2
  if window is None:
    w = (m / n[:, None])[..., None]
    filt = lambda x: np.sum(x * w, 1, keepdims=True)
    keep = np.ones((g.shape[0], 1), bool)
  else:
    k = _gauss(int(window), sigma)
    conv = lambda x: np.apply_along_axis(lambda s: np.convolve(s, k, mode="valid"), 1, x)
    cover = conv(m)                                       # [B, T - K + 1]: 1 = all valid
    keep = cover > 1 - 1e-9
    if g.shape[1] < window or np.any(~keep.any(1)):
      raise ValueError(f"{caller}: every sequence needs {window} consecutive valid frames "
                       f"(window={window}), got shape {g.shape}")
    filt = lambda x: conv(x * m[..., None]) / np.maximum(cover, 1e-12)[..., None]
  mg, mr = filt(g), filt(r)
  s = _ssim_terms(mg, mr, filt(g * g) - mg ** 2, filt(r * r) - mr ** 2, filt(g * r) - mg * mr,
                  c1, c2)                                  # [B, P, D]
  per_seq = np.sum(s.mean(-1) * keep, 1) / keep.sum(1)
  return float(np.mean(per_seq))


def ssim_p(gen, real, mask=None, *, window: Optional[int] = None, sigma: float = 1.5) -> float:
  """GoHD's SSIM_p (Table 2): `ssim_1d` of pose (or pose+gaze) sequences `[B, T, D]`/`[T, D]`.

  Defaults to eq. 26's whole-sequence statistics (`window=None`); `window=11` gives the
  11-frame Gaussian-window form. See `ssim_1d` for C1, C2, masks and errors.
  """
  return ssim_1d(gen, real, mask, window=window, sigma=sigma, caller="ssim_p")


def ssim_e(gen, real, mask=None, *, window: Optional[int] = None, sigma: float = 1.5) -> float:
  """GoHD's SSIM_e (Tables 2, 6): `ssim_1d` of eye-motion features f `[B, T, 21]`/`[T, 21]`
  (`jaxtalk.features.expression.eye_features`); with the default `window=None` it is
  1 − L_ssim of eq. 26 (mean over the 21 dimensions).

  Raises:
    ValueError: as `ssim_1d`, or a last dimension other than 21.
  """
  if np.shape(gen)[-1:] != (NUM_EYE_FEATURES,) or np.shape(real)[-1:] != (NUM_EYE_FEATURES,):
    raise ValueError(f"ssim_e: expected eye features [..., {NUM_EYE_FEATURES}], got gen "
                     f"{np.shape(gen)} and real {np.shape(real)}")
  return ssim_1d(gen, real, mask, window=window, sigma=sigma, caller="ssim_e")


def mld(basis, pred_e, true_e, mask=None, *, dims: int = 2) -> float:
  """GoHD's MLD (Tables 5, 6): mouth landmark distance of expression coefficients.

  For each valid frame, the expression-only meshes S̄ + e·B_exp of the predicted and the
  ground-truth coefficients (`expression.expression_mesh`) give 68 landmarks
  (`expression.landmarks_68`); MLD is the mean over valid frames of the mean over the 20 mouth
  landmarks (68-pt indices 48-67, `MOUTH_68`) of their L2 distance, in the canonical image plane
  (x, y) by default (`dims=2`; GoHD measures 2-D landmarks) or in 3-D (`dims=3`).

  Units: inter-ocular distances (IOD) of the canonical face (`expression` module docstring), so
  0.01 = 1% of the eye-corner distance. GoHD reports pixels of its renders; jaxtalk's numbers
  are NOT comparable with the paper's Tables 5-6, only between jaxtalk models.

  Args:
    basis: an `expression.ExpressionBasis` with k components.
    pred_e, true_e: `[B, T, k]` or `[T, k]` coefficients, same shape.
    mask: optional `[B, T]` (or `[T]`) True = valid frame.
    dims: 2 (x, y) or 3 (x, y, z).

  Returns:
    float, IOD; 0.0 for identical coefficients.

  Raises:
    ValueError: shapes differ / are not `[B, T, k]` / `[T, k]` with the basis' k, a bad mask
      shape, no valid frame, or dims not 2 or 3.
  """
  p, t = _as_btd(pred_e, "pred_e", "mld"), _as_btd(true_e, "true_e", "mld")
  if p.shape != t.shape or p.shape[-1] != basis.num_components:
    raise ValueError(f"mld: expected pred_e and true_e [B, T, {basis.num_components}] of the "
                     f"same shape, got {np.shape(pred_e)} and {np.shape(true_e)}")
  if dims not in (2, 3):
    raise ValueError(f"mld: dims must be 2 or 3, got {dims}")
  m = _frame_mask(mask, p.shape, "mld")
  if m.sum() <= 0:
    raise ValueError("mld: the mask has no valid frame")
  mouth = lambda e: expression_lib.landmarks_68(
      expression_lib.expression_mesh(basis, e))[..., list(MOUTH_68), :dims].astype(np.float64)
  per_frame = np.linalg.norm(mouth(p) - mouth(t), axis=-1).mean(-1)       # [B, T]
  return float(np.sum(per_frame * m) / np.sum(m))


def compare_expression(basis, gen_e, real_e, mask=None, *, window: Optional[int] = None) -> dict:
  """MLD and SSIM_e of generated vs real expression coefficients (GoHD Tables 5-6).

  Args:
    basis: the `expression.ExpressionBasis` the coefficients belong to.
    gen_e, real_e: `[B, T, k]` or `[T, k]` paired sequences. mask: optional `[B, T]` valid frames.
    window: SSIM windowing (`ssim_1d`).

  Returns:
    {"mld": IOD (`mld`), "ssim_e": `ssim_e` of the eye features f computed from each side's
     coefficients (`expression.eye_features_from_coefficients`)}.
  """
  f = lambda e: expression_lib.eye_features_from_coefficients(basis, _as_btd(e, "e", "compare"))
  return {"mld": mld(basis, gen_e, real_e, mask),
          "ssim_e": ssim_e(f(gen_e), f(real_e), mask, window=window)}


def compare(gen_seqs: Sequence[np.ndarray], real_seqs: Sequence[np.ndarray], *,
            window: int = 50, seed: int = 0) -> dict:
  """FD, Div, variance ratios and SSIM_p of generated vs real sequences (normalised `[T_i, 8]`,
  paired by index for SSIM_p; lengths are cut to the shorter of each pair). "ssim_p" uses
  eq. 26's whole-sequence statistics, "ssim_p_win11" 11-frame Gaussian windows (`ssim_1d`)."""
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
      "ssim_p": float(np.mean([ssim_p(g, r) for g, r in pairs if len(g) >= 2])),
      "ssim_p_win11": float(np.mean([ssim_p(g, r, window=11) for g, r in pairs
                                     if len(g) >= 11])),
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
