"""GoHD pose sampling (jaxtalk.generators.gohd): eqs. 3 and 4 exactly, long audio in windows."""

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import diffusion
from jaxtalk.generators import gohd
from jaxtalk.models.gohd import pose_denoiser

B, W, D = 2, 16, 6


def _key(seed):
  return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def model():
  net = pose_denoiser.ConformerPoseDenoiser(channels=16, num_layers=2, dilation_cycle=2,
                                            num_heads=2, conv_kernel=3, audio_input="features",
                                            audio_width=16)
  k = jax.random.split(_key(0), 3)
  x = jax.random.normal(k[0], (B, W, D))
  a = jax.random.normal(k[1], (B, W, 8))
  p0 = jax.random.normal(k[2], (B, D))
  n = jnp.array([5, 60], jnp.int32)
  params = nn.unbox(net.init(_key(1), x, n, a, p0))
  params = jax.tree_util.tree_map_with_path(  # perturb the zero head: ε̂ depends on its inputs.
      lambda path, v: v + 0.5 * jax.random.normal(_key(2), v.shape, v.dtype)
      if "eps_out" in jax.tree_util.keystr(path) else v, params)
  schedule = diffusion.make_schedule("linear", 150, 1e-4, 0.05)
  return net, params, schedule, x, n, a, p0


@pytest.mark.parametrize("gamma", [0.0, 0.4, 1.0])
def test_guidance_is_eq3(model, gamma):
  net, params, _, x, n, a, p0 = model
  full = net.apply(params, x, n, a, p0, jnp.ones((B,), bool))
  less = net.apply(params, x, n, a, p0, jnp.zeros((B,), bool))
  got = gohd.guided_eps_fn(net, params, a, p0, gamma)(x, n)
  want = diffusion.gohd_guidance(full, less, gamma)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  assert float(jnp.abs(full - less).max()) > 1e-3  # the two predictions differ.


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_pose_is_p0_plus_sampled_residual_eq4(model, sampler):
  net, params, schedule, x, _, a, p0 = model
  rng = _key(3)
  got = gohd.sample_window(net, params, schedule, a, p0, x, gamma=0.4, sampler=sampler,
                           steps=10, rng=rng)
  eps = gohd.guided_eps_fn(net, params, a, p0, 0.4)
  x0 = (diffusion.ddpm_sample(eps, schedule, x, rng=rng) if sampler == "ddpm"
        else diffusion.ddim_sample(eps, schedule, x, steps=10))
  np.testing.assert_allclose(np.asarray(got), np.asarray(p0[:, None] + x0), atol=1e-5)
  with pytest.raises(ValueError, match="needs rng"):
    gohd.sample_window(net, params, schedule, a, p0, x)
  with pytest.raises(ValueError, match="sampler='dpm'"):
    gohd.sample_window(net, params, schedule, a, p0, x, sampler="dpm", rng=rng)


def test_known_frames_are_imposed(model):
  net, params, schedule, x, _, a, p0 = model
  known = jnp.full((B, W, D), 0.7)
  mask = jnp.broadcast_to(jnp.arange(W) < 4, (B, W))
  y = gohd.sample_window(net, params, schedule, a, p0, x, sampler="ddim", steps=10,
                         known=known, known_mask=mask)
  np.testing.assert_allclose(np.asarray(y[:, :4]), 0.7, atol=1e-4)
  assert float(jnp.abs(y[:, 4:] - 0.7).min()) > 0  # the rest is sampled.


def test_sequence_of_any_length_continues_each_window_without_seams(model):
  """Windows after the first keep the frames already sampled (the overlap is imposed on x̂_0 and
  cross-faded with itself), so a 41-frame sequence starts with exactly the 16-frame one, and
  every length is sampled, seeded."""
  net, params, schedule, _, _, _, p0 = model
  audio = np.asarray(jax.random.normal(_key(4), (41, 8)))
  run = lambda t, seed=1: gohd.sample_sequence(
      net, params, schedule, audio[:t], np.asarray(p0[0]), window=W, overlap=6,
      sampler="ddim", steps=8, seed=seed)
  long, one = run(41), run(16)
  assert long.shape == (41, D) and one.shape == (16, D) and run(5).shape == (5, D)
  np.testing.assert_allclose(long[:16], one, atol=1e-5)
  np.testing.assert_array_equal(long, run(41))
  assert np.abs(long - run(41, seed=2)).max() > 1e-3
