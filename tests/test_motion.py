"""Tests for the Motion pytree and the controls acting on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import motion


def test_features_roundtrip_and_pytree():
  x = jnp.arange(2 * 5 * 8, dtype=jnp.float32).reshape(2, 5, 8)
  m = motion.Motion.from_features(x)
  assert m.pose.shape == (2, 5, 6) and m.gaze.shape == (2, 5, 2) and m.num_frames == 5
  np.testing.assert_array_equal(m.as_features(), x)
  doubled = jax.tree_util.tree_map(lambda a: a * 2, m)
  np.testing.assert_array_equal(doubled.as_features(), 2 * x)
  with pytest.raises(ValueError, match="last dim 8"):
    motion.Motion.from_features(x[..., :7])


def test_normalize_inverse_and_gaze_override():
  x = np.random.RandomState(0).randn(3, 8).astype(np.float32)
  mean, std = x.mean(0), x.std(0)
  np.testing.assert_allclose(motion.denormalize(motion.normalize(x, mean, std), mean, std), x,
                             atol=1e-6)
  m = motion.override_gaze(motion.Motion.from_features(jnp.zeros((1, 4, 8))), 0.1, -0.2)
  np.testing.assert_allclose(m.gaze[0, 3], [0.1, -0.2])


def test_pose_templates():
  base = np.array([0, 0, 0, 0.01, -0.02, 0.5], np.float32)
  for name in motion.POSE_TEMPLATES:
    p = motion.pose_template(name, 100, base)
    assert p.shape == (100, 6) and p.dtype == np.float32
    np.testing.assert_allclose(p[:, 3:], np.broadcast_to(base[3:], (100, 3)))
  assert np.ptp(motion.pose_template("nod", 100)[:, 1]) > 0.2
  assert np.ptp(motion.pose_template("shake", 100)[:, 0]) > 0.3
  assert motion.pose_template("turn_left", 100)[-1, 0] > 0.3
  assert np.all(motion.pose_template("still", 10) == 0)
  with pytest.raises(ValueError, match="unknown pose template"):
    motion.pose_template("moonwalk", 10)


def test_smooth_reduces_jitter_and_keeps_constants():
  rng = np.random.RandomState(0)
  x = np.cumsum(rng.randn(200, 2), 0) + rng.randn(200, 2)
  s = motion.smooth(x, 2.0)
  assert np.abs(np.diff(s, axis=0)).mean() < 0.7 * np.abs(np.diff(x, axis=0)).mean()
  np.testing.assert_allclose(motion.smooth(np.ones((1, 30, 3))), 1.0, rtol=1e-6)
