"""Latent denoiser of PoseTalk's Pose Latent Diffusion (PoseTalk "Pose Generation", eq. 2).

`PoseDenoiser` predicts the noise ε in `ε_θ(z_t, t, c)` where `z_t [B, N, D]` are noisy pose-VAE
latents, t the diffusion timestep and c = (text, audio). As in MLD it is a transformer encoder
with long skip connections (`transformer.SkipTransformer`) over one sequence:

  [ time token | text tokens (L) | audio tokens (T, one per video frame) | latent tokens (N) ]

* time token: MLP of the sinusoidal embedding of t;
* text tokens: the trainable text encoder over token ids (`TrainableTextEncoder`), or given
  tokens from a frozen CLIP (`text_tokens`), projected to the model width;
* audio tokens: `MelAudioEncoder` over the per-frame log-mel windows `mel [B, T, 16, 80]` (or
  `FeatureAudioEncoder` over precomputed wav2vec features `[B, T, C]`), projected, plus
  sinusoidal frame positions;
* each kind gets a learned type embedding; latent tokens a learned position embedding.
The output at the latent positions is projected back to D (zero-initialised head).

Condition dropout (classifier-free guidance): `drop_text [B]` / `drop_audio [B]` bool remove the
condition's tokens from the attention keys (mask False), so a dropped condition has exactly no
influence on the output; training drops each independently, and one model serves text+audio,
text-only, audio-only and unconditional sampling (PoseTalk Table 3).
"""

from __future__ import annotations

from typing import Any, Optional

from flax import linen as nn
import jax.numpy as jnp

from jaxtalk.models import audio_encoder as audio_lib
from jaxtalk.models import layers
from jaxtalk.models import text_encoder as text_lib
from jaxtalk.models import transformer

Dtype = Any


class PoseDenoiser(nn.Module):
  """ε-prediction transformer with long skips, text/audio/timestep conditions.

  Attributes:
    latent_tokens / latent_dim: N, D of the pose-VAE latent.
    width: transformer width. depth: blocks (odd, MLD long skips). num_heads, mlp_mult, dropout.
    text_vocab_size: > 0: a `TrainableTextEncoder` over ids of this vocabulary; 0: the caller
      passes `text_tokens` (e.g. from a frozen CLIP).
    text_width / text_depth: width and depth of the trainable text encoder.
    audio_input: "mel" (`MelAudioEncoder` over `[B, T, 16, 80]`) or "features"
      (`FeatureAudioEncoder` over `[B, T, C]`).
    audio_width: width of the audio encoder. audio_channels: its conv channels (mel input).
    dtype / param_dtype: compute / parameter dtypes; the predicted ε is float32.
  """
  latent_tokens: int = 1
  latent_dim: int = 256
  width: int = 256
  depth: int = 9
  num_heads: int = 4
  mlp_mult: int = 4
  dropout: float = 0.1
  text_vocab_size: int = 4096
  text_width: int = 256
  text_depth: int = 2
  audio_input: str = "mel"
  audio_width: int = 256
  audio_channels: int = 32
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.text_vocab_size > 0:
      self.text_encoder = text_lib.TrainableTextEncoder(
          self.text_vocab_size, self.text_width, self.text_depth, self.num_heads,
          self.dropout, **kw)
    if self.audio_input == "mel":
      self.audio_encoder = audio_lib.MelAudioEncoder(self.audio_width, self.audio_channels, **kw)
    elif self.audio_input == "features":
      self.audio_encoder = audio_lib.FeatureAudioEncoder(self.audio_width, **kw)
    else:
      raise ValueError(f"audio_input must be 'mel' or 'features', got {self.audio_input!r}")
    self.text_proj = layers.Dense(self.width, names=("mlp", "embed"), **kw)
    self.audio_proj = layers.Dense(self.width, names=("mlp", "embed"), **kw)
    self.time_fc1 = layers.Dense(self.width, names=("mlp", "embed"), **kw)
    self.time_fc2 = layers.Dense(self.width, names=("embed", "mlp"), **kw)
    self.latent_in = layers.Dense(self.width, names=("latent", "embed"), **kw)
    self.latent_out = layers.Dense(self.latent_dim, names=("embed", "latent"), zero_init=True,
                                   dtype=jnp.float32, param_dtype=self.param_dtype)
    init = lambda names: nn.with_logical_partitioning(nn.initializers.normal(0.02), names)
    self.latent_pos = self.param("latent_pos", init(("time", "embed")),
                                 (self.latent_tokens, self.width), self.param_dtype)
    self.type_embed = self.param("type_embed", init(("norm", "embed")), (4, self.width),
                                 self.param_dtype)
    self.backbone = transformer.SkipTransformer(self.depth, self.num_heads, self.mlp_mult,
                                                self.dropout, **kw)

  def encode_text(self, ids, mask, *, train: bool = False):
    """Trainable text encoder: `(tokens [B, L, Dt], pooled [B, Dt])`."""
    if self.text_vocab_size <= 0:
      raise ValueError("PoseDenoiser(text_vocab_size=0) has no text encoder; pass text_tokens")
    return self.text_encoder(ids, mask, train=train)

  def encode_audio(self, audio, mask=None, *, train: bool = False):
    """Audio encoder: `(tokens [B, T, Da], pooled [B, Da])`."""
    return self.audio_encoder(audio, mask, train=train)

  def denoise(self, z_t, t, text_tokens, text_mask, audio_tokens, audio_mask, *,
              train: bool = False):
    """ε_θ(z_t, t, c) from already-encoded (and already-masked) condition tokens.

    Args:
      z_t: `[B, N, D]` noisy latents. t: `[B]` int timesteps.
      text_tokens: `[B, L, Dt]` or None. text_mask: `[B, L]` bool (False = absent/dropped).
      audio_tokens: `[B, T, Da]` or None. audio_mask: `[B, T]` bool.

    Returns:
      (ε̂ `[B, N, D]` float32, aux {"h": latent outputs of the backbone}).
    """
    if z_t.ndim != 3 or z_t.shape[1:] != (self.latent_tokens, self.latent_dim):
      raise ValueError(f"PoseDenoiser: z_t must be [B, {self.latent_tokens}, "
                       f"{self.latent_dim}], got {z_t.shape}")
    b = z_t.shape[0]
    te = layers.sinusoidal_embedding(t.astype(jnp.float32), self.width).astype(self.dtype)
    time_tok = self.time_fc2(nn.silu(self.time_fc1(te)))[:, None]             # [B, 1, W]
    seq = [time_tok + self.type_embed[0].astype(self.dtype)]
    masks = [jnp.ones((b, 1), bool)]
    if text_tokens is not None:
      seq.append(self.text_proj(text_tokens.astype(self.dtype)) +
                 self.type_embed[1].astype(self.dtype))
      masks.append(text_mask.astype(bool))
    if audio_tokens is not None:
      ta = audio_tokens.shape[1]
      pos = layers.sinusoidal_embedding(jnp.arange(ta), self.width).astype(self.dtype)
      seq.append(self.audio_proj(audio_tokens.astype(self.dtype)) + pos +
                 self.type_embed[2].astype(self.dtype))
      masks.append(audio_mask.astype(bool))
    z = self.latent_in(z_t.astype(self.dtype)) + self.latent_pos.astype(self.dtype)
    seq.append(z + self.type_embed[3].astype(self.dtype))
    masks.append(jnp.ones((b, self.latent_tokens), bool))
    h, _ = self.backbone(jnp.concatenate(seq, axis=1), mask=jnp.concatenate(masks, axis=1),
                         train=train)
    h = h[:, -self.latent_tokens:]
    return self.latent_out(h.astype(jnp.float32)), {"h": h}

  def __call__(self, z_t, t, *, text_ids=None, text_tokens=None, text_mask=None, audio=None,
               audio_mask=None, drop_text=None, drop_audio=None, train: bool = False):
    """Encodes the conditions, applies dropout flags, predicts ε (PoseTalk eq. 2).

    Args:
      z_t: `[B, N, D]`. t: `[B]` int.
      text_ids: `[B, L]` int32 for the trainable text encoder, or text_tokens `[B, L, Dt]`
        (frozen CLIP); text_mask `[B, L]` bool. None: no text for the whole batch.
      audio: `[B, T, 16, 80]` mel windows (or `[B, T, C]` features); audio_mask `[B, T]` bool
        (default all valid). None: no audio for the whole batch.
      drop_text / drop_audio: `[B]` bool, True removes that condition for that example.

    Returns:
      (ε̂ `[B, N, D]` float32, aux {"text_pooled", "audio_pooled", ...}).
    """
    b = z_t.shape[0]
    aux = {}
    tmask = None
    if text_tokens is None and text_ids is not None:
      text_tokens, aux["text_pooled"] = self.encode_text(text_ids, text_mask, train=train)
    if text_tokens is not None:
      tmask = (jnp.ones(text_tokens.shape[:2], bool) if text_mask is None
               else text_mask.astype(bool))
      if drop_text is not None:
        tmask = tmask & ~drop_text.reshape(b, 1)
    amask = None
    audio_tokens = None
    if audio is not None:
      amask = (jnp.ones(audio.shape[:2], bool) if audio_mask is None
               else audio_mask.astype(bool))
      audio_tokens, aux["audio_pooled"] = self.encode_audio(audio, amask, train=train)
      if drop_audio is not None:
        amask = amask & ~drop_audio.reshape(b, 1)
    eps, a = self.denoise(z_t, t, text_tokens, tmask, audio_tokens, amask, train=train)
    aux.update(a)
    return eps, aux


def from_config(model_cfg, latent_tokens: int, latent_dim: int, dtype="float32",
                   text_vocab_size: Optional[int] = None) -> PoseDenoiser:
  """`PoseDenoiser` from a `config.model` mapping of the pld stage and the VAE latent shape.

  `text_vocab_size` = 0 when a CLIP folder provides text tokens (default: from the config, or 0
  if `clip_path` is set).
  """
  m = dict(model_cfg)
  if text_vocab_size is None:
    text_vocab_size = 0 if m.get("clip_path") else int(m.get("text_vocab_size", 4096))
  return PoseDenoiser(
      latent_tokens=int(latent_tokens), latent_dim=int(latent_dim), width=int(m["width"]),
      depth=int(m["depth"]), num_heads=int(m["num_heads"]), mlp_mult=int(m.get("mlp_mult", 4)),
      dropout=float(m.get("dropout", 0.0)), text_vocab_size=int(text_vocab_size),
      text_width=int(m.get("text_width", m["width"])), text_depth=int(m.get("text_depth", 2)),
      audio_input=str(m.get("audio_input", "mel")),
      audio_width=int(m.get("audio_width", m["width"])),
      audio_channels=int(m.get("audio_channels", 32)), dtype=jnp.dtype(dtype))
