"""Tests for the Motion pytree and the controls acting on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import motion
from jaxtalk.motion import controls


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
  m = controls.override_gaze(motion.Motion.from_features(jnp.zeros((1, 4, 8))), 0.1, -0.2)
  np.testing.assert_allclose(m.gaze[0, 3], [0.1, -0.2])


def test_pose_templates():
  base = np.array([0, 0, 0, 0.01, -0.02, 0.5], np.float32)
  for name in controls.POSE_TEMPLATES:
    p = controls.pose_template(name, 100, base)
    assert p.shape == (100, 6) and p.dtype == np.float32
    np.testing.assert_allclose(p[:, 3:], np.broadcast_to(base[3:], (100, 3)))
  assert np.ptp(controls.pose_template("nod", 100)[:, 1]) > 0.2
  assert np.ptp(controls.pose_template("shake", 100)[:, 0]) > 0.3
  assert controls.pose_template("turn_left", 100)[-1, 0] > 0.3
  assert np.all(controls.pose_template("still", 10) == 0)
  with pytest.raises(ValueError, match="unknown pose template"):
    controls.pose_template("moonwalk", 10)


def test_smooth_reduces_jitter_and_keeps_constants():
  rng = np.random.RandomState(0)
  x = np.cumsum(rng.randn(200, 8), 0) + rng.randn(200, 8)
  s = controls.smooth(motion.Motion.from_features(x[None]), 2.0).as_features()[0]
  assert np.abs(np.diff(s, axis=0)).mean() < 0.7 * np.abs(np.diff(x, axis=0)).mean()
  np.testing.assert_allclose(
      controls.smooth(motion.Motion.from_features(np.ones((1, 30, 8)))).as_features(), 1.0,
      rtol=1e-6)


def test_reframe_keeps_motion_and_takes_the_portraits_framing():
  pose = np.zeros((1, 10, 6), np.float32)
  pose[0, :, 0] = np.linspace(0, 0.3, 10)        # a turn
  pose[0, :, 3] = 0.2 + np.linspace(0, 0.05, 10)  # the reference's face drifts right
  m = controls.reframe(motion.Motion(pose=pose, gaze=np.zeros((1, 10, 2))),
                       np.array([0, 0, 0, -0.1, 0.02, 0.6], np.float32))
  np.testing.assert_allclose(m.pose[0, :, 0], pose[0, :, 0])
  np.testing.assert_allclose(m.pose[0, :, 3], -0.1 + np.linspace(0, 0.05, 10), atol=1e-6)
  np.testing.assert_allclose(m.pose[0, :, 5], 0.6)
