"""Tests of jaxtalk.models.layers: warping conventions and gradients, AdaIN, attention,
Conformer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.models import layers


def _key(seed):
  # rbg keys: threefry's random-bit kernels take seconds each to compile on this CPU.
  return jax.random.key(seed, impl="rbg")


def _img(seed=0, shape=(2, 9, 11, 3)):
  return jax.random.normal(_key(seed), shape, jnp.float32)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_zero_flow_is_identity_exactly(dtype):
  x = _img().astype(dtype)
  out = layers.warp(x, jnp.zeros(x.shape[:3] + (2,)))
  assert out.dtype == dtype
  np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(x, np.float32))
  out_b = layers.warp(x, jnp.zeros(x.shape[:3] + (2,)), padding="border")
  np.testing.assert_array_equal(np.asarray(out_b, np.float32), np.asarray(x, np.float32))


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (1, 2), (-2, -1)])
def test_integer_shift_equals_roll_inside_border(dx, dy):
  x = _img(1)
  n, h, w, _ = x.shape
  flow = jnp.broadcast_to(jnp.asarray([dx, dy], jnp.float32), (n, h, w, 2))
  out = np.asarray(layers.warp(x, flow))
  # Backward warp: out[y, x] = in[y + dy, x + dx]  <=>  roll by (-dy, -dx).
  rolled = np.roll(np.asarray(x), shift=(-dy, -dx), axis=(1, 2))
  ys = slice(max(0, -dy), h - max(0, dy))
  xs = slice(max(0, -dx), w - max(0, dx))
  np.testing.assert_array_equal(out[:, ys, xs], rolled[:, ys, xs])
  # Outside the border, zero padding gives zeros.
  if dx > 0:
    np.testing.assert_array_equal(out[:, :, w - dx:], 0.0)
  if dy < 0:
    np.testing.assert_array_equal(out[:, :-dy], 0.0)


def test_half_pixel_shift_averages_neighbours():
  x = _img(2)
  flow = jnp.zeros(x.shape[:3] + (2,)).at[..., 0].set(0.5)
  out = np.asarray(layers.warp(x, flow))
  expect = 0.5 * (np.asarray(x)[:, :, :-1] + np.asarray(x)[:, :, 1:])
  np.testing.assert_allclose(out[:, :, :-1], expect, atol=1e-6)


def test_border_padding_clamps():
  x = _img(3)
  flow = jnp.zeros(x.shape[:3] + (2,)).at[..., 0].set(100.0)
  out = np.asarray(layers.warp(x, flow, padding="border"))
  np.testing.assert_allclose(out, np.broadcast_to(np.asarray(x)[:, :, -1:], out.shape), atol=1e-6)


def test_warp_gradients_match_finite_differences():
  x = _img(4, (1, 6, 7, 2))
  rng = np.random.default_rng(0)
  # Non-integer flow away from pixel boundaries (bilinear is smooth there).
  flow0 = rng.uniform(-1.5, 1.5, size=(1, 6, 7, 2))
  flow0 = np.floor(flow0) + np.clip(flow0 - np.floor(flow0), 0.2, 0.8)
  flow0 = jnp.asarray(flow0, jnp.float32)
  wts = _img(5, (1, 6, 7, 2))

  @jax.jit
  def f(flow, img):
    return jnp.sum(layers.warp(img, flow) * wts)

  g_flow, g_img = jax.grad(f, argnums=(0, 1))(flow0, x)
  eps = 1e-2
  num = np.zeros(flow0.shape, np.float64)
  base = np.asarray(flow0, np.float64)
  for idx in np.ndindex(*flow0.shape):
    fp, fm = base.copy(), base.copy()
    fp[idx] += eps
    fm[idx] -= eps
    num[idx] = (float(f(jnp.asarray(fp, jnp.float32), x)) -
                float(f(jnp.asarray(fm, jnp.float32), x))) / (2 * eps)
  np.testing.assert_allclose(np.asarray(g_flow), num, rtol=2e-3, atol=2e-3)
  assert np.abs(np.asarray(g_flow)).max() > 0.1
  # Image gradient: warp is linear in the image, so grad = warp^T(wts); check one entry by FD.
  e = np.zeros(x.shape, np.float32)
  e[0, 2, 3, 1] = 1.0
  fd = (float(f(flow0, x + e)) - float(f(flow0, x - e))) / 2.0
  np.testing.assert_allclose(float(g_img[0, 2, 3, 1]), fd, rtol=1e-4, atol=1e-4)


def test_resize_flow_scales_vectors():
  flow = jnp.ones((1, 4, 4, 2)) * jnp.asarray([1.0, -2.0])
  up = layers.resize_flow(flow, 8, 12)
  np.testing.assert_allclose(np.asarray(up[..., 0]), 3.0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(up[..., 1]), -4.0, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_adain_injects_latent(dtype):
  m = layers.AdaIN(dtype=dtype)
  x = _img(7, (2, 5, 5, 4)) * 3 + 1
  z = jax.random.normal(_key(8), (2, 6))
  params = m.init(_key(0), x, z)
  y = m.apply(params, x, z)
  assert y.shape == x.shape and y.dtype == dtype
  # At init (zero style projection) AdaIN is an instance norm.
  y32 = np.asarray(y, np.float32)
  tol = 1e-4 if dtype == jnp.float32 else 5e-2
  np.testing.assert_allclose(y32.mean(axis=(1, 2)), 0.0, atol=tol)
  np.testing.assert_allclose(y32.std(axis=(1, 2)), 1.0, atol=tol * 10)
  # With a non-zero projection, different z give different outputs.
  params = jax.tree_util.tree_map(lambda p: p + 0.1, params)
  y1 = m.apply(params, x, z)
  y2 = m.apply(params, x, -z)
  assert float(jnp.abs(y1.astype(jnp.float32) - y2.astype(jnp.float32)).max()) > 0.01


@pytest.mark.parametrize("dtype,t", [(jnp.float32, 7), (jnp.float32, 1), (jnp.bfloat16, 6)])
def test_conformer_shapes_dtypes_and_masks(dtype, t):
  block = layers.ConformerBlock(num_heads=2, conv_kernel=5, dtype=dtype)
  x = jax.random.normal(_key(0), (2, t, 16))
  n_valid = max(1, t - 3)
  mask = jnp.arange(t)[None, :] < jnp.asarray([[t], [n_valid]])
  params = jax.jit(block.init)(_key(1), x, mask=mask)
  apply = jax.jit(block.apply)
  y = apply(params, x, mask=mask)
  assert y.shape == (2, t, 16) and y.dtype == dtype
  assert bool(jnp.all(jnp.isfinite(y.astype(jnp.float32))))
  # Valid outputs do not depend on padded frames; padded outputs are zero.
  x2 = x.at[1, n_valid:].set(100.0)
  y2 = apply(params, x2, mask=mask)
  np.testing.assert_array_equal(np.asarray(y2, np.float32), np.asarray(y, np.float32))
  np.testing.assert_array_equal(np.asarray(y[1, n_valid:], np.float32), 0.0)
  # The unpadded example equals the same example run alone with length n_valid.
  if n_valid < t:
    y_short = block.apply(params, x[1:, :n_valid])
    tol = 1e-5 if dtype == jnp.float32 else 3e-2
    np.testing.assert_allclose(np.asarray(y[1, :n_valid], np.float32),
                               np.asarray(y_short[0], np.float32), atol=tol)


def test_relative_attention_is_translation_equivariant_in_positions():
  # With relative positions only, the output at frame i of a sequence equals the output at i+1
  # of the same sequence shifted by one when attention sees the same neighbourhood.
  att = layers.MultiHeadAttention(num_heads=2, relative=True)
  x = jax.random.normal(_key(0), (1, 5, 8))
  params = att.init(_key(1), x)
  params = jax.tree_util.tree_map(lambda p: p + 0.05, params)
  y = att.apply(params, x)
  x_shift = jnp.concatenate([jnp.zeros((1, 1, 8)), x], axis=1)
  mask = jnp.asarray([[False, True, True, True, True, True]])
  y_shift = att.apply(params, x_shift, mask=mask)
  np.testing.assert_allclose(np.asarray(y_shift[:, 1:]), np.asarray(y), atol=1e-5)
  # And the relative terms matter: different distances give different outputs.
  y_perm = att.apply(params, x[:, ::-1])
  assert float(jnp.abs(y_perm[:, ::-1] - y).max()) > 1e-3


def test_cross_attention_masks_keys():
  att = layers.MultiHeadAttention(num_heads=2)
  x = jax.random.normal(_key(0), (2, 3, 8))
  ctx = jax.random.normal(_key(1), (2, 4, 6))
  mask = jnp.asarray([[True, True, False, False], [True, True, True, True]])
  params = att.init(_key(2), x, ctx, mask=mask)
  y = att.apply(params, x, ctx, mask=mask)
  y2 = att.apply(params, x, ctx.at[0, 2:].set(50.0), mask=mask)
  np.testing.assert_allclose(np.asarray(y2[0]), np.asarray(y[0]), atol=1e-6)
  assert y.shape == (2, 3, 8)


def test_blocks_shapes():
  x = _img(0, (2, 9, 9, 4))
  for mod, shape in [(layers.ResBlock(8), (2, 9, 9, 8)),
                     (layers.UpBlock(8), (2, 18, 18, 8))]:
    out = jax.eval_shape(lambda m=mod: m.init_with_output(_key(0), x)[0])
    assert out.shape == shape


def test_params_have_logical_names():
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import sharding  # pylint: disable=g-import-not-at-top
  block = layers.ConformerBlock(num_heads=2, conv_kernel=3)
  boxed = block.init(_key(0), jnp.zeros((1, 4, 8)))
  specs = nn.get_partition_spec(boxed)
  names = set()
  is_spec = lambda s: isinstance(s, jax.sharding.PartitionSpec)
  for s in jax.tree_util.tree_leaves(specs, is_leaf=is_spec):
    names.update(n for n in s if n is not None)
  assert names and names <= set(sharding.LOGICAL_AXES)
