"""GoHD's expression predictor (section 3.2, Fig. 5; supplementary B.2) and its discriminators.

Stage 1 (`ExpressionMapper`, E_map, eq. 5): per frame,

    ẽ_t = MLP(Φ_a(a_t) ⊕ e_0 ⊕ f_t)

with a_t the audio around frame t (a log-mel window), e_0 the source's expression coefficients and
f_t the frame's eye-motion features (ground truth in stage 1, generated in stage 2), so the MLP
can only learn the lips from the audio: the eyes and brows are given. Φ_a is the audio encoder of
the lip-sync expert (GoHD: Wav2Lip's; jaxtalk: the SyncNet expert's audio encoder, frozen, whose
embeddings come in as `audio_input="features"`), or, when no expert is given, a trainable
`audio_encoder.MelFrameEncoder` (`audio_input="mel"`, the no-download fallback).

Stage 2 (`EyeMotionGenerator`, G_lstm, eqs. 6-7): ω_0 = Φ_e(f_0) (an MLP embedding of the
source's eye features), then an LSTM over the frames

    (h_t, Δω_t) = LSTM(h_{t-1}, Φ_a(a_t) ⊕ ω_0 ⊕ e_0 ⊕ z_t),    h_0 = 0
    f̂_t = MLP(ω_0 + Δω_t)

with z_t ~ N(0, I) per frame (the "latent vector concatenated at each step"). Δω_t is a Dense
layer of h_t, zero-initialised, so an untrained generator outputs MLP(ω_0) for every frame (the
residual form of eq. 7). Eq. 8 chains it with the frozen E_map: ê = E_map(a, e_0, f̂).

Discriminators (supplementary B.2, all least-squares, Mao et al. 2017): `EyeDiscriminator`
(D_eye: a transformer over the per-frame audio features ⊕ the eye and brow landmarks l^{17:26} ⊕
l^{36:47}), `TemporalPatchDiscriminator` (PatchGAN over time, Isola et al. 2017: D_te on
eye-feature sequences, D_tf on coefficient sequences).

The paper does not give layer sizes; the defaults (`from_config`, `configs/gohd/exp_lip.py`) are
jaxtalk's choices and say so.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.models import audio_encoder
from jaxtalk.models import layers
from jaxtalk.models import transformer

Dtype = Any
NUM_COEFFS = 64     # GoHD's e in R^64.
NUM_EYE = 21        # GoHD's f in R^21 (blink ratio + 10 brow points x (x, y)).


def _mlp(x, widths: Sequence[int], out_dim: int, name: str, kw, zero_out: bool = False):
  """LeakyReLU(0.2) MLP: Dense(widths[0]) ... Dense(out_dim) (no activation on the output)."""
  for i, w in enumerate(widths):
    x = nn.leaky_relu(layers.Dense(w, names=("embed", "mlp") if i == 0 else ("mlp", "mlp"),
                                   name=f"{name}_fc{i}", **kw)(x), 0.2)
  return layers.Dense(out_dim, names=("mlp", "embed"), zero_init=zero_out, name=f"{name}_out",
                      **kw)(x)


def _broadcast_time(v, t: int):
  """`[B, D]` -> `[B, T, D]`."""
  return jnp.broadcast_to(v[:, None], (v.shape[0], t, v.shape[-1]))


class AudioFeatures(nn.Module):
  """Φ_a: per-frame audio features `[B, T, A]`.

  Attributes:
    audio_input: "mel" (`[B, T, 16, 80]` log-mel windows through a trainable
      `audio_encoder.MelFrameEncoder`) or "features" (precomputed `[B, T, A]`, e.g. the frozen
      SyncNet expert's audio embeddings; passed through unchanged, as float32).
    width: A for "mel".

  Raises:
    ValueError: an unknown `audio_input` or an input of the wrong rank.
  """
  audio_input: str = "mel"
  width: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, audio):
    if self.audio_input == "mel":
      return audio_encoder.MelFrameEncoder(out_dim=self.width, name="mel_encoder",
                                           dtype=self.dtype, param_dtype=self.param_dtype)(audio)
    if self.audio_input == "features":
      if audio.ndim != 3:
        raise ValueError(f"AudioFeatures: expected features [B, T, A], got {audio.shape}")
      return audio.astype(self.dtype)
    raise ValueError(f"AudioFeatures: audio_input={self.audio_input!r}; expected 'mel' or "
                     "'features'")


class ExpressionMapper(nn.Module):
  """E_map of GoHD eq. 5: ẽ_t = MLP(Φ_a(a_t) ⊕ e_0 ⊕ f_t); Φ_a is a separate module
  (`AudioFeatures`, its own params), so stage 2 can run it frozen.

  Attributes:
    num_coeffs / num_eye: sizes of e (64) and f (21).
    hidden: MLP widths.
    dtype / param_dtype: compute / parameter dtypes (float32 or bfloat16).

  Args (call):
    a: `[B, T, A]` audio features Φ_a(a_t).
    e0: `[B, num_coeffs]` the source's coefficients (raw basis units).
    f: `[B, T, num_eye]` eye-motion features of each frame (raw units).
    mask: optional `[B, T]` bool; padded frames output 0.

  Returns:
    ẽ `[B, T, num_coeffs]` float32.

  Raises:
    ValueError: shapes that do not match (named in the message).
  """
  num_coeffs: int = NUM_COEFFS
  num_eye: int = NUM_EYE
  hidden: Sequence[int] = (512, 512, 512)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, a, e0, f, mask=None):
    b, t = f.shape[:2]
    if (a.shape[:2] != (b, t) or a.ndim != 3 or e0.shape != (b, self.num_coeffs)
        or f.shape[-1] != self.num_eye):
      raise ValueError(f"ExpressionMapper: a {a.shape}, e0 {e0.shape}, f {f.shape}; expected "
                       f"[B, T, A], [B, {self.num_coeffs}], [B, T, {self.num_eye}]")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = jnp.concatenate([a.astype(self.dtype), _broadcast_time(e0.astype(self.dtype), t),
                         f.astype(self.dtype)], -1)
    e = _mlp(x, self.hidden, self.num_coeffs, "mlp", kw).astype(jnp.float32)
    return e if mask is None else jnp.where(mask[..., None], e, 0.0)


class EyeMotionGenerator(nn.Module):
  """G_lstm of GoHD eqs. 6-7 (module docstring).

  Attributes:
    num_coeffs / num_eye: sizes of e and f.
    omega_dim: size of ω (= the LSTM's hidden size, as h_0 "has the shape of ω_0").
    noise_dim: size of z_t. embed_hidden / out_hidden: widths of Φ_e and of the output MLP.
    dtype / param_dtype: compute / parameter dtypes.

  Args (call):
    a: `[B, T, A]` audio features Φ_a(a_t) (from the frozen stage-1 encoder).
    f0: `[B, num_eye]` the source's eye features. e0: `[B, num_coeffs]`.
    z: `[B, T, noise_dim]` standard-normal noise.

  Returns:
    (f̂ `[B, T, num_eye]` float32, ω `[B, T, omega_dim]` float32 = ω_0 + Δω_t).

  Raises:
    ValueError: shapes that do not match.
  """
  num_coeffs: int = NUM_COEFFS
  num_eye: int = NUM_EYE
  omega_dim: int = 256
  noise_dim: int = 16
  embed_hidden: Sequence[int] = (256,)
  out_hidden: Sequence[int] = (256,)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, a, f0, e0, z):
    b, t = a.shape[:2]
    if (f0.shape != (b, self.num_eye) or e0.shape != (b, self.num_coeffs)
        or z.shape != (b, t, self.noise_dim)):
      raise ValueError(f"EyeMotionGenerator: a {a.shape}, f0 {f0.shape}, e0 {e0.shape}, z "
                       f"{z.shape} do not match")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    omega0 = _mlp(f0.astype(self.dtype), self.embed_hidden, self.omega_dim, "phi_e", kw)
    x = jnp.concatenate([a.astype(self.dtype), _broadcast_time(omega0, t),
                         _broadcast_time(e0.astype(self.dtype), t), z.astype(self.dtype)], -1)
    cell = nn.OptimizedLSTMCell(self.omega_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                                name="lstm_cell")
    h = nn.RNN(cell, name="lstm")(x)   # zero initial carry: h_0 = 0.
    d_omega = layers.Dense(self.omega_dim, names=("mlp", "embed"), zero_init=True,
                           name="delta_omega", **kw)(h)
    omega = omega0[:, None] + d_omega
    f_hat = _mlp(omega, self.out_hidden, self.num_eye, "out_mlp", kw)
    return f_hat.astype(jnp.float32), omega.astype(jnp.float32)


class EyeDiscriminator(nn.Module):
  """D_eye: a transformer over per-frame audio features ⊕ eye and brow landmarks.

  Attributes:
    width / depth / num_heads: of the transformer (`transformer.TransformerStack`).

  Args (call):
    a: `[B, T, A]` audio features. eye_landmarks: `[B, T, P]` flattened eye + brow landmarks
      (GoHD: l^{17:26} ⊕ l^{36:47}, 22 points). mask: optional `[B, T]` bool.

  Returns:
    `[B, T]` float32 per-frame scores (least-squares target 1 = real, 0 = generated).
  """
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, a, eye_landmarks, mask=None):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = jnp.concatenate([a, eye_landmarks], -1).astype(self.dtype)
    x = layers.Dense(self.width, names=("mlp", "embed"), name="in_proj", **kw)(x)
    x = x + layers.sinusoidal_embedding(jnp.arange(x.shape[1]), self.width).astype(self.dtype)
    x = transformer.TransformerStack(self.depth, self.num_heads, name="transformer", **kw)(
        x, mask=mask)
    return layers.Dense(1, names=("embed", "mlp"), name="score", **kw)(x)[..., 0].astype(
        jnp.float32)


class TemporalPatchDiscriminator(nn.Module):
  """PatchGAN over time (D_te on f sequences, D_tf on e sequences): 1-D convolutions, kernel 4,
  stride 2 then 1, LeakyReLU(0.2), no normalisation on the first layer (Isola et al. 2017).

  Attributes:
    channels: widths of the strided layers; a stride-1 layer and a 1-channel output follow.

  Args (call):
    x: `[B, T, D]` sequences.

  Returns:
    `[B, T', 1]` float32 patch scores, T' ≈ T / 2**len(channels).
  """
  channels: Sequence[int] = (64, 128, 256)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, ndim=1)
    y = x.astype(self.dtype)
    for i, c in enumerate(self.channels):
      y = layers.Conv(c, 4, strides=2, name=f"conv{i}", **kw)(y)
      if i > 0:
        y = layers.LayerNorm(name=f"ln{i}", dtype=self.dtype, param_dtype=self.param_dtype)(y)
      y = nn.leaky_relu(y, 0.2)
    y = nn.leaky_relu(layers.Conv(self.channels[-1], 4, name="conv_s1", **kw)(y), 0.2)
    return layers.Conv(1, 4, name="score", **kw)(y).astype(jnp.float32)


def _tuple(v, default) -> tuple:
  return tuple(int(x) for x in (v if v is not None else default))


def audio_from_config(model_cfg, dtype="float32", audio_input: Optional[str] = None
                      ) -> AudioFeatures:
  """Φ_a from `config.model` (keys audio_input, audio_width; `audio_input` overrides it:
  "features" when the frozen SyncNet expert encodes the audio)."""
  m = dict(model_cfg)
  return AudioFeatures(str(audio_input or m.get("audio_input", "mel")),
                       int(m.get("audio_width", 128)), dtype=jnp.dtype(dtype))


def mapper_from_config(model_cfg, dtype="float32") -> ExpressionMapper:
  """`ExpressionMapper` from `config.model` (key hidden)."""
  return ExpressionMapper(hidden=_tuple(dict(model_cfg).get("hidden"), (512, 512, 512)),
                          dtype=jnp.dtype(dtype))


def generator_from_config(model_cfg, dtype="float32") -> EyeMotionGenerator:
  """`EyeMotionGenerator` from `config.model` (keys omega_dim, noise_dim, embed_hidden,
  out_hidden)."""
  m = dict(model_cfg)
  return EyeMotionGenerator(omega_dim=int(m.get("omega_dim", 256)),
                            noise_dim=int(m.get("noise_dim", 16)),
                            embed_hidden=_tuple(m.get("embed_hidden"), (256,)),
                            out_hidden=_tuple(m.get("out_hidden"), (256,)),
                            dtype=jnp.dtype(dtype))


def discriminators_from_config(disc_cfg, dtype="float32") -> dict:
  """{"eye": D_eye, "te": D_te, "tf": D_tf} from `config.disc` (keys width, depth, num_heads,
  channels)."""
  d = dict(disc_cfg)
  kw = dict(dtype=jnp.dtype(dtype))
  chans = _tuple(d.get("channels"), (64, 128, 256))
  return {"eye": EyeDiscriminator(int(d.get("width", 128)), int(d.get("depth", 2)),
                                  int(d.get("num_heads", 4)), **kw),
          "te": TemporalPatchDiscriminator(chans, **kw),
          "tf": TemporalPatchDiscriminator(chans, **kw)}


def sample_noise(rng: jax.Array, batch: int, frames: int, noise_dim: int) -> jax.Array:
  """z `[B, T, noise_dim]` ~ N(0, I) float32 (eq. 6's latent, one vector per frame)."""
  return jax.random.normal(rng, (batch, frames, noise_dim), jnp.float32)
