"""GoHD's conformer-structured residual denoiser for head pose (and gaze) diffusion.

GoHD section 3.1, Fig. 3: a DiffWave-style (Kong et al. 2021) stack of conditional residual
layers; in each layer the dilated convolution of DiffWave becomes two conformer blocks whose
feed-forward is a dilated Conv1d (`layers.ConformerBlock(ff_dilation=...)`, dilation
`2 ** (i % dilation_cycle)` in layer i), so attention and dilated convolutions see long time
spans. The network predicts the noise ε of x_n, where x_0 = Δp = p_{1:T} − p_0 (eqs. 1-2), from
the diffusion step n and the per-frame condition c_t = a_t ⊕ p_0 (p_0-conditional) or a_t alone
(p_0-unconditional, `use_p0=False`); one network is trained for both by dropping p_0, and
`jaxtalk.diffusion.gohd_guidance` combines them (eq. 3). With `out_dim=2` the same network
generates gaze.

Per layer i, with h the residual stream `[B, T, C]`:

    y = Conformer_b(Conformer_a(h + Dense(step_embedding)))
    g = Dense_2C(y) + Dense_2C(cond)                     (DiffWave's conditioner)
    y = tanh(g[:C]) * sigmoid(g[C:])                     (gated activation)
    r, s = split(Dense_2C(y))
    h = (h + r) / sqrt(2);  skip += s

and the output is `Dense_out(relu(Dense_C(skip / sqrt(L))))`, its last layer zero-initialised
(DiffWave), so the untrained network predicts ε = 0.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from flax import linen as nn
import jax.numpy as jnp

from jaxtalk.models import audio_encoder
from jaxtalk.models import layers

Dtype = Any


class StepEmbedding(nn.Module):
  """DiffWave's diffusion-step embedding: 128-d sinusoid of n -> Dense(4C) swish x 2 -> `[B, 4C]`."""
  width: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, n):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    e = layers.sinusoidal_embedding(n, 128).astype(self.dtype)
    e = nn.swish(layers.Dense(4 * self.width, names=("embed", "mlp"), name="fc1", **kw)(e))
    return nn.swish(layers.Dense(4 * self.width, names=("mlp", "mlp"), name="fc2", **kw)(e))


class ResidualLayer(nn.Module):
  """One conditional residual layer (module docstring): returns `(h', skip)`, both `[B, T, C]`."""
  dilation: int
  num_heads: int = 4
  conv_kernel: int = 15
  ff_mult: int = 2
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h, step, cond, mask=None, *, train: bool = False):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    c = h.shape[-1]
    y = h + layers.Dense(c, names=("mlp", "embed"), name="step", **kw)(step)[:, None]
    for name in ("conformer_a", "conformer_b"):
      y = layers.ConformerBlock(self.num_heads, ff_mult=self.ff_mult,
                                conv_kernel=self.conv_kernel, ff_dilation=self.dilation, dropout=self.dropout, name=name,
                                **kw)(y, mask=mask, train=train)
    g = (layers.Dense(2 * c, names=("embed", "mlp"), name="mid", **kw)(y)
         + layers.Dense(2 * c, names=("embed", "mlp"), name="cond", **kw)(cond))
    gate, filt = jnp.split(g, 2, axis=-1)
    y = jnp.tanh(gate) * nn.sigmoid(filt)
    res, skip = jnp.split(layers.Dense(2 * c, names=("mlp", "embed"), name="out", **kw)(y), 2,
                          axis=-1)
    h = (h + res) / math.sqrt(2.0)
    if mask is not None:
      h = jnp.where(mask[..., None], h, 0)
      skip = jnp.where(mask[..., None], skip, 0)
    return h, skip


class ConformerPoseDenoiser(nn.Module):
  """ε_θ(x_n, c_{1:T}, n) of GoHD eq. 2 (module docstring).

  Attributes:
    out_dim: D of x (6 for pose: yaw, pitch, roll, tx, ty, scale, normalised; 2 for gaze).
    channels: C (256 in GoHD's release). num_layers: L residual layers (20 in the release).
    dilation_cycle: dilations 1, 2, 4, ... 2**(cycle-1), repeated.
    num_heads / conv_kernel / ff_mult / dropout: of the conformer blocks (the paper does not give
      the feed-forward expansion; 2 makes the 20 x 256 network 78M params, 4 makes it 120M).
    audio_input: "mel" (`mel [B, T, 16, 80]` through `audio_encoder.MelFrameEncoder`, the
      no-download default) or "features" (precomputed per-frame features `[B, T, A]`, e.g.
      wav2vec 2.0, through `audio_encoder.FeatureAudioEncoder`).
    audio_width: width of the audio features.
    dtype / param_dtype: compute / parameter dtypes (float32 or bfloat16).

  Args (call):
    x: `[B, T, out_dim]` noisy residual motion x_n (any T >= 1).
    n: `[B]` int32 diffusion steps in [0, N).
    audio: `[B, T, 16, 80]` log-mel windows or `[B, T, A]` features, frame-aligned with x.
    p0: `[B, out_dim]` the first (source) pose, normalised like x.
    use_p0: `[B]` bool: True = c_t = a_t ⊕ p_0 (p_0-conditional), False = a_t only (p_0 replaced
      by zeros and the flag; the p_0-unconditional model of eq. 3). Default: all True.
    mask: optional `[B, T]` bool, True = valid frame; padded frames do not affect valid outputs
      and their outputs are 0.
    train: dropout on/off.

  Returns:
    ε̂ `[B, T, out_dim]` float32.

  Raises:
    ValueError: shapes that do not match (named in the message) or an unknown `audio_input`.
  """
  out_dim: int = 6
  channels: int = 256
  num_layers: int = 20
  dilation_cycle: int = 10
  num_heads: int = 4
  conv_kernel: int = 15
  ff_mult: int = 2
  dropout: float = 0.0
  audio_input: str = "mel"
  audio_width: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, n, audio, p0, use_p0=None, mask=None, *, train: bool = False):
    b, t, d = x.shape
    if d != self.out_dim:
      raise ValueError(f"ConformerPoseDenoiser: x {x.shape} has {d} channels, out_dim "
                       f"{self.out_dim}")
    if audio.shape[:2] != (b, t) or p0.shape != (b, d) or n.shape != (b,):
      raise ValueError(f"ConformerPoseDenoiser: audio {audio.shape}, p0 {p0.shape}, n {n.shape} "
                       f"do not match x {x.shape}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.audio_input == "mel":
      a = audio_encoder.MelFrameEncoder(out_dim=self.audio_width, name="audio_encoder",
                                        **kw)(audio)
    elif self.audio_input == "features":
      a, _ = audio_encoder.FeatureAudioEncoder(self.audio_width, name="audio_encoder",
                                               **kw)(audio, mask)
    else:
      raise ValueError(f"ConformerPoseDenoiser: audio_input={self.audio_input!r}; expected "
                       "'mel' or 'features'")
    use = jnp.ones((b,), bool) if use_p0 is None else use_p0.astype(bool)
    p0_in = jnp.where(use[:, None], p0, 0).astype(self.dtype)
    src = jnp.concatenate([p0_in, use[:, None].astype(self.dtype)], axis=-1)
    cond = jnp.concatenate([a.astype(self.dtype),
                            jnp.broadcast_to(src[:, None], (b, t, d + 1))], axis=-1)
    cond = layers.Dense(self.channels, names=("mlp", "embed"), name="cond_proj", **kw)(cond)
    step = StepEmbedding(self.channels, name="step_embedding", **kw)(n)
    h = nn.relu(layers.Dense(self.channels, names=("mlp", "embed"), name="in_proj",
                             **kw)(x.astype(self.dtype)))
    if mask is not None:
      h = jnp.where(mask[..., None], h, 0)
    skip = jnp.zeros_like(h)
    for i in range(self.num_layers):
      h, s = ResidualLayer(2 ** (i % self.dilation_cycle), self.num_heads, self.conv_kernel,
                           self.ff_mult, self.dropout, name=f"layer{i}", **kw)(h, step, cond, mask,
                                                                 train=train)
      skip = skip + s
    y = skip / math.sqrt(self.num_layers)
    y = nn.relu(layers.Dense(self.channels, names=("embed", "mlp"), name="skip_proj", **kw)(y))
    eps = layers.Dense(d, names=("mlp", "embed"), zero_init=True, name="eps_out", **kw)(y)
    if mask is not None:
      eps = jnp.where(mask[..., None], eps, 0)
    return eps.astype(jnp.float32)


def from_config(model_cfg, dtype="float32", out_dim: Optional[int] = None
                ) -> ConformerPoseDenoiser:
  """`ConformerPoseDenoiser` from a `config.model` mapping (keys as the attributes; `out_dim`
  overrides the config's, e.g. 2 for gaze)."""
  m = dict(model_cfg)
  return ConformerPoseDenoiser(
      out_dim=int(out_dim if out_dim is not None else m.get("out_dim", 6)),
      channels=int(m["channels"]), num_layers=int(m["num_layers"]),
      dilation_cycle=int(m.get("dilation_cycle", 10)), num_heads=int(m.get("num_heads", 4)),
      conv_kernel=int(m.get("conv_kernel", 15)), ff_mult=int(m.get("ff_mult", 2)), dropout=float(m.get("dropout", 0.0)),
      audio_input=str(m.get("audio_input", "mel")), audio_width=int(m.get("audio_width", 128)),
      dtype=jnp.dtype(dtype))
