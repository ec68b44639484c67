"""Tests of the Conformer Motion2Latent (PoseTalk Fig. 4c): shapes, dtypes, masks, odd lengths."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.models.posetalk import motion2latent as m2l_lib

KW = dict(latent_dim=12, model_dim=16, num_blocks=2, num_heads=2, conv_kernel=5,
          audio_channels=(4, 8, 8, 8), audio_dim=8)


def _key(seed):
  # rbg keys: threefry's random-bit kernels take seconds each to compile on this CPU.
  return jax.random.key(seed, impl="rbg")


def _inputs(b, t, seed=0):
  ks = jax.random.split(_key(seed), 4)
  return (jax.random.normal(ks[0], (b, t, 6)), jax.random.normal(ks[1], (b, t, 2)),
          jax.random.normal(ks[2], (b, t, 16, 80)), jax.random.normal(ks[3], (b, 6)))


@pytest.mark.parametrize("dtype,t", [(jnp.float32, 7), (jnp.bfloat16, 4)])
def test_shapes_masks_and_odd_lengths(dtype, t):
  model = m2l_lib.Motion2Latent(dtype=dtype, **KW)
  pose, gaze, mel, src = _inputs(2, t)
  n_valid = max(1, t - 2)
  mask = jnp.arange(t)[None] < jnp.asarray([[t], [n_valid]])
  params = jax.jit(functools.partial(model.init, mask=mask))(_key(0), pose, gaze,
                                                            mel, src)
  apply = jax.jit(lambda p, *a, mask: model.apply(p, *a, mask=mask))
  z, aux = apply(params, pose, gaze, mel, src, mask=mask)
  assert z.shape == (2, t, 12) and z.dtype == dtype
  assert aux["tokens"].shape == (2, (t + 1) // 2, 16)
  assert aux["audio"].shape == (2, t, 8)
  assert bool(jnp.all(jnp.isfinite(z.astype(jnp.float32))))
  np.testing.assert_array_equal(np.asarray(z[1, n_valid:], np.float32), 0.0)
  # Valid frames do not depend on what is in the padded frames.
  z2, _ = apply(params, pose.at[1, n_valid:].set(9.0), gaze.at[1, n_valid:].set(-9.0),
                mel.at[1, n_valid:].set(5.0), src, mask=mask)
  np.testing.assert_array_equal(np.asarray(z2, np.float32), np.asarray(z, np.float32))
  # A padded example equals the same example processed alone at its true (possibly odd) length.
  if n_valid < t:
    z_alone, _ = jax.jit(model.apply)(
        params, pose[1:, :n_valid], gaze[1:, :n_valid], mel[1:, :n_valid], src[1:])
    tol = 1e-4 if dtype == jnp.float32 else 5e-2
    np.testing.assert_allclose(np.asarray(z[1, :n_valid], np.float32),
                               np.asarray(z_alone[0], np.float32), atol=tol)


def test_latent_depends_on_each_condition_and_context():
  model = m2l_lib.Motion2Latent(**KW)
  pose, gaze, mel, src = _inputs(1, 6)
  params = jax.jit(model.init)(_key(0), pose, gaze, mel, src)
  apply = jax.jit(model.apply)
  z, _ = apply(params, pose, gaze, mel, src)
  for changed in [(pose + 1, gaze, mel, src), (pose, gaze + 1, mel, src),
                  (pose, gaze, mel + 1, src), (pose, gaze, mel, src + 1)]:
    zc, _ = apply(params, *changed)
    assert float(jnp.abs(zc - z).max()) > 1e-3
  # Changing only the last frame changes earlier frames' latents (temporal context).
  zc, _ = apply(params, pose.at[:, -1].add(2.0), gaze, mel, src)
  assert float(jnp.abs(zc[:, 0] - z[:, 0]).max()) > 1e-4


def test_bad_shapes_raise():
  model = m2l_lib.Motion2Latent(**KW)
  pose, gaze, mel, src = _inputs(2, 4)
  with pytest.raises(ValueError, match="source_pose"):
    model.init(_key(0), pose, gaze, mel, src[:1])
  with pytest.raises(ValueError, match="mel"):
    model.init(_key(0), pose, gaze, mel[:, :3], src)
