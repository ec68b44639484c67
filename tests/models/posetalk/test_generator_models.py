"""Tests of CoarseNet, RefineNet (eqs. 4-5), Enhancer and the chained PoseTalk renderer (the
served `renderers.posetalk.make_render`)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.models.posetalk import coarse_net as coarse_lib
from jaxtalk.models.posetalk import enhancer as enhancer_lib
from jaxtalk.models import layers
from jaxtalk.models.posetalk import refine_net as refine_lib
from jaxtalk.renderers import posetalk as posetalk_renderer

M2L = dict(latent_dim=16, model_dim=16, num_blocks=1, num_heads=2, conv_kernel=3,
           audio_channels=(4, 8, 8, 8), audio_dim=8)


def _key(seed):
  # rbg keys: threefry's random-bit kernels take seconds each to compile on this CPU.
  return jax.random.key(seed, impl="rbg")


def _motion(b, t, seed=0):
  ks = jax.random.split(_key(seed), 4)
  return (jax.random.normal(ks[0], (b, t, 6)), jax.random.normal(ks[1], (b, t, 2)),
          jax.random.normal(ks[2], (b, t, 16, 80)), jax.random.normal(ks[3], (b, 6)))


def _perturb(params, scale=0.05, seed=1):
  leaves, tree = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(_key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      tree, [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def test_refine_final_flow_is_coarse_plus_upsampled_sum_of_dflows():
  b, t, h = 1, 2, 32
  model = refine_lib.RefineNet(channels=(8, 8, 8), **M2L)
  coarse = jax.random.uniform(_key(2), (b, t, h, h, 3), minval=-1, maxval=1)
  cflow = 2.0 * jax.random.normal(_key(3), (b, t, h, h, 2))
  args = (coarse, cflow) + _motion(b, t)
  params = jax.jit(model.init)(_key(0), *args)
  params = _perturb(params, 0.2)   # zero-initialised heads -> non-zero flows.
  out, aux = jax.jit(model.apply)(params, *args)
  assert out.shape == (b, t, h, h, 3) and out.dtype == jnp.float32
  dflows = aux["dflows"]
  assert [f.shape[2] for f in dflows] == [8, 16, 32]
  # Eq. 5: F = F_coarse + dF_L + up(dF_{L-1}) + up(up(dF_{L-2})).
  up = lambda f: layers.resize_flow(f.reshape((-1,) + f.shape[2:]), f.shape[2] * 2,
                                    f.shape[3] * 2).reshape(f.shape[:2] + (f.shape[2] * 2,
                                                                            f.shape[3] * 2, 2))
  expect = cflow + dflows[2] + up(dflows[1]) + up(up(dflows[0]))
  np.testing.assert_allclose(np.asarray(aux["flow"]), np.asarray(expect), atol=1e-4)
  np.testing.assert_allclose(np.asarray(aux["residual_flow"]), np.asarray(expect - cflow),
                             atol=1e-4)
  # Eq. 4 accumulation level by level.
  for i in range(1, 3):
    np.testing.assert_allclose(np.asarray(aux["flows"][i]),
                               np.asarray(dflows[i] + up(aux["flows"][i - 1])), atol=1e-4)
  assert float(jnp.abs(aux["residual_flow"]).mean()) > 1e-3
  for m in aux["masks"]:
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0


def test_refine_rejects_bad_resolution_and_levels():
  model = refine_lib.RefineNet(channels=(8, 8, 8), **M2L)
  args = _motion(1, 2)
  with pytest.raises(ValueError, match="levels"):
    jax.eval_shape(functools.partial(model.init, _key(0)), jnp.zeros((1, 2, 64, 64, 3)),
                   jnp.zeros((1, 2, 64, 64, 2)), *args)
  with pytest.raises(ValueError, match="8 \\* 2\\^k"):
    refine_lib.num_levels(48)


def _renderer(dtype):
  """The served renderer chain (`renderers.posetalk.make_render`) over three tiny networks."""
  nets = (coarse_lib.CoarseNet(channels=(8, 8), **M2L, dtype=dtype),
          refine_lib.RefineNet(channels=(8, 8), **M2L, dtype=dtype),
          enhancer_lib.Enhancer(channels=(8, 8), num_bottleneck=1, dtype=dtype))
  return nets, posetalk_renderer.make_render(*nets)


def _init_renderer(key, source, pose, gaze, mel, source_pose, mask):
  (coarse, refine, enhancer), _ = _renderer(jnp.float32)
  k1, k2, k3 = jax.random.split(key, 3)
  pc = coarse.init(k1, source, pose, gaze, mel, source_pose, mask=mask)
  frames, caux = coarse.apply(pc, source, pose, gaze, mel, source_pose, mask=mask)
  pr = refine.init(k2, frames, caux["flow"], pose, gaze, mel, source_pose, mask=mask)
  pe = enhancer.init(k3, source, frames)
  return {"coarse": pc["params"], "refine": pr["params"], "enhancer": pe["params"]}


def test_renderer_shapes_dtypes_and_identity_at_init():
  b, t, h = 2, 3, 16   # odd T; 16 px: RefineNet levels 8 and 16
  source = jax.random.uniform(_key(5), (b, h, h, 3), minval=-0.9, maxval=0.9)
  args = (source,) + _motion(b, t)
  mask = jnp.asarray([[True] * 3, [True, True, False]])
  params = jax.jit(functools.partial(_init_renderer, mask=mask))(_key(0), *args)
  inputs = dict(zip(("source", "pose", "gaze", "mel", "source_pose"), args))
  for dtype in (jnp.float32, jnp.bfloat16):   # same (float32) params, two compute dtypes.
    render = _renderer(dtype)[1]
    apply = jax.jit(lambda p, x, r=render: r(p, x, mask=mask))
    out, aux = apply(params, inputs)
    assert out.shape == (b, t, h, h, 3) and out.dtype == jnp.float32
    assert aux["coarse"].shape == out.shape and aux["refined"].shape == out.shape
    assert aux["flow"].shape == (b, t, h, h, 2) and aux["flow"].dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.abs(out).max()) <= 1.0
    # Untrained: zero flows, occlusion ~1, zero-initialised output convs -> close to the source.
    np.testing.assert_array_equal(np.asarray(aux["flow"]), 0.0)
    tol = 0.05 if dtype == jnp.float32 else 0.1
    np.testing.assert_allclose(np.asarray(out), np.broadcast_to(np.asarray(source)[:, None],
                                                                 out.shape), atol=tol)
    # RefineNet / Enhancer start as the identity on their input frame.
    np.testing.assert_allclose(np.asarray(aux["refined"]), np.asarray(aux["coarse"]), atol=2e-3)
    np.testing.assert_allclose(np.asarray(out), np.asarray(aux["refined"]), atol=2e-3)
    # Perturbed params move the output of every stage.
    out2, aux2 = apply(_perturb(params, 0.05), inputs)
    for a, b_ in ((out2, out), (aux2["refined"], aux["refined"]), (aux2["coarse"], aux["coarse"])):
      assert float(jnp.abs(a - b_).mean()) > 1e-3


def test_coarse_net_warps_source_with_its_flow():
  b, t, h = 1, 2, 16
  model = coarse_lib.CoarseNet(channels=(8, 8), **M2L)
  source = jax.random.uniform(_key(6), (b, h, h, 3), minval=-1, maxval=1)
  args = (source,) + _motion(b, t)
  params = _perturb(jax.jit(model.init)(_key(0), *args), 0.3)
  out, aux = jax.jit(model.apply)(params, *args)
  assert out.shape == (b, t, h, h, 3) and aux["occlusion"].shape == (b, t, h, h, 1)
  expect = layers.warp(jnp.broadcast_to(source[:, None], (b, t, h, h, 3)).reshape(-1, h, h, 3),
                       aux["flow"].reshape(-1, h, h, 2)).reshape(out.shape)
  np.testing.assert_allclose(np.asarray(aux["warped"]), np.asarray(expect), atol=1e-5)
  assert float(jnp.abs(aux["flow"]).mean()) > 1e-3
