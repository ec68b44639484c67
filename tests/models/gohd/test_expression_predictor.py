"""GoHD's expression predictor networks (jaxtalk.models.gohd.expression, GoHD section 3.2) and
the least-squares / sequence-SSIM losses they train with (jaxtalk.losses)."""

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import losses
from jaxtalk.models.gohd import expression as ex

B, T, A = 2, 24, 16


def _inputs(seed=0):
  k = jax.random.split(jax.random.key(seed), 5)
  return (jax.random.normal(k[0], (B, T, A)), jax.random.normal(k[1], (B, ex.NUM_COEFFS)),
          jax.random.normal(k[2], (B, T, ex.NUM_EYE)), jax.random.normal(k[3], (B, ex.NUM_EYE)),
          jax.random.normal(k[4], (B, T, 4)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_every_network_runs_in_f32_and_bf16_with_documented_shapes(dtype):
  a, e0, f, f0, z = _inputs()
  mel = jax.random.normal(jax.random.key(1), (B, T, 16, 80))
  audio = ex.AudioFeatures("mel", 16, dtype=dtype)
  pa = audio.init(jax.random.key(2), mel)
  feats = audio.apply(pa, mel)
  assert feats.shape == (B, T, 16) and feats.dtype == dtype
  mapper = ex.ExpressionMapper(hidden=(32, 32), dtype=dtype)
  mask = jnp.arange(T)[None] < jnp.array([[T], [T - 5]])
  pm = mapper.init(jax.random.key(3), a, e0, f, mask)
  e = mapper.apply(pm, a, e0, f, mask)
  assert e.shape == (B, T, ex.NUM_COEFFS) and e.dtype == jnp.float32
  assert np.all(np.asarray(e[1, T - 5:]) == 0) and np.isfinite(np.asarray(e)).all()
  gen = ex.EyeMotionGenerator(omega_dim=16, noise_dim=4, embed_hidden=(16,), out_hidden=(16,),
                              dtype=dtype)
  pg = gen.init(jax.random.key(4), a, f0, e0, z)
  f_hat, omega = gen.apply(pg, a, f0, e0, z)
  assert f_hat.shape == (B, T, ex.NUM_EYE) and omega.shape == (B, T, 16)
  assert f_hat.dtype == jnp.float32
  d_eye = ex.EyeDiscriminator(width=16, depth=1, num_heads=2, dtype=dtype)
  lm = jax.random.normal(jax.random.key(5), (B, T, 66))
  s = d_eye.apply(d_eye.init(jax.random.key(6), a, lm, mask), a, lm, mask)
  assert s.shape == (B, T) and s.dtype == jnp.float32
  d_t = ex.TemporalPatchDiscriminator((8, 16), dtype=dtype)
  st = d_t.apply(d_t.init(jax.random.key(7), f), f)
  assert st.shape == (B, T // 4, 1) and np.isfinite(np.asarray(st)).all()


def test_shape_errors_name_the_inputs():
  a, e0, f, f0, z = _inputs()
  mapper = ex.ExpressionMapper(hidden=(8,))
  with pytest.raises(ValueError, match="ExpressionMapper"):
    mapper.init(jax.random.key(0), a, e0[:, :10], f)
  gen = ex.EyeMotionGenerator(omega_dim=8, noise_dim=4)
  with pytest.raises(ValueError, match="EyeMotionGenerator"):
    gen.init(jax.random.key(0), a, f0, e0, z[:, :, :2])
  with pytest.raises(ValueError, match="audio_input"):
    ex.AudioFeatures("wav").init(jax.random.key(0), a)


def test_lstm_predicts_residuals_of_omega0():
  """Eq. 7: ω_t = ω_0 + Δω_t. Untrained (Δω head zero-initialised) every ω_t is ω_0 = Φ_e(f_0),
  so f̂_t = MLP(ω_0) for every frame; once Δω's head is nonzero, ω_t moves with the audio and
  the noise, and ω_t − ω_0 is exactly the head's output."""
  a, e0, _, f0, z = _inputs()
  gen = ex.EyeMotionGenerator(omega_dim=16, noise_dim=4, embed_hidden=(16,), out_hidden=(16,))
  p = nn.unbox(gen.init(jax.random.key(1), a, f0, e0, z))
  f_hat, omega = gen.apply(p, a, f0, e0, z)
  omega0 = np.asarray(omega[:, :1])
  np.testing.assert_allclose(np.asarray(omega), np.broadcast_to(omega0, omega.shape), atol=1e-6)
  np.testing.assert_allclose(np.asarray(f_hat), np.broadcast_to(f_hat[:, :1], f_hat.shape),
                             atol=1e-6)
  # The same ω_0 for another noise and another audio: it is Φ_e(f_0) alone.
  _, omega_b = gen.apply(p, -a, f0, e0, -z)
  np.testing.assert_allclose(np.asarray(omega_b), np.asarray(omega), atol=1e-6)
  head = p["params"]["delta_omega"]["dense"]
  p2 = jax.tree.map(lambda x: x, p)
  p2["params"]["delta_omega"]["dense"]["kernel"] = 0.1 * jnp.ones_like(head["kernel"])
  _, omega2 = gen.apply(p2, a, f0, e0, z)
  moved = np.asarray(omega2 - omega0)
  assert np.abs(moved).max() > 1e-3
  assert np.abs(moved[:, 1:] - moved[:, :-1]).max() > 1e-4  # not a constant offset.


def test_lsgan_losses_are_the_least_squares_form():
  real = jnp.array([[1.0, 0.5], [0.0, 2.0]])
  fake = jnp.array([[0.0, 0.5], [1.0, -1.0]])
  # (D(real) - 1)^2: 0, .25, 1, 1 -> mean .5625; D(fake)^2: 0, .25, 1, 1 -> .5625.
  np.testing.assert_allclose(losses.lsgan_disc_loss(real, fake), 1.125, rtol=1e-6)
  # (D(fake) - 1)^2: 1, .25, 0, 4 -> 1.3125.
  np.testing.assert_allclose(losses.lsgan_gen_loss(fake), 1.3125, rtol=1e-6)
  mask = jnp.array([[True, False], [True, True]])
  np.testing.assert_allclose(losses.lsgan_gen_loss(fake, mask), 5.0 / 3.0, rtol=1e-6)
  # Patch scores [B, T', 1] with no mask: a plain mean.
  np.testing.assert_allclose(losses.lsgan_gen_loss(fake[..., None]), 1.3125, rtol=1e-6)


def test_sequence_ssim_is_eq26():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(2, 40, 3)).astype(np.float32)
  assert float(losses.sequence_ssim(jnp.asarray(real), jnp.asarray(real))) == pytest.approx(1.0)
  gen = (0.5 * real + 0.3).astype(np.float32)
  # Hand-computed eq. 26 for dimension i of sequence b, population statistics.
  want = []
  for b in range(2):
    for i in range(3):
      r, g = real[b, :, i].astype(np.float64), gen[b, :, i].astype(np.float64)
      c1, c2 = (0.01 * np.ptp(r)) ** 2, (0.03 * np.ptp(r)) ** 2
      cov = np.mean((r - r.mean()) * (g - g.mean()))
      want.append((2 * r.mean() * g.mean() + c1) * (2 * cov + c2)
                  / ((r.mean() ** 2 + g.mean() ** 2 + c1) * (r.var() + g.var() + c2)))
  got = float(losses.sequence_ssim(jnp.asarray(gen), jnp.asarray(real)))
  assert got == pytest.approx(float(np.mean(want)), rel=1e-5)
  # Padded frames do not count: garbage after the mask changes nothing.
  mask = np.arange(40)[None] < np.array([[40], [30]])
  noisy = gen.copy()
  noisy[1, 30:] = 100.0
  a = losses.sequence_ssim(jnp.asarray(noisy), jnp.asarray(real), jnp.asarray(mask))
  b = losses.sequence_ssim(jnp.asarray(gen), jnp.asarray(real), jnp.asarray(mask))
  assert float(a) == pytest.approx(float(b), rel=1e-6)
  # Differentiable.
  g = jax.grad(lambda x: losses.sequence_ssim(x, jnp.asarray(real)))(jnp.asarray(gen))
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
