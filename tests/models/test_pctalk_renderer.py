"""PC-Talk's implicit-keypoint renderer: eq. 1, the warping identity, the landmark-guided loss,
retargeting, the 3-D sampler and f32 / bf16 shapes (jaxtalk/models/pctalk)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.pctalk import common as pctalk_common
from jaxtalk.features import face
from jaxtalk.models import layers
from jaxtalk.models.pctalk import keypoints as kp_lib
from jaxtalk.models.pctalk import renderer as renderer_lib
from jaxtalk.models.pctalk import stitching as stitching_lib


def test_eq1_composes_rotation_deformation_scale_and_translation_exactly():
  """K = s·(K_c Rᵀ + δ) + t with yaw = 90°: (x, y, z) -> (z, y, −x) before δ, s and t."""
  kc = jnp.asarray([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
  rot = kp_lib.rotation_matrix(jnp.asarray([np.pi / 2]), jnp.zeros(1), jnp.zeros(1))
  delta = jnp.asarray([[[0.1, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.2, 0.0]]])
  t = jnp.asarray([[0.5, -0.5, 0.0]])
  k = kp_lib.transform_keypoints(kc, rot, t, jnp.asarray([2.0]), delta)
  expected = 2.0 * (np.asarray([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
                    + np.asarray(delta[0])) + np.asarray([0.5, -0.5, 0.0])
  np.testing.assert_allclose(np.asarray(k[0]), expected, atol=1e-6)


def test_rotation_matrix_inverts_preprocessings_euler_decomposition():
  """The rotation eq. 1 applies is the one preprocessing decomposed into the stored pose."""
  rng = np.random.default_rng(0)
  for yaw, pitch, roll in rng.uniform(-0.8, 0.8, (5, 3)):
    r = np.asarray(kp_lib.rotation_matrix(yaw, pitch, roll), np.float64)
    np.testing.assert_allclose(face.rotation_to_euler(r), [yaw, pitch, roll], atol=1e-5)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)


def test_pose_to_rts_maps_motion_pose_to_keypoint_units():
  pose = jnp.asarray([[0.1, -0.2, 0.05, 0.02, -0.03, 0.6]])
  rot, t, s = kp_lib.pose_to_rts(pose)
  np.testing.assert_allclose(np.asarray(t), [[0.04, -0.06, 0.0]], atol=1e-7)
  np.testing.assert_allclose(np.asarray(s), [0.6], atol=1e-7)
  np.testing.assert_allclose(np.asarray(rot[0]),
                             np.asarray(kp_lib.rotation_matrix(0.1, -0.2, 0.05)), atol=1e-7)


def test_trilinear_sample_is_exact_at_voxels_interpolates_between_and_zero_outside():
  vol = jnp.asarray(np.random.default_rng(1).normal(size=(1, 3, 4, 5, 2)), jnp.float32)
  zz, yy, xx = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
  grid = jnp.asarray(np.stack([xx, yy, zz], -1)[None], jnp.float32)
  np.testing.assert_allclose(np.asarray(layers.trilinear_sample(vol, grid)), np.asarray(vol),
                             atol=1e-6)
  mid = layers.trilinear_sample(vol, jnp.asarray([[[[[1.5, 2.0, 0.5]]]]]))[0, 0, 0, 0]
  want = 0.25 * (vol[0, 0, 2, 1] + vol[0, 0, 2, 2] + vol[0, 1, 2, 1] + vol[0, 1, 2, 2])
  np.testing.assert_allclose(np.asarray(mid), np.asarray(want), atol=1e-6)
  out = layers.trilinear_sample(vol, jnp.asarray([[[[[-2.0, 0.0, 0.0]]]]]))
  np.testing.assert_allclose(np.asarray(out), 0.0)


def _tiny():
  return pctalk_common.renderer_model_config("tiny")


def test_equal_keypoints_give_the_identity_field_and_the_source_volume():
  """K_d = K_s: every sparse field is the identity grid, so the dense field is the identity
  whatever the masks, and the volume the decoder's features come from is the source's."""
  c = _tiny()
  w = renderer_lib.WarpingModule(c.warp_features, c.dense_block_expansion, c.dense_num_blocks,
                                 c.dense_max_features, c.compress, c.mask_kernel)
  rng = np.random.default_rng(2)
  vol = jnp.asarray(rng.normal(size=(2, c.volume_depth, 16, 16, c.volume_channels)), jnp.float32)
  kp = jnp.asarray(rng.uniform(-0.6, 0.6, (2, 21, 3)), jnp.float32)
  params = w.init(jax.random.key(0), vol, kp, kp + 0.1)
  _, aux = w.apply(params, vol, kp, kp)
  grid = renderer_lib.volume_grid(c.volume_depth, 16, 16)
  np.testing.assert_allclose(np.asarray(aux["field"]), np.broadcast_to(grid, aux["field"].shape),
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(aux["warped_volume"]), np.asarray(vol), atol=1e-5)
  _, moved = w.apply(params, vol, kp, kp + 0.1)
  assert float(jnp.max(jnp.abs(moved["warped_volume"] - vol))) > 1e-2


def test_landmark_loss_is_zero_on_the_landmarks_and_grows_off_them():
  rng = np.random.default_rng(3)
  lm = jnp.asarray(rng.uniform(0.2, 0.8, (2, 478, 2)), jnp.float32)
  kp = jnp.asarray(rng.uniform(-1, 1, (2, 21, 3)), jnp.float32)
  on = kp.at[:, jnp.asarray(kp_lib.LANDMARK_KEYPOINTS), :2].set(
      lm[:, jnp.asarray(kp_lib.LANDMARK_INDICES)] * 2.0 - 1.0)
  assert float(kp_lib.landmark_loss(on, lm)) < 1e-7
  off = on.at[:, kp_lib.LIP_KEYPOINTS[0], 0].add(0.2)      # 0.1 crop units on one point
  np.testing.assert_allclose(float(kp_lib.landmark_loss(off, lm)),
                             0.1 / (2 * len(kp_lib.LANDMARK_KEYPOINTS)), rtol=1e-4)
  assert set(kp_lib.LIP_KEYPOINTS + kp_lib.EYE_KEYPOINTS) <= set(kp_lib.LANDMARK_KEYPOINTS)


def test_retargeting_to_the_sources_own_ratios_changes_nothing():
  """With random (not zero) MLP weights: Δ = 0 at the source's own lip / eye ratio, not else."""
  net = stitching_lib.StitchingRetargeting(hidden_scale=4)
  rng = np.random.default_rng(4)
  kp = jnp.asarray(rng.uniform(-1, 1, (3, 21, 3)), jnp.float32)
  lip_s, eye_s = jnp.asarray([0.1, 0.3, 0.0]), jnp.asarray([[0.3, 0.25], [0.2, 0.2], [0.1, 0.3]])
  params = net.init(jax.random.key(0), kp, kp, lip_s, lip_s, eye_s, jnp.mean(eye_s, -1))
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape),
                        params)
  zero = net.apply(params, kp, lip_s, lip_s, method=net.lip)
  np.testing.assert_allclose(np.asarray(zero), 0.0, atol=1e-6)
  eye_zero = net.apply(params, kp, eye_s, jnp.mean(eye_s, -1), method=net.eye)
  np.testing.assert_allclose(np.asarray(eye_zero), 0.0, atol=1e-6)
  moved = net.apply(params, kp, lip_s, lip_s + 0.5, method=net.lip)
  assert float(jnp.max(jnp.abs(moved))) > 1e-3


def test_open_ratios_of_a_closed_and_an_open_mouth():
  lm = np.zeros((2, 478, 2), np.float32)
  lm[:, 61], lm[:, 291] = (0.4, 0.7), (0.6, 0.7)
  lm[:, 13], lm[:, 14] = (0.5, 0.7), (0.5, 0.7)
  lm[1, 14] = (0.5, 0.76)
  np.testing.assert_allclose(np.asarray(kp_lib.lip_open_ratio(jnp.asarray(lm))), [0.0, 0.3],
                             atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_renderer_shapes(dtype):
  c = _tiny()
  model = renderer_lib.renderer_from_config(c, dtype)
  x = jnp.zeros((2, c.image_size, c.image_size, 3))
  params = model.init(jax.random.key(0), x, x)
  frame, aux = model.apply(params, x, x + 0.1)
  assert frame.shape == x.shape and frame.dtype == jnp.float32
  assert aux["kp_source"].shape == (2, c.num_keypoints, 3)
  assert aux["occlusion"].shape == (2, c.image_size // 4, c.image_size // 4, 1)
  assert aux["field"].shape == (2, c.volume_depth, c.image_size // 4, c.image_size // 4, 3)
  assert np.isfinite(np.asarray(frame, np.float32)).all()


def test_paper_sizes_match_liveportraits_modules():
  """Parameter counts of F, M, W, G at the paper config (LivePortrait: 0.84M, 28M, 45M, 55M)."""
  c = pctalk_common.renderer_model_config("paper")
  model = renderer_lib.renderer_from_config(c)
  x = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
  shapes = jax.eval_shape(lambda a: model.init(jax.random.key(0), a, a), x)["params"]
  count = {k: sum(int(np.prod(getattr(l, "value", l).shape)) for l in jax.tree.leaves(
      v, is_leaf=lambda l: hasattr(l, "value"))) / 1e6 for k, v in shapes.items()}
  for name, want in (("appearance", 0.84), ("motion_extractor", 28.0), ("warping", 45.0),
                     ("decoder", 55.4)):
    assert abs(count[name] - want) / want < 0.05, (name, count[name])
