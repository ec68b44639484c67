"""Stage `pose_vae`: train PoseTalk's pose VAE (paper "Pose Generation", eq. 1).

Input: `pose [B, T, 6]` and `gaze [B, T, 2]` (normalised with the dataset statistics) and
`mask [B, T]`, concatenated to `x [B, T, 8]`. Loss: `config.loss.recon_weight` * Huber(x, x̂)
(eq. 1) + `config.loss.kl_weight` * KL. A fraction `variable_length_prob` of the training windows
get a random valid length in [T/2, T] (the mask is cut), so the decoder is trained to decode any
length. Eval: reconstruction from the posterior mean (RMSE in units of the data std, overall and
per feature).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models.posetalk import pose_vae as vae_lib
from jaxtalk.motion import GAZE_NAMES, POSE_NAMES
from jaxtalk.tasks import Task


def build_model(model_cfg, dtype="float32") -> vae_lib.PoseVAE:
  """`PoseVAE` from a `config.model`-like mapping: `models.posetalk.pose_vae.from_config`."""
  return vae_lib.from_config(model_cfg, dtype)


def features(batch):
  """`(x [B, T, 8] float32, mask [B, T] bool)` from a batch's pose, gaze and mask."""
  x = jnp.concatenate([batch["pose"], batch["gaze"]], axis=-1).astype(jnp.float32)
  mask = batch.get("mask")
  mask = jnp.ones(x.shape[:2], bool) if mask is None else mask.astype(bool)
  return x, mask


def random_length_mask(rng, mask, prob: float):
  """Cuts the valid length of a fraction `prob` of the examples to a random L' in [L/2, L]."""
  b, t = mask.shape
  r1, r2 = jax.random.split(rng)
  length = jnp.sum(mask, axis=1)
  lo = jnp.maximum(length // 2, 1)
  new = lo + (jax.random.uniform(r2, (b,)) * (length - lo + 1)).astype(jnp.int32)
  cut = jax.random.bernoulli(r1, prob, (b,))
  new = jnp.where(cut, jnp.minimum(new, length), length)
  return mask & (jnp.arange(t)[None] < new[:, None])


def augment(rng, x, mask, loss_cfg):
  """Training-window augmentation of normalised motion `x [B, T, F]` (jaxtalk's, not the paper's).

  The VAE is a compressor that must carry motion of unseen speakers, while a small dataset shows
  it few mean poses, amplitudes and combinations of dimensions. Each is off when its setting is 0:
    offset_std: std of a per-window, per-dimension constant offset (normalised units).
    gain_std: std of log of a per-window, per-dimension gain applied to the deviation from the
      window's (masked) mean, i.e. amplitude in exp(+-gain_std).
    channel_mix_prob: probability that a dimension of a window is taken from another window of
      the batch (same dimension), so no combination of dimensions is memorised.
    reverse_prob: probability that a fully valid window is played backwards.
  Returns the augmented `x` (same shape and dtype); `mask [B, T]` is unchanged.
  """
  b, t, f = x.shape
  r_off, r_gain, r_mix, r_perm, r_rev = jax.random.split(rng, 5)
  w = mask.astype(x.dtype)[..., None]
  reverse_prob = float(loss_cfg.get("reverse_prob", 0.0))
  if reverse_prob > 0:
    full = jnp.all(mask, axis=1)
    rev = jax.random.bernoulli(r_rev, reverse_prob, (b,)) & full
    x = jnp.where(rev[:, None, None], x[:, ::-1], x)
  mix_prob = float(loss_cfg.get("channel_mix_prob", 0.0))
  if mix_prob > 0:
    src = jax.random.randint(r_perm, (b, f), 0, b)
    src = jnp.where(jax.random.bernoulli(r_mix, mix_prob, (b, f)), src, jnp.arange(b)[:, None])
    full = jnp.all(mask, axis=1)
    src = jnp.where(full[src], src, jnp.arange(b)[:, None])   # only fully valid donors
    x = x.transpose(0, 2, 1)[src, jnp.arange(f)[None]].transpose(0, 2, 1)   # [B, T, F]
  gain_std = float(loss_cfg.get("gain_std", 0.0))
  if gain_std > 0:
    mean = jnp.sum(x * w, axis=1, keepdims=True) / jnp.maximum(jnp.sum(w, axis=1, keepdims=True), 1)
    gain = jnp.exp(gain_std * jax.random.normal(r_gain, (b, 1, f), x.dtype))
    x = mean + (x - mean) * gain
  offset_std = float(loss_cfg.get("offset_std", 0.0))
  if offset_std > 0:
    x = x + offset_std * jax.random.normal(r_off, (b, 1, f), x.dtype)
  return x


def get_task(config, *, mesh) -> Task:
  """The pose_vae stage (see module docstring)."""
  del mesh
  model = build_model(config.model, config.dtype)
  lc = config.loss
  names = POSE_NAMES + GAZE_NAMES

  def init(rng, batch):
    x, mask = features(batch)
    r1, r2 = jax.random.split(rng)
    return model.init({"params": r1, "latent": r2}, x, mask)["params"]

  def loss(params, batch, rng, frozen, step):
    del frozen, step
    x, mask = features(batch)
    r_len, r_lat, r_drop, r_aug = jax.random.split(rng, 4)
    x = augment(r_aug, x, mask, lc)
    mask = random_length_mask(r_len, mask, float(lc.variable_length_prob))
    x_hat, aux = model.apply({"params": params}, x, mask, train=True,
                             rngs={"latent": r_lat, "dropout": r_drop})
    total, m = vae_lib.vae_loss(x, x_hat, aux["mu"], aux["logvar"], mask,
                                huber_delta=float(lc.huber_delta),
                                recon_weight=float(lc.recon_weight),
                                kl_weight=float(lc.kl_weight))
    return total, m

  def evaluate(params, batch, frozen):
    del frozen
    x, mask = features(batch)
    x_hat, aux = model.apply({"params": params}, x, mask, sample=False)
    _, m = vae_lib.vae_loss(x, x_hat, aux["mu"], aux["logvar"], mask,
                            huber_delta=float(lc.huber_delta), kl_weight=float(lc.kl_weight))
    w = mask.astype(jnp.float32)[..., None]
    per = jnp.sqrt(jnp.sum((x_hat - x) ** 2 * w, axis=(0, 1)) / jnp.maximum(jnp.sum(w), 1.0))
    out = dict(m)
    out.update({f"rmse_{n}": per[i] for i, n in enumerate(names)})
    out["latent_std"] = jnp.std(aux["mu"])
    return out

  def infer(params, frozen, inputs):
    """{"pose" [B, T, 6], "gaze" [B, T, 2]} normalised -> reconstruction and posterior mean."""
    del frozen
    x, mask = features(inputs)
    x_hat, aux = model.apply({"params": params}, x, mask, sample=False)
    return {"pose": x_hat[..., :6], "gaze": x_hat[..., 6:], "mu": aux["mu"],
            "logvar": aux["logvar"]}

  def infer_example():
    t = int(config.input.window)
    return {"pose": np.zeros([1, t, 6], np.float32), "gaze": np.zeros([1, t, 2], np.float32)}

  return Task(init=init, loss=loss, evaluate=evaluate, infer=infer, infer_example=infer_example)
