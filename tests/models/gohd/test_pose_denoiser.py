"""GoHD's conformer pose denoiser (jaxtalk.models.gohd.pose_denoiser, GoHD section 3.1)."""

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.models import layers
from jaxtalk.models.gohd import pose_denoiser

B, T = 2, 12


def _key(seed):
  return jax.random.key(seed, impl="rbg")


def _inputs(d=6, audio="mel", seed=0):
  k = jax.random.split(_key(seed), 4)
  x = jax.random.normal(k[0], (B, T, d))
  a = (jax.random.normal(k[1], (B, T, 16, 80)) if audio == "mel"
       else jax.random.normal(k[1], (B, T, 24)))
  p0 = jax.random.normal(k[2], (B, d))
  n = jnp.array([3, 140], jnp.int32)
  return x, n, a, p0


def _tiny(**kw):
  return pose_denoiser.ConformerPoseDenoiser(channels=16, num_layers=3, dilation_cycle=2,
                                             num_heads=2, conv_kernel=3, audio_width=16, **kw)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("d,audio", [(6, "mel"), (2, "features")])
def test_shapes_dtypes_and_zero_init_head(dtype, d, audio):
  """Pose (6) from log-mel and gaze (2) from features, f32 and bf16: ε̂ [B, T, D] float32, and
  the zero-initialised head predicts ε = 0 before training (DiffWave)."""
  net = _tiny(out_dim=d, audio_input=audio, dtype=dtype)
  x, n, a, p0 = _inputs(d, audio)
  params = nn.unbox(net.init(_key(1), x, n, a, p0))
  eps = net.apply(params, x, n, a, p0)
  assert eps.shape == (B, T, d) and eps.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(eps), 0.0)
  # Layer i's conformers use dilation 2 ** (i % cycle) in their feed-forward convolutions.
  p = nn.unbox(params)["params"]
  assert set(p) >= {"layer0", "layer1", "layer2", "audio_encoder", "step_embedding", "eps_out"}
  ff = p["layer0"]["conformer_a"]["ff1"]["fc1"]["conv"]["kernel"]
  assert ff.shape == (3, 16, 32)  # kernel 3, C -> ff_mult * C


def _trained_like(net, x, n, a, p0):
  """Params with the zero head perturbed, so ε̂ depends on every input."""
  params = nn.unbox(net.init(_key(1), x, n, a, p0))
  return jax.tree_util.tree_map_with_path(
      lambda path, v: v + 0.3 * jax.random.normal(_key(7), v.shape, v.dtype)
      if "eps_out" in jax.tree_util.keystr(path) else v, params)


def test_p0_conditions_only_when_used_and_padding_never_leaks():
  net = _tiny()
  x, n, a, p0 = _inputs()
  params = _trained_like(net, x, n, a, p0)
  on = jnp.ones((B,), bool)
  off = jnp.zeros((B,), bool)
  e_on = net.apply(params, x, n, a, p0, on)
  e_on2 = net.apply(params, x, n, a, p0 + 1.0, on)
  e_off = net.apply(params, x, n, a, p0, off)
  e_off2 = net.apply(params, x, n, a, p0 + 1.0, off)
  assert float(jnp.abs(e_on - e_on2).max()) > 1e-3   # c_t = a_t ⊕ p_0 sees p_0 ...
  np.testing.assert_array_equal(np.asarray(e_off), np.asarray(e_off2))  # ... a_t alone does not.
  assert float(jnp.abs(e_on - e_off).max()) > 1e-3
  # The audio and the diffusion step condition every frame.
  other = jax.random.normal(_key(9), a.shape)  # (a scaled is the same: GroupNorm)
  assert float(jnp.abs(net.apply(params, x, n, other, p0) - e_on).max()) > 1e-3
  assert float(jnp.abs(net.apply(params, x, n[::-1], a, p0) - e_on).max()) > 1e-3
  # Padded frames: valid outputs do not depend on them, and their outputs are 0.
  mask = jnp.arange(T)[None] < jnp.array([[T], [7]])
  e1 = net.apply(params, x, n, a, p0, on, mask)
  x2 = x.at[1, 7:].set(100.0)
  a2 = a.at[1, 7:].set(-50.0)
  e2 = net.apply(params, x2, n, a2, p0, on, mask)
  np.testing.assert_allclose(np.asarray(e1), np.asarray(e2), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(e1[1, 7:]), 0.0)


def test_bad_shapes_are_named():
  net = _tiny()
  x, n, a, p0 = _inputs()
  with pytest.raises(ValueError, match="out_dim 6"):
    net.init(_key(0), x[..., :2], n, a, p0)
  with pytest.raises(ValueError, match=r"p0 \(2, 2\)"):
    net.init(_key(0), x, n, a, p0[:, :2])
  with pytest.raises(ValueError, match="audio_input='wav'"):
    _tiny(audio_input="wav").init(_key(0), x, n, a, p0)


def test_dilated_feed_forward_sees_further_in_time():
  """`FeedForward(dilation=4)`: a change at frame 8 reaches frame 4 (8 - 4) but not frame 5."""
  ff = layers.FeedForward(mult=2, dilation=4)
  x = jax.random.normal(_key(0), (1, 12, 8))
  params = ff.init(_key(1), x)
  y1 = ff.apply(params, x)
  y2 = ff.apply(params, x.at[0, 8].set(jax.random.normal(_key(2), (8,))))
  diff = np.abs(np.asarray(y1 - y2))[0].max(-1)
  assert diff[4] > 1e-4 and diff[12 - 1] < 1e-7 and diff[5] < 1e-7 and diff[7] < 1e-7
  assert diff[8] > 1e-4


def test_from_config_paper_size():
  cfg = dict(channels=256, num_layers=20, dilation_cycle=10)
  net = pose_denoiser.from_config(cfg)
  assert (net.channels, net.num_layers, net.out_dim) == (256, 20, 6)
  assert pose_denoiser.from_config(cfg, out_dim=2).out_dim == 2
  x, n, a, p0 = _inputs()
  shapes = nn.unbox(jax.eval_shape(net.init, _key(0), x, n, a, p0))
  count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(shapes))
  assert 70e6 < count < 85e6, count  # 20 layers x 2 conformers of width 256, ff_mult 2.
