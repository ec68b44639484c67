"""Tests for the pose VAE (jaxtalk/models/posetalk/pose_vae.py,
jaxtalk/tasks/posetalk/pose_vae.py)."""

import os

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.posetalk import pose_vae as vae_config
from jaxtalk.core import input_pipeline
from jaxtalk import train
from jaxtalk.models.posetalk import pose_vae as vae_lib
from jaxtalk.models import transformer
from jaxtalk.tasks.posetalk import pose_vae as vae_task

TINY = dict(latent_tokens=2, latent_dim=8, width=32, depth=1, num_heads=4, mlp_mult=2, dropout=0.0)


def _init(model, x, mask=None):
  return nn.unbox(jax.jit(lambda x, m: model.init(
      {"params": jax.random.PRNGKey(0), "latent": jax.random.PRNGKey(1)}, x, m))(x, mask)[
          "params"])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_and_dtypes(dtype):
  model = vae_lib.PoseVAE(**TINY, dtype=dtype)
  x = jax.random.normal(jax.random.PRNGKey(2), (3, 20, 8))
  params = _init(model, x)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))
  x_hat, aux = jax.jit(lambda p, x: model.apply({"params": p}, x, rngs={
      "latent": jax.random.PRNGKey(3)}))(params, x)
  assert x_hat.shape == (3, 20, 8) and x_hat.dtype == jnp.float32
  assert aux["mu"].shape == (3, 2, 8) and aux["logvar"].shape == (3, 2, 8)
  assert aux["mu"].dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(x_hat)))
  loss, m = vae_lib.vae_loss(x, x_hat, aux["mu"], aux["logvar"])
  assert loss.dtype == jnp.float32 and set(m) == {"loss_recon", "loss_kl", "rmse"}


def test_decodes_any_length():
  model = vae_lib.PoseVAE(**TINY)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 20, 8))
  params = _init(model, x)
  z = jax.random.normal(jax.random.PRNGKey(4), (2, 2, 8))
  decode = jax.jit(lambda p, z, t: model.apply({"params": p}, z, t, method=model.decode),
                   static_argnums=2)
  for t in (1, 7, 50, 123):
    out = decode(params, z, t)
    assert out.shape == (2, t, 8) and np.all(np.isfinite(np.asarray(out)))
  # Encoding also takes any length.
  encode = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode))
  for t in (3, 64):
    mu, _ = encode(params, jnp.ones((2, t, 8)))
    assert mu.shape == (2, 2, 8)
  with pytest.raises(ValueError):
    model.apply({"params": params}, jnp.ones((2, 5, 6)), method=model.encode)


def test_padded_frames_do_not_change_the_encoding():
  model = vae_lib.PoseVAE(**TINY)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 12, 8))
  mask = jnp.arange(12)[None] < jnp.array([[8], [12]])
  params = _init(model, x, mask)
  encode = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m, method=model.encode))
  mu1, _ = encode(params, x, mask)
  x2 = x.at[0, 8:].set(100.0)
  mu2, _ = encode(params, x2, mask)
  np.testing.assert_allclose(mu1, mu2, atol=1e-5)
  mu3, _ = encode(params, x2, jnp.ones_like(mask))
  assert float(jnp.max(jnp.abs(mu3[0] - mu1[0]))) > 1e-3


def test_huber_and_kl():
  x = jnp.zeros((1, 2, 8))
  y = jnp.full((1, 2, 8), 3.0)
  np.testing.assert_allclose(vae_lib.huber(y, x), 2.5)          # |d| - 0.5 beyond delta = 1
  np.testing.assert_allclose(vae_lib.huber(y * 0.1, x), 0.045)  # 0.5 d^2 inside
  np.testing.assert_allclose(vae_lib.kl_divergence(jnp.zeros((2, 3)), jnp.zeros((2, 3))), 0.0)
  assert float(vae_lib.kl_divergence(jnp.ones((1, 3)), jnp.zeros((1, 3)))[0]) == pytest.approx(0.5)


def test_skip_transformer_rejects_even_depth_and_uses_skips():
  x = jnp.ones((1, 4, 16))
  with pytest.raises(ValueError):
    transformer.SkipTransformer(depth=4).init(jax.random.PRNGKey(0), x)
  params = transformer.SkipTransformer(depth=5, num_heads=2).init(jax.random.PRNGKey(0), x)
  names = set(params["params"])
  assert {"in_0", "in_1", "middle", "out_0", "out_1", "skip_proj_0", "skip_proj_1"} <= names


def test_random_length_mask():
  mask = jnp.ones((64, 20), bool)
  cut = vae_task.random_length_mask(jax.random.PRNGKey(0), mask, 0.5)
  lengths = np.asarray(cut.sum(1))
  assert lengths.min() >= 10 and lengths.max() == 20
  assert 10 < np.sum(lengths < 20) < 54
  # Valid frames stay a prefix.
  assert np.all(np.asarray(cut)[:, :-1] >= np.asarray(cut)[:, 1:])


def test_augment_settings():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 20, 8))
  mask = jnp.ones((6, 20), bool)
  aug = lambda **kw: np.asarray(vae_task.augment(jax.random.PRNGKey(1), x, mask, kw))
  xn = np.asarray(x)
  np.testing.assert_array_equal(aug(), xn)                    # everything off: unchanged
  # Gain: every window/dimension keeps its mean, deviations are scaled by one positive factor.
  g = aug(gain_std=0.5)
  np.testing.assert_allclose(g.mean(1), xn.mean(1), atol=1e-5)
  gd, xd = g - g.mean(1, keepdims=True), xn - xn.mean(1, keepdims=True)
  gain = (gd * xd).sum(1, keepdims=True) / (xd * xd).sum(1, keepdims=True)
  np.testing.assert_allclose(gd, gain * xd, atol=1e-5)
  assert np.all(gain > 0) and np.std(gain) > 0.05
  # Offsets: constant in time.
  d = aug(offset_std=1.0) - xn
  np.testing.assert_allclose(d, np.broadcast_to(d[:, :1], d.shape), atol=1e-5)
  # Reverse (prob 1): time-reversed.
  np.testing.assert_array_equal(aug(reverse_prob=1.0), xn[:, ::-1])
  # Channel mix (prob 1): each dimension is that dimension of some window of the batch.
  m = aug(channel_mix_prob=1.0)
  for b in range(6):
    for f in range(8):
      assert any(np.array_equal(m[b, :, f], xn[j, :, f]) for j in range(6))
  assert not np.array_equal(m, xn)
  # A window with padding is never reversed nor given to another window.
  pm = mask.at[0, 15:].set(False)
  r = np.asarray(vae_task.augment(jax.random.PRNGKey(1), x, pm, dict(reverse_prob=1.0,
                                                                     channel_mix_prob=1.0)))
  for b in range(6):
    for f in range(8):
      assert b == 0 or not np.array_equal(r[b, :, f], xn[0, :, f])


def test_moment_skip_is_a_linear_path_to_the_posterior_mean():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 30, 8))
  model = vae_lib.PoseVAE(**TINY, basis_degree=3, moment_skip=True)
  params = _init(model, x)
  assert "moment_mu" in params
  mu = lambda p: model.apply({"params": p}, x, method=model.encode)[0]
  zero = jax.tree.map(jnp.zeros_like, params["moment_mu"])
  base = mu(dict(params, moment_mu=zero))
  # mu = transformer path + W m + b: doubling (W, b) adds the same W m + b again.
  twice = jax.tree.map(lambda a: 2 * a, params["moment_mu"])
  d1 = mu(params) - base
  d2 = mu(dict(params, moment_mu=twice)) - base
  np.testing.assert_allclose(d2, 2 * d1, rtol=1e-4, atol=1e-5)
  assert float(jnp.abs(d1).max()) > 1e-3
  with pytest.raises(ValueError, match="moment_skip"):
    _init(vae_lib.PoseVAE(**TINY, basis_degree=-1, moment_skip=True), x)


def test_tiny_vae_learns_synthetic_batch():
  """The tiny config's VAE overfits a synthetic batch: reconstruction RMSE falls below 0.3 std."""
  c = vae_config.get_config("size=tiny,synthetic=true")
  batch = next(input_pipeline.create_iterator(c, split="train"))
  x = jnp.concatenate([batch["pose"], batch["gaze"]], -1)[:8]
  model = vae_task.build_model(c.model)
  params = _init(model, x)
  tx = optax.adam(3e-3)
  state = tx.init(params)

  @jax.jit
  def step(p, s, rng):
    def lf(p):
      x_hat, aux = model.apply({"params": p}, x, rngs={"latent": rng})
      return vae_lib.vae_loss(x, x_hat, aux["mu"], aux["logvar"], kl_weight=1e-4)
    (_, m), g = jax.value_and_grad(lf, has_aux=True)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, m

  first = None
  for i in range(250):
    params, state, m = step(params, state, jax.random.PRNGKey(i))
    first = float(m["rmse"]) if first is None else first
  x_hat, _ = jax.jit(lambda p: model.apply({"params": p}, x, sample=False))(params)
  rmse = float(jnp.sqrt(jnp.mean((x_hat - x) ** 2)))
  assert first > 0.6 and rmse < 0.3, (first, rmse)


@pytest.mark.needs_data
@pytest.mark.slow
def test_tiny_vae_reconstructs_held_out_real_clip(real_shards, tmp_path):
  """Tiny VAE trained on the real shards: held-out RMSE < 0.25 of the data std (eval split)."""
  c = vae_config.get_config(f"size=tiny,data_dir={real_shards}")
  c.eval_batches = 4
  from jaxtalk.core import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  result = train.train_and_evaluate(c, str(tmp_path / "vae"), mesh=mesh)
  evals = [h for h in result["history"] if "eval/rmse" in h]
  assert evals, result["history"]
  first_train = next(h["train/rmse"] for h in result["history"] if "train/rmse" in h)
  rmse = evals[-1]["eval/rmse"]
  print("held-out VAE rmse (std units):", rmse, "first train rmse:", first_train)
  assert rmse < 0.25, evals[-1]
  assert os.path.isdir(tmp_path / "vae" / "params")
