"""Tests for jaxtalk.evaluators.motion (FD, Diversity, variance ratio, SSIM_p, Table-3 eval)."""

import numpy as np
import pytest

from jaxtalk.evaluators import motion as m


def _smooth(rng, n, t, amp=1.0):
  tt = np.arange(t)[None, :, None] / 25.0
  f = rng.uniform(0.2, 1.0, (n, 1, 8))
  p = rng.uniform(0, 6.28, (n, 1, 8))
  return amp * np.sin(2 * np.pi * f * tt + p)


def test_features_shape_and_meaning():
  x = np.zeros((2, 50, 8))
  x[1, :, 0] = np.arange(50) * 0.1                      # constant velocity on yaw
  f = m.motion_features(x)
  assert f.shape == (2, 48) and len(m.FEATURE_NAMES) == 48
  named = dict(zip(m.FEATURE_NAMES, f[1]))
  assert named["vel_absmean_yaw"] == pytest.approx(0.1)
  assert named["acc_absmean_yaw"] == pytest.approx(0.0, abs=1e-12)
  assert named["pos_mean_yaw"] == pytest.approx(2.45)
  assert np.all(f[0] == 0)
  with pytest.raises(ValueError):
    m.motion_features(np.zeros((2, 2, 8)))


def test_frechet_distance_and_diversity():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((400, 4))
  b = rng.standard_normal((400, 4))
  assert m.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  assert m.frechet_distance(a, b) < 0.2
  assert m.frechet_distance(a, b + 2.0) == pytest.approx(16.0, rel=0.1)   # 4 dims x 2^2
  # Diversity of N(0, I) in 4-d: E||x - y|| ~ sqrt(2 * 4) * 0.94.
  assert m.diversity(a) == pytest.approx(np.sqrt(8) * 0.94, rel=0.1)
  assert m.diversity(np.zeros((10, 4))) == 0.0


def test_variance_ratio_detects_collapse():
  rng = np.random.default_rng(0)
  real = _smooth(rng, 8, 100)
  assert np.allclose(np.asarray(m.variance_ratio(real, real)), 1.0, atol=1e-5)
  collapsed = 0.1 * real
  np.testing.assert_allclose(np.asarray(m.variance_ratio(collapsed, real)), 0.01, rtol=1e-3)
  mask = np.ones((8, 100), bool)
  mask[:, 50:] = False
  r = np.asarray(m.variance_ratio(real, real, mask))
  assert np.allclose(r, 1.0, atol=1e-5)


def test_ssim_p():
  rng = np.random.default_rng(0)
  real = _smooth(rng, 3, 80)
  assert m.ssim_p(real, real) == pytest.approx(1.0)
  noisy = real + 0.5 * rng.standard_normal(real.shape)
  other = _smooth(np.random.default_rng(5), 3, 80)
  s_noisy, s_other = m.ssim_p(noisy, real), m.ssim_p(other, real)
  assert s_noisy < 0.9 and s_other < 0.9
  assert m.ssim_p(real + 0.05 * rng.standard_normal(real.shape), real) > s_noisy


def test_evaluate_modes_ranks_a_matching_generator_first():
  rng = np.random.default_rng(0)
  real = list(_smooth(rng, 6, 200))

  def sample_fn(mode, i, seed):
    g = np.random.default_rng(100 * i + seed)
    if mode == "text_audio":                   # same distribution as the real motion
      return _smooth(g, 1, 200)[0]
    if mode == "text":                         # collapsed to a mean pose
      return 0.05 * _smooth(g, 1, 200)[0]
    return _smooth(g, 1, 200, amp=3.0)[0]      # too wild

  out = m.evaluate_modes(sample_fn, real, modes=("text_audio", "text", "audio"), seeds=(0, 1))
  assert set(out) == {"text_audio", "text", "audio"}
  assert out["text_audio"]["fd"] < out["text"]["fd"]
  assert out["text_audio"]["fd"] < out["audio"]["fd"]
  assert out["text"]["var_ratio_max"] < 0.01
  assert 0.3 < out["text_audio"]["var_ratio_min"] and out["text_audio"]["var_ratio_max"] < 3
  assert out["text"]["diversity"] < out["text_audio"]["diversity"] < out["audio"]["diversity"]


def test_variance_ratio_with_different_lengths():
  rng = np.random.default_rng(1)
  real = _smooth(rng, 4, 50)
  gen = np.concatenate(list(_smooth(np.random.default_rng(2), 6, 50)))[None]   # [1, 300, 8]
  r = np.asarray(m.variance_ratio(gen, real, real_mask=np.ones((4, 50), bool)))
  assert r.shape == (8,) and np.all((r > 0.2) & (r < 5))
