"""Tests for GoHD's pose_scale / exp_scale controls (jaxtalk.motion.controls)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import methods
from jaxtalk import motion
from jaxtalk.motion import controls


def _motion(expression=True):
  rng = np.random.default_rng(0)
  pose = rng.standard_normal((2, 7, 6)).astype(np.float32)
  gaze = rng.standard_normal((2, 7, 2)).astype(np.float32)
  e = rng.standard_normal((2, 7, 64)).astype(np.float32) if expression else None
  return motion.Motion(pose=pose, gaze=gaze, expression=e)


def test_pose_scale_about_the_first_frame():
  m = _motion()
  p = np.asarray(m.pose)
  np.testing.assert_allclose(controls.scale_pose(m, 1.0).pose, p, atol=1e-6)
  still = np.asarray(controls.scale_pose(m, 0.0).pose)
  np.testing.assert_allclose(still, np.broadcast_to(p[:, :1], p.shape), atol=1e-6)
  double = controls.scale_pose(m, 2.0)
  np.testing.assert_allclose(np.asarray(double.pose) - p[:, :1], 2 * (p - p[:, :1]), atol=1e-5)
  np.testing.assert_array_equal(double.gaze, m.gaze)            # gaze, expression untouched
  np.testing.assert_array_equal(double.expression, m.expression)
  assert double.pose.dtype == jnp.float32


def test_pose_scale_about_a_given_source_pose():
  m = _motion()
  src = np.arange(6, dtype=np.float32) / 10
  p = np.asarray(m.pose)
  np.testing.assert_allclose(controls.scale_pose(m, 0.0, src).pose,
                             np.broadcast_to(src, p.shape), atol=1e-6)
  np.testing.assert_allclose(controls.scale_pose(m, 2.0, src).pose, src + 2 * (p - src),
                             atol=1e-5)
  per_b = np.stack([src, -src])
  np.testing.assert_allclose(controls.scale_pose(m, 0.5, per_b).pose,
                             per_b[:, None] + 0.5 * (p - per_b[:, None]), atol=1e-6)
  with pytest.raises(ValueError, match="source_pose"):
    controls.scale_pose(m, 2.0, np.zeros(5))


def test_exp_scale():
  m = _motion()
  e = np.asarray(m.expression)
  np.testing.assert_allclose(controls.scale_expression(m, 1.0).expression, e, atol=1e-6)
  np.testing.assert_allclose(controls.scale_expression(m, 0.0).expression,
                             np.broadcast_to(e[:, :1], e.shape), atol=1e-6)
  np.testing.assert_allclose(np.asarray(controls.scale_expression(m, 2.0).expression) - e[:, :1],
                             2 * (e - e[:, :1]), atol=1e-5)
  src = np.full(64, 0.3, np.float32)
  np.testing.assert_allclose(controls.scale_expression(m, 2.0, src).expression,
                             src + 2 * (e - src), atol=1e-5)
  np.testing.assert_array_equal(controls.scale_expression(m, 2.0).pose, m.pose)
  with pytest.raises(ValueError, match="source_expression"):
    controls.scale_expression(m, 2.0, np.zeros(63))


def test_exp_scale_without_expression():
  m = _motion(expression=False)
  assert controls.scale_expression(m, 1.0) is m
  with pytest.raises(ValueError, match="no expression coefficients"):
    controls.scale_expression(m, 1.5)


def test_scale_controls_are_declared():
  by_name = {c.name: c for c in controls.SCALE_CONTROLS}
  assert set(by_name) == {"pose_scale", "exp_scale"}
  for c in by_name.values():
    assert isinstance(c, methods.Control) and c.type is float and c.default == 1.0
    assert c.range[0] == 0.0 < 1.0 < c.range[1]
