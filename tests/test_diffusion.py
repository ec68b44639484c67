"""Tests for jaxtalk.diffusion: schedules, q_sample, samplers, guidance (PoseTalk eq. 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import diffusion


@pytest.mark.parametrize("name", diffusion.SCHEDULES)
def test_schedules_are_valid(name):
  s = diffusion.make_schedule(name, 1000, 8.5e-4, 0.012) if name == "scaled_linear" else \
      diffusion.make_schedule(name, 1000, 1e-4, 0.02)
  assert s.betas.shape == (1000,)
  assert np.all(np.diff(s.alphas_cumprod) < 0)
  assert s.alphas_cumprod[0] > 0.99 and s.alphas_cumprod[-1] < 0.06
  with pytest.raises(ValueError):
    diffusion.make_betas("quadratic", 10)


def test_q_sample_matches_formula():
  s = diffusion.make_schedule("linear", 100, 1e-4, 0.02)
  x0 = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 4))
  n = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 4))
  t = jnp.array([0, 50, 99])
  xt = diffusion.q_sample(s, x0, t, n)
  a = s.alphas_cumprod[np.array(t)][:, None, None]
  np.testing.assert_allclose(xt, np.sqrt(a) * x0 + np.sqrt(1 - a) * n, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(diffusion.predict_x0(s, xt, t, n), x0, atol=2e-4)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("name", ["scaled_linear", "cosine"])
def test_ddim_with_true_noise_reconstructs_x0(eta, name):
  s = diffusion.make_schedule(name, 1000)
  x0 = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 8))
  noise = jax.random.normal(jax.random.PRNGKey(1), x0.shape)
  x_T = diffusion.q_sample(s, x0, jnp.full((2,), 999), noise)

  def true_eps(x, t):  # the exact noise that separates x_t from x0 at every step
    return diffusion.eps_from_x0(s, x, t, x0)

  out = diffusion.ddim_sample(true_eps, s, x_T, steps=50, eta=eta, rng=jax.random.PRNGKey(2))
  np.testing.assert_allclose(out, x0, atol=2e-3)
  # A wrong noise prediction does not reconstruct (the test can fail).
  bad = diffusion.ddim_sample(lambda x, t: jnp.zeros_like(x), s, x_T, steps=50)
  assert float(jnp.max(jnp.abs(bad - x0))) > 0.1


def test_ddpm_with_true_noise_reconstructs_x0():
  s = diffusion.make_schedule("linear", 200, 1e-4, 0.02)
  x0 = jax.random.normal(jax.random.PRNGKey(0), (2, 5))
  x_T = jax.random.normal(jax.random.PRNGKey(1), x0.shape)
  out = diffusion.ddpm_sample(lambda x, t: diffusion.eps_from_x0(s, x, t, x0), s, x_T,
                              rng=jax.random.PRNGKey(3))
  np.testing.assert_allclose(out, x0, atol=1e-3)


def test_guidance_equals_eq3_and_is_one_batched_call():
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  t = jnp.array([5, 6, 7])
  w_c = jax.random.normal(jax.random.PRNGKey(1), (4,))
  w_u = jax.random.normal(jax.random.PRNGKey(2), (4,))
  calls = []

  def eps_fn(x2, t2, uncond):
    calls.append(x2.shape[0])
    return jnp.where(uncond[:, None], x2 * w_u, x2 * w_c) + t2[:, None] * 0.01

  s = 7.5
  got = diffusion.guided_eps(eps_fn, x, t, s)
  e_c = x * w_c + t[:, None] * 0.01
  e_u = x * w_u + t[:, None] * 0.01
  np.testing.assert_allclose(got, s * e_c + (1 - s) * e_u, rtol=1e-6, atol=1e-6)
  assert calls == [6]
  np.testing.assert_array_equal(diffusion.cfg(e_c, e_u, s), s * e_c + (1 - s) * e_u)
  np.testing.assert_array_equal(diffusion.gohd_guidance(e_c, e_u, 0.3), 0.3 * e_c + 0.7 * e_u)
  calls.clear()
  np.testing.assert_allclose(diffusion.guided_eps(eps_fn, x, t, 1.0), e_c, rtol=1e-6)
  assert calls == [3]


def test_eps_loss_weights():
  a = jnp.ones((2, 3))
  b = jnp.zeros((2, 3)).at[1].set(1.0)
  assert float(diffusion.eps_loss(a, b)) == pytest.approx(0.5)
  assert float(diffusion.eps_loss(a, b, jnp.array([1.0, 0.0]))) == pytest.approx(1.0)
