"""Tests for GoHD's SSIM_p, SSIM_e and MLD in jaxtalk.evaluators.motion (hand-computed values)."""

import numpy as np
import pytest

from jaxtalk.evaluators import motion as m
from jaxtalk.features import expression as ex
from jaxtalk.features import face


def _ramp(t=5, d=1):
  return np.tile(np.arange(1.0, t + 1.0)[:, None], (1, d))          # [T, D] = 1..T


def test_ssim_global_identity_shift_and_scale_by_hand():
  r = _ramp()                                   # mean 3, population var 2, L = 4
  c1, c2 = (0.01 * 4) ** 2, (0.03 * 4) ** 2
  assert m.ssim_p(r, r) == pytest.approx(1.0)
  # Shift by 1: mu' = 4, sigma'^2 = cov = 2 -> only the luminance term moves.
  assert m.ssim_p(r + 1, r) == pytest.approx((24 + c1) / (25 + c1))
  # Scale by 2: mu' = 6, sigma'^2 = 8, cov = 4.
  want = (36 + c1) / (45 + c1) * (8 + c2) / (10 + c2)
  assert m.ssim_p(2 * r, r) == pytest.approx(want)
  # Mean over dimensions: one identical dimension, one shifted.
  two = np.concatenate([r, r + 1], -1)
  assert m.ssim_p(two, np.concatenate([r, r], -1)) == pytest.approx(
      (1 + (24 + c1) / (25 + c1)) / 2)


def test_ssim_e_is_one_minus_eq26_loss():
  rng = np.random.default_rng(0)
  real = rng.standard_normal((2, 40, 21))
  gen = 0.7 * real + 0.5 * rng.standard_normal(real.shape) + 0.2
  want = []
  for g, r in zip(gen, real):
    terms = []
    for i in range(21):
      mu, mu_h = r[:, i].mean(), g[:, i].mean()
      var, var_h = r[:, i].var(), g[:, i].var()
      cov = np.mean((r[:, i] - mu) * (g[:, i] - mu_h))
      big_l = r[:, i].max() - r[:, i].min()
      c1, c2 = (0.01 * big_l) ** 2, (0.03 * big_l) ** 2
      terms.append((2 * mu * mu_h + c1) * (2 * cov + c2)
                   / ((mu ** 2 + mu_h ** 2 + c1) * (var + var_h + c2)))
    want.append(np.mean(terms))                 # = 1 - L_ssim of eq. 26
  assert m.ssim_e(gen, real) == pytest.approx(np.mean(want), rel=1e-9)
  assert m.ssim_e(real, real) == pytest.approx(1.0)
  assert m.ssim_e(gen, real) < 0.9


def test_ssim_masks_ignore_padded_frames():
  r = _ramp(5, 2)
  pad_r = np.concatenate([r, np.full((3, 2), 50.0)])[None]
  pad_g = np.concatenate([2 * r, np.full((3, 2), -9.0)])[None]
  mask = np.arange(8)[None] < 5
  assert m.ssim_p(pad_g, pad_r, mask) == pytest.approx(m.ssim_p(2 * r, r))
  assert m.ssim_p(pad_g, pad_r) != pytest.approx(m.ssim_p(2 * r, r))
  # Windowed: the same with 11-frame windows on a longer ramp.
  r = _ramp(20, 2)
  pad_r = np.concatenate([r, np.full((6, 2), 50.0)])[None]
  pad_g = np.concatenate([r + 1, np.zeros((6, 2))])[None]
  mask = np.arange(26)[None] < 20
  assert m.ssim_p(pad_g, pad_r, mask, window=11) == pytest.approx(
      m.ssim_p(r + 1, r, window=11))


def test_ssim_windowed_shift_by_hand():
  r = _ramp(20)[:, :1] - 1.0                    # 0..19, L = 19
  c1 = (0.01 * 19) ** 2
  # A symmetric window on a ramp: local mean = the centre value c (5..14), equal local
  # variances and cov -> contrast-structure 1, luminance (2c(c+1)+C1)/(c²+(c+1)²+C1).
  c = np.arange(5, 15, dtype=np.float64)
  want = np.mean((2 * c * (c + 1) + c1) / (c ** 2 + (c + 1) ** 2 + c1))
  assert m.ssim_p(r + 1, r, window=11) == pytest.approx(want, rel=1e-9)
  assert m.ssim_p(r, r, window=11) == pytest.approx(1.0)


def test_ssim_errors():
  r = _ramp(5, 2)
  with pytest.raises(ValueError, match="shapes differ"):
    m.ssim_p(r, r[:4])
  with pytest.raises(ValueError, match=r"\[B, T, D\]"):
    m.ssim_p(r[0], r[0])
  with pytest.raises(ValueError, match="mask"):
    m.ssim_p(r, r, np.ones((1, 4), bool))
  with pytest.raises(ValueError, match=">= 2 valid frames"):
    m.ssim_p(r, r, np.arange(5) < 1)
  with pytest.raises(ValueError, match="11 consecutive"):
    m.ssim_p(r, r, window=11)
  with pytest.raises(ValueError, match="21"):
    m.ssim_e(r, r)


def _mouth_basis():
  """64 one-hot components: 0-19 move mouth point 48+j in x, 20-39 in y, 40-59 in z; 60-63
  move jaw points 0-3 in x (not mouth)."""
  rng = np.random.default_rng(0)
  comps = np.zeros((64, face.NUM_LANDMARKS * 3), np.float32)
  for j in range(20):
    for axis in range(3):
      comps[20 * axis + j, 3 * face.LANDMARKS_68[48 + j] + axis] = 1.0
  for j in range(4):
    comps[60 + j, 3 * face.LANDMARKS_68[j]] = 1.0
  return ex.ExpressionBasis(mean=rng.standard_normal((face.NUM_LANDMARKS, 3)).astype(np.float32),
                            components=comps, std=np.ones(64, np.float32),
                            explained_variance_ratio=np.full(64, 1 / 64, np.float32))


def test_mld_by_hand():
  basis = _mouth_basis()
  rng = np.random.default_rng(1)
  e = (0.1 * rng.standard_normal((2, 6, 64))).astype(np.float32)
  assert m.mld(basis, e, e) == 0.0
  d = np.zeros(64, np.float32)
  d[0], d[20] = 0.03, 0.04                      # point 48 moves (0.03, 0.04): 0.05 IOD
  assert m.mld(basis, e + d, e) == pytest.approx(0.05 / 20, rel=1e-4)
  dz = np.zeros(64, np.float32)
  dz[45] = 0.2                                  # point 53 moves in z only
  assert m.mld(basis, e + dz, e) == pytest.approx(0.0, abs=1e-7)
  assert m.mld(basis, e + dz, e, dims=3) == pytest.approx(0.2 / 20, rel=1e-4)
  jaw = np.zeros(64, np.float32)
  jaw[60:] = 0.5                                # jaw points: no mouth landmark moves
  assert m.mld(basis, e + jaw, e) == pytest.approx(0.0, abs=1e-7)
  # Masked frames are left out: only frame 0 of each sequence differs, then it is masked.
  pred = e.copy()
  pred[:, 0] += d
  assert m.mld(basis, pred, e) == pytest.approx(0.05 / 20 / 6, rel=1e-4)
  assert m.mld(basis, pred, e, np.arange(6)[None].repeat(2, 0) > 0) == pytest.approx(
      0.0, abs=1e-7)
  assert m.mld(basis, e[0], e[0]) == 0.0        # [T, k] accepted


def test_mld_errors():
  basis = _mouth_basis()
  e = np.zeros((1, 4, 64), np.float32)
  with pytest.raises(ValueError, match=r"\[B, T, 64\]"):
    m.mld(basis, e[..., :10], e[..., :10])
  with pytest.raises(ValueError, match="same shape"):
    m.mld(basis, e, e[:, :3])
  with pytest.raises(ValueError, match="dims"):
    m.mld(basis, e, e, dims=4)
  with pytest.raises(ValueError, match="no valid frame"):
    m.mld(basis, e, e, np.zeros((1, 4), bool))


def test_compare_expression():
  basis = _mouth_basis()
  rng = np.random.default_rng(2)
  e = (0.05 * rng.standard_normal((2, 30, 64))).astype(np.float32)
  out = m.compare_expression(basis, e, e)
  assert out["mld"] == 0.0 and out["ssim_e"] == pytest.approx(1.0)
  other = m.compare_expression(basis, e[::-1].copy(), e)
  assert other["mld"] > 0.01


def test_ssim_1d_matches_the_stage2_loss_definition():
  """`losses.sequence_ssim` (1 − L_ssim of eq. 26, jnp) and the metric read the same number."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxtalk import losses  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  real = rng.standard_normal((3, 30, 21))
  gen = 0.5 * real + rng.standard_normal(real.shape)
  mask = np.arange(30)[None] < np.array([[30], [22], [9]])
  want = float(losses.sequence_ssim(jnp.asarray(gen), jnp.asarray(real), jnp.asarray(mask)))
  assert m.ssim_e(gen, real, mask) == pytest.approx(want, rel=1e-4)
