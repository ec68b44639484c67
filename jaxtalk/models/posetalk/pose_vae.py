"""Pose VAE of PoseTalk's Pose Latent Diffusion (PoseTalk "Pose Generation", eq. 1; after MLD).

Encoder E: a normalised pose+gaze sequence `x [B, T, 8]` (yaw, pitch, roll, tx, ty, scale,
gaze pitch, gaze yaw; normalised with the dataset mean/std) -> a Gaussian posterior over a latent
`z [B, N, D]`. As in MLD, 2N learned "distribution tokens" are prepended to the embedded frames;
after a transformer encoder, the first N outputs give the posterior mean and the next N its
log-variance (each projected to D).

Decoder D: `z [B, N, D]` -> `x̂ [B, T, 8]` for ANY T: T query tokens built from sinusoidal
embeddings of the frame index attend (cross-attention) to the latent tokens as memory, so the
decoded length is set by the caller, not by the weights.

Loss (`vae_loss`): HuberLoss(x, x̂) (PoseTalk eq. 1) over valid frames
+ `kl_weight` * KL(q || N(0, I)) (MLD's small KL term), both weights from the config.
"""

from __future__ import annotations

from typing import Any, Optional

from flax import linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxtalk.models import layers
from jaxtalk.models import transformer

Dtype = Any
FEATURES = 8  # 6 pose + 2 gaze
LOGVAR_OFFSET = -6.0


class PoseVAE(nn.Module):
  """Transformer VAE over pose+gaze sequences (see module docstring).

  Attributes:
    latent_tokens: N, number of latent tokens.
    latent_dim: D, width of each latent token.
    width: transformer width.
    depth: encoder blocks (the decoder has the same number).
    num_heads: attention heads.
    mlp_mult: feed-forward expansion.
    dropout: dropout rate in training.
    basis_degree: K of the Legendre temporal-moment paths (see `legendre`): the encoder adds a
      projection of the K+1 temporal moments of the sequence to its distribution tokens, and the
      decoder adds `sum_k P_k(tau_t) A_k z` to its output; -1 disables both. They give the
      transformer a direct path for the window mean and slow trends, which it otherwise learns
      only after a long plateau.
    moment_skip: also add a linear map of those moments to the posterior mean (needs
      basis_degree >= 0). With N * D >= 8 (K + 1) the encoder and decoder can then carry every
      window's Legendre projection linearly (a PCA-like path that does not depend on which
      speakers were seen), and the transformers learn the rest; jaxtalk's addition, measured to
      generalise to held-out speakers where the transformer path alone underfits
      (configs/posetalk/pose_vae.py).
    features: per-frame input/output features (8: pose + gaze).
    dtype / param_dtype: compute / parameter dtypes; outputs, mean and log-variance are float32.
  """
  latent_tokens: int = 1
  latent_dim: int = 256
  width: int = 256
  depth: int = 4
  num_heads: int = 4
  mlp_mult: int = 4
  dropout: float = 0.1
  basis_degree: int = 3
  moment_skip: bool = False
  features: int = FEATURES
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    if self.moment_skip and self.basis_degree < 0:
      raise ValueError("PoseVAE: moment_skip needs the moment path (basis_degree >= 0)")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.in_proj = layers.Dense(self.width, names=("latent", "embed"), **kw)
    self.dist_tokens = self.param(
        "dist_tokens", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                    ("time", "embed")),
        (2 * self.latent_tokens, self.width), self.param_dtype)
    self.encoder = transformer.TransformerStack(
        self.depth, self.num_heads, self.mlp_mult, False, self.dropout, **kw)
    if self.basis_degree >= 0:
      self.moment_proj = layers.Dense(self.width, names=("latent", "embed"), **kw)
      self.basis_head = layers.Dense((self.basis_degree + 1) * self.features,
                                     names=("latent", "embed"), dtype=jnp.float32,
                                     param_dtype=self.param_dtype)
      if self.moment_skip:
        self.moment_mu = layers.Dense(self.latent_tokens * self.latent_dim,
                                      names=("latent", "embed"), dtype=jnp.float32,
                                      param_dtype=self.param_dtype)
    self.mu_proj = layers.Dense(self.latent_dim, names=("embed", "latent"),
                                dtype=jnp.float32, param_dtype=self.param_dtype)
    self.logvar_proj = layers.Dense(self.latent_dim, names=("embed", "latent"),
                                    dtype=jnp.float32, param_dtype=self.param_dtype)
    self.mem_proj = layers.Dense(self.width, names=("latent", "embed"), **kw)
    self.mem_pos = self.param(
        "mem_pos", nn.with_logical_partitioning(nn.initializers.normal(0.02), ("time", "embed")),
        (self.latent_tokens, self.width), self.param_dtype)
    self.query_proj = layers.Dense(self.width, names=("latent", "embed"), **kw)
    self.global_proj = layers.Dense(self.width, names=("latent", "embed"), **kw)
    self.decoder = transformer.TransformerStack(
        self.depth, self.num_heads, self.mlp_mult, True, self.dropout, **kw)
    self.out_proj = layers.Dense(self.features, names=("embed", "latent"), dtype=jnp.float32,
                                 param_dtype=self.param_dtype)

  def encode(self, x, mask=None, *, train: bool = False):
    """Posterior of `x [B, T, features]` (mask `[B, T]` bool, True = valid frame).

    Returns:
      (mu, logvar), each `[B, N, D]` float32 (logvar clipped to [-20, 10]).

    Raises:
      ValueError: wrong feature size or mask shape.
    """
    if x.ndim != 3 or x.shape[-1] != self.features:
      raise ValueError(f"PoseVAE.encode: expected [B, T, {self.features}], got {x.shape}")
    b, t, _ = x.shape
    if mask is not None and mask.shape != (b, t):
      raise ValueError(f"PoseVAE.encode: mask {mask.shape} does not match x {(b, t)}")
    n = self.latent_tokens
    h = self.in_proj(x.astype(self.dtype))
    h = h + layers.sinusoidal_embedding(jnp.arange(t), self.width).astype(self.dtype)
    tok = jnp.broadcast_to(self.dist_tokens.astype(self.dtype), (b, 2 * n, self.width))
    if self.basis_degree >= 0:
      valid = jnp.ones((b, t), bool) if mask is None else mask.astype(bool)
      length = jnp.sum(valid, axis=1)
      basis = legendre(jnp.arange(t)[None], length[:, None], self.basis_degree)   # [B, T, K+1]
      w = valid.astype(jnp.float32)[..., None]
      moments = jnp.einsum("btk,btf->bkf", basis * w, x.astype(jnp.float32))
      moments = moments / jnp.maximum(length, 1)[:, None, None]
      moments = moments.reshape(b, -1)
      tok = tok + self.moment_proj(moments.astype(self.dtype))[:, None]
    h = jnp.concatenate([tok, h], axis=1)
    full_mask = None
    if mask is not None:
      full_mask = jnp.concatenate([jnp.ones((b, 2 * n), bool), mask.astype(bool)], axis=1)
    h = self.encoder(h, mask=full_mask, train=train)
    mu = self.mu_proj(h[:, :n].astype(jnp.float32))
    if self.basis_degree >= 0 and self.moment_skip:
      mu = mu + self.moment_mu(moments).reshape(b, n, self.latent_dim)
    # Offset: the posterior starts narrow (std ~0.05), so early training is not drowned in
    # sampling noise; the KL term widens it as far as the data allows.
    logvar = jnp.clip(self.logvar_proj(h[:, n:2 * n].astype(jnp.float32)) + LOGVAR_OFFSET,
                      -20.0, 10.0)
    return mu, logvar

  def decode(self, z, num_frames: int, *, train: bool = False):
    """Decodes latents `z [B, N, D]` to `[B, num_frames, features]` float32 (any num_frames)."""
    if z.ndim != 3 or z.shape[1:] != (self.latent_tokens, self.latent_dim):
      raise ValueError(f"PoseVAE.decode: expected [B, {self.latent_tokens}, {self.latent_dim}], "
                       f"got {z.shape}")
    b = z.shape[0]
    mem = self.mem_proj(z.astype(self.dtype)) + self.mem_pos.astype(self.dtype)
    pos = layers.sinusoidal_embedding(jnp.arange(num_frames), self.width)
    q = self.query_proj(pos.astype(self.dtype))
    # Every query also sees the whole latent (flattened), added to its position embedding.
    q = q[None] + self.global_proj(z.reshape(b, -1).astype(self.dtype))[:, None]
    h = self.decoder(q, memory=mem, train=train)
    out = self.out_proj(h.astype(jnp.float32))
    if self.basis_degree >= 0:
      k = self.basis_degree + 1
      coef = self.basis_head(z.reshape(b, -1).astype(jnp.float32)).reshape(b, k, self.features)
      basis = legendre(jnp.arange(num_frames), jnp.asarray(num_frames), self.basis_degree)
      out = out + jnp.einsum("tk,bkf->btf", basis, coef)
    return out

  def __call__(self, x, mask=None, *, train: bool = False, sample: bool = True):
    """Encodes, samples `z = mu + exp(logvar / 2) * eps` (rng 'latent'; mean when not `sample`),
    decodes to the same length.

    Returns:
      (x̂ `[B, T, features]` float32, aux with `mu`, `logvar`, `z`).
    """
    mu, logvar = self.encode(x, mask, train=train)
    if sample:
      eps = jax.random.normal(self.make_rng("latent"), mu.shape, jnp.float32)
      z = mu + jnp.exp(0.5 * logvar) * eps
    else:
      z = mu
    x_hat = self.decode(z, x.shape[1], train=train)
    return x_hat, {"mu": mu, "logvar": logvar, "z": z}


def legendre(t, length, degree: int):
  """Legendre polynomials P_0..P_degree at tau = 2 t / max(length - 1, 1) - 1: `[..., degree+1]`
  float32 (tau in [-1, 1] over the frames 0..length-1; any length)."""
  tau = 2.0 * t.astype(jnp.float32) / jnp.maximum(length - 1, 1).astype(jnp.float32) - 1.0
  out = [jnp.ones_like(tau), tau]
  for n in range(1, degree):
    out.append(((2 * n + 1) * tau * out[n] - n * out[n - 1]) / (n + 1))
  return jnp.stack(out[:degree + 1], axis=-1)


def huber(x, y, delta: float = 1.0):
  """Elementwise Huber loss (PyTorch `HuberLoss` with `delta`), float32."""
  return optax.losses.huber_loss(x.astype(jnp.float32), y.astype(jnp.float32), delta=delta)


def kl_divergence(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, I)) per example: `[B]`, averaged over the N x D entries."""
  kl = 0.5 * (jnp.exp(logvar) + mu ** 2 - 1.0 - logvar)
  return jnp.mean(kl.reshape(kl.shape[0], -1), axis=-1)


def vae_loss(x, x_hat, mu, logvar, mask: Optional[jnp.ndarray] = None, *,
             huber_delta: float = 1.0, recon_weight: float = 1.0, kl_weight: float = 1e-4):
  """`recon_weight * HuberLoss(x, x̂)` (PoseTalk eq. 1, mean over valid frames and features)
  `+ kl_weight * KL`.

  Returns:
    (loss scalar float32, {"loss_recon", "loss_kl", "rmse"}) (rmse over valid frames, in units
    of the normalised features, i.e. of the data standard deviation).
  """
  w = jnp.ones(x.shape[:2], jnp.float32) if mask is None else mask.astype(jnp.float32)
  denom = jnp.maximum(jnp.sum(w) * x.shape[-1], 1.0)
  recon = jnp.sum(huber(x_hat, x, huber_delta) * w[..., None]) / denom
  rmse = jnp.sqrt(jnp.sum(((x_hat - x.astype(jnp.float32)) ** 2) * w[..., None]) / denom)
  kl = jnp.mean(kl_divergence(mu, logvar))
  loss = recon_weight * recon + kl_weight * kl
  return loss, {"loss_recon": recon, "loss_kl": kl, "rmse": rmse}


def from_config(model_cfg, dtype="float32", *, inference: bool = False) -> PoseVAE:
  """`PoseVAE` from the pose_vae stage's `config.model` mapping (latent_tokens, latent_dim,
  width, depth, num_heads, mlp_mult, dropout, basis_degree, moment_skip) and a compute dtype
  name; `inference` sets dropout to 0."""
  m = dict(model_cfg)
  return PoseVAE(latent_tokens=int(m["latent_tokens"]), latent_dim=int(m["latent_dim"]),
                 width=int(m["width"]), depth=int(m["depth"]), num_heads=int(m["num_heads"]),
                 mlp_mult=int(m.get("mlp_mult", 4)),
                 dropout=0.0 if inference else float(m.get("dropout", 0.0)),
                 basis_degree=int(m.get("basis_degree", 3)),
                 moment_skip=bool(m.get("moment_skip", False)), dtype=jnp.dtype(dtype))
