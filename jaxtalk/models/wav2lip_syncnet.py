"""Wav2Lip's lip-sync expert, layer for layer (Prajwal et al. 2020, `SyncNet_color`), so that its
published weights (`lipsync_expert.pth`) load through `jaxtalk.pretrained.wav2lip_syncnet`.

Unlike `jaxtalk.models.syncnet` (jaxtalk's retrained expert, no BatchNorm, Dense head), this is
the original network, for inference with converted weights:

* every block is Conv2d (bias) -> BatchNorm (inference: running statistics, eps 1e-5)
  [-> + input] -> ReLU; the BatchNorm statistics are stored as frozen params
  (`mean`, `var`, `scale`, `bias`) because the network is only ever used frozen;
* face encoder: 17 blocks from the 15-channel input (5 RGB frames stacked, frame-major, BGR
  order as Wav2Lip reads them with OpenCV) of the lower half of 96 x 96 face crops
  (48 x 96) down to 1 x 1 x 512 (`FACE_BLOCKS`); audio encoder: 14 blocks from the 80 x 16
  log-mel window (mel bins x time steps) to 1 x 1 x 512 (`AUDIO_BLOCKS`); the heads are the
  convolutions of the table (3x3 valid, then 1x1), not Dense layers;
* embeddings: flattened, L2-normalised (non-negative after the last ReLU), cosine in [0, 1].

Padding is PyTorch's symmetric zero padding; kernels are HWIO (`[kh, kw, C_in, C_out]`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_EPS = 1e-5
FACE_SIZE = 96          # Wav2Lip's face crop side; the encoder sees its lower half
# (C_in, C_out, kernel (h, w), stride (h, w), padding, residual), in Wav2Lip's order.
FACE_BLOCKS = (
    (15, 32, (7, 7), (1, 1), 3, False),
    (32, 64, (5, 5), (1, 2), 1, False),
    (64, 64, (3, 3), (1, 1), 1, True),
    (64, 64, (3, 3), (1, 1), 1, True),
    (64, 128, (3, 3), (2, 2), 1, False),
    (128, 128, (3, 3), (1, 1), 1, True),
    (128, 128, (3, 3), (1, 1), 1, True),
    (128, 128, (3, 3), (1, 1), 1, True),
    (128, 256, (3, 3), (2, 2), 1, False),
    (256, 256, (3, 3), (1, 1), 1, True),
    (256, 256, (3, 3), (1, 1), 1, True),
    (256, 512, (3, 3), (2, 2), 1, False),
    (512, 512, (3, 3), (1, 1), 1, True),
    (512, 512, (3, 3), (1, 1), 1, True),
    (512, 512, (3, 3), (2, 2), 1, False),
    (512, 512, (3, 3), (1, 1), 0, False),
    (512, 512, (1, 1), (1, 1), 0, False),
)
AUDIO_BLOCKS = (
    (1, 32, (3, 3), (1, 1), 1, False),
    (32, 32, (3, 3), (1, 1), 1, True),
    (32, 32, (3, 3), (1, 1), 1, True),
    (32, 64, (3, 3), (3, 1), 1, False),
    (64, 64, (3, 3), (1, 1), 1, True),
    (64, 64, (3, 3), (1, 1), 1, True),
    (64, 128, (3, 3), (3, 3), 1, False),
    (128, 128, (3, 3), (1, 1), 1, True),
    (128, 128, (3, 3), (1, 1), 1, True),
    (128, 256, (3, 3), (3, 2), 1, False),
    (256, 256, (3, 3), (1, 1), 1, True),
    (256, 256, (3, 3), (1, 1), 1, True),
    (256, 512, (3, 3), (1, 1), 0, False),
    (512, 512, (1, 1), (1, 1), 0, False),
)


class ConvBNReLU(nn.Module):
  """Wav2Lip's `Conv2d` block: conv (bias) -> inference BatchNorm [-> + x] -> ReLU.

  Attributes:
    features, kernel, strides, padding (symmetric, px), residual: as in `FACE_BLOCKS`.
  """
  features: int
  kernel: tuple
  strides: tuple
  padding: int
  residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = self.padding
    y = nn.Conv(self.features, tuple(self.kernel), tuple(self.strides), padding=((p, p), (p, p)),
                name="conv")(x)
    c = self.features
    mean = self.param("mean", nn.initializers.zeros, (c,))
    var = self.param("var", nn.initializers.ones, (c,))
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    y = (y - mean) * (scale * jax.lax.rsqrt(var + BN_EPS)) + bias
    if self.residual:
      y = y + x
    return nn.relu(y)


def _blocks(table) -> list:
  return [ConvBNReLU(cout, k, s, p, r) for _, cout, k, s, p, r in table]


def _encode(blocks, x) -> jax.Array:
  for block in blocks:
    x = block(x)
  x = x.reshape(x.shape[0], -1)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Wav2LipSyncNet(nn.Module):
  """`SyncNet_color` (module docstring), with the embedding interface of
  `jaxtalk.models.syncnet.SyncNet` so `jaxtalk.evaluators.sync.SyncEvaluator` can use it.
  Params: `face_<i>` / `audio_<i>` (i = row of `FACE_BLOCKS` / `AUDIO_BLOCKS`), each with
  `conv` {kernel, bias} and mean, var, scale, bias."""

  def setup(self):
    self.face = _blocks(FACE_BLOCKS)
    self.audio = _blocks(AUDIO_BLOCKS)

  def __call__(self, faces: jax.Array, mel: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(video `[B, 512]`, audio `[B, 512]`) embeddings (see `embed_video` / `embed_audio`)."""
    return self.embed_video(faces), self.embed_audio(mel)

  def embed_video(self, faces: jax.Array) -> jax.Array:
    """faces: `[B, 5, 96, 96, 3]` float RGB in [-1, 1] (face crops, e.g. through
    `syncnet.prepare_faces(frames, 96, face_box)`) -> `[B, 512]` float32, unit L2 norm.

    Raises:
      ValueError: for another shape.
    """
    if faces.ndim != 5 or faces.shape[1:] != (5, FACE_SIZE, FACE_SIZE, 3):
      raise ValueError(f"Wav2LipSyncNet.embed_video: faces {faces.shape}; expected "
                       f"[B, 5, {FACE_SIZE}, {FACE_SIZE}, 3]")
    x = (jnp.asarray(faces, jnp.float32)[..., ::-1] + 1.0) * 0.5      # BGR in [0, 1]
    x = x[:, :, FACE_SIZE // 2:]                                       # lower half
    x = jnp.transpose(x, (0, 2, 3, 1, 4)).reshape(x.shape[0], FACE_SIZE // 2, FACE_SIZE, 15)
    return _encode(self.face, x)

  def embed_audio(self, mel: jax.Array) -> jax.Array:
    """mel: `[B, 16, 80]` float32 Wav2Lip log-mel windows (time steps x mel bins, as
    `features.audio.mel_windows` gives them) -> `[B, 512]` float32, unit L2 norm.

    Raises:
      ValueError: for another shape.
    """
    if mel.ndim != 3 or mel.shape[1:] != (16, 80):
      raise ValueError(f"Wav2LipSyncNet.embed_audio: mel {mel.shape}; expected [B, 16, 80]")
    x = jnp.transpose(jnp.asarray(mel, jnp.float32), (0, 2, 1))[..., None]   # [B, 80, 16, 1]
    return _encode(self.audio, x)
