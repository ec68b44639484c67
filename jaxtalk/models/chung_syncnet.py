"""The original SyncNet of Chung & Zisserman 2016 ("Out of time: automated lip sync in the
wild"), layer for layer as its public evaluation release (syncnet_python's model `S`), the network
behind the papers' LSE-C / LSE-D (PoseTalk's Sync_conf, GoHD Table 1). Inference only, for the
published weights (`syncnet_v2.model`) converted by `jaxtalk.pretrained.chung_syncnet`.

Lip stream: 5 frames of 224 x 224 face crops, BGR pixel values in 0..255 (as OpenCV reads
them; no normalisation) -> Conv3d 5x7x7 /(1,2,2) 96 -> BN -> ReLU -> max-pool 3x3 /2 ->
conv 5x5 /2 pad 1, 256 -> BN -> ReLU -> max-pool 3x3 /2 pad 1 -> three conv 3x3 pad 1, 256,
each BN -> ReLU -> max-pool 3x3 /2 -> conv 6x6, 512 -> BN -> ReLU -> flatten (512) ->
Linear 512 -> BN -> ReLU -> Linear 1024. (After the first layer the time axis has length 1, so
the later 1 x k x k Conv3d / MaxPool3d layers are the 2D layers used here.)

Audio stream: 13 MFCC x 20 steps (0.2 s at 100 Hz; `features.mfcc_windows`) -> conv 3x3 pad 1,
64 -> BN -> ReLU -> conv 3x3 pad 1, 192 -> BN -> ReLU -> max-pool 3x3 /(1,2) -> conv 3x3 pad 1
384, 256, 256 (each BN -> ReLU) -> max-pool 3x3 /2 -> conv 5x4, 512 -> BN -> ReLU -> flatten ->
Linear 512 -> BN -> ReLU -> Linear 1024.

BatchNorm uses running statistics (eps 1e-5), stored as frozen params. Embeddings are NOT
normalised: LSE-D is a Euclidean distance between 1024-d features (values around 6-8 on real
talking faces). Max-pool padding is -inf, as PyTorch's.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_EPS = 1e-5
FACE_SIZE = 224
MFCC_STEPS = 20
NUM_MFCC = 13
EMBED_DIM = 1024
# Lip stream after the 3D conv: (C_out, kernel, stride, padding, max-pool after: (k, stride, pad))
LIP_CONVS = ((256, 5, 2, 1, (3, 2, 1)), (256, 3, 1, 1, None), (256, 3, 1, 1, None),
             (256, 3, 1, 1, (3, 2, 0)), (512, 6, 1, 0, None))
# Audio stream: (C_out, kernel (h, w), padding, max-pool after: (k, stride (h, w)))
AUDIO_CONVS = ((64, (3, 3), 1, None), (192, (3, 3), 1, ((3, 3), (1, 2))),
               (384, (3, 3), 1, None), (256, (3, 3), 1, None), (256, (3, 3), 1, ((3, 3), (2, 2))),
               (512, (5, 4), 0, None))


class BatchNormInference(nn.Module):
  """BatchNorm with frozen running statistics over the last axis: (x - mean) / sqrt(var + eps)
  * scale + bias."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    mean = self.param("mean", nn.initializers.zeros, (c,))
    var = self.param("var", nn.initializers.ones, (c,))
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    return (x - mean) * (scale * jax.lax.rsqrt(var + BN_EPS)) + bias


def _pad(p: int) -> tuple:
  return ((p, p), (p, p))


class _Head(nn.Module):
  """Linear 512 -> BN -> ReLU -> Linear 1024 (`fc1`, `bn`, `fc2`)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(BatchNormInference(name="bn")(nn.Dense(512, name="fc1")(x)))
    return nn.Dense(EMBED_DIM, name="fc2")(x)


class LipStream(nn.Module):
  """faces `[B, 5, 224, 224, 3]` BGR 0..255 -> `[B, 1024]` (module docstring). Params: `conv0`
  (3D), `conv1..5` with `bn0..5`, `head`."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(96, (5, 7, 7), (1, 2, 2), padding="VALID", name="conv0")(x)[:, 0]
    x = nn.relu(BatchNormInference(name="bn0")(x))
    x = nn.max_pool(x, (3, 3), (2, 2))
    for i, (c, k, s, p, pool) in enumerate(LIP_CONVS, start=1):
      x = nn.Conv(c, (k, k), (s, s), padding=_pad(p), name=f"conv{i}")(x)
      x = nn.relu(BatchNormInference(name=f"bn{i}")(x))
      if pool is not None:
        x = nn.max_pool(x, (pool[0],) * 2, (pool[1],) * 2, padding=_pad(pool[2]))
    return _Head(name="head")(x.reshape(x.shape[0], -1))


class AudioStream(nn.Module):
  """mfcc `[B, 13, 20, 1]` -> `[B, 1024]` (module docstring). Params: `conv0..5`, `bn0..5`,
  `head`."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, (c, k, p, pool) in enumerate(AUDIO_CONVS):
      x = nn.Conv(c, k, padding=_pad(p), name=f"conv{i}")(x)
      x = nn.relu(BatchNormInference(name=f"bn{i}")(x))
      if pool is not None:
        x = nn.max_pool(x, pool[0], pool[1])
    return _Head(name="head")(x.reshape(x.shape[0], -1))


class ChungSyncNet(nn.Module):
  """SyncNet with the embedding interface of `jaxtalk.models.syncnet.SyncNet`, so
  `jaxtalk.evaluators.sync.SyncEvaluator` can use it (with `audio_features="mfcc"`)."""

  def setup(self):
    self.lip = LipStream()
    self.audio = AudioStream()

  def __call__(self, faces: jax.Array, mfcc: jax.Array) -> tuple[jax.Array, jax.Array]:
    return self.embed_video(faces), self.embed_audio(mfcc)

  def embed_video(self, faces: jax.Array) -> jax.Array:
    """faces: `[B, 5, 224, 224, 3]` float RGB in [-1, 1] (face crops) -> float32 `[B, 1024]`.

    Raises:
      ValueError: for another shape.
    """
    if faces.ndim != 5 or faces.shape[1:] != (5, FACE_SIZE, FACE_SIZE, 3):
      raise ValueError(f"ChungSyncNet.embed_video: faces {faces.shape}; expected "
                       f"[B, 5, {FACE_SIZE}, {FACE_SIZE}, 3]")
    x = (jnp.asarray(faces, jnp.float32)[..., ::-1] + 1.0) * 127.5     # BGR 0..255
    return self.lip(x)

  def embed_audio(self, mfcc: jax.Array) -> jax.Array:
    """mfcc: `[B, 13, 20]` float32 (MFCC coefficients x 100 Hz steps, `features.mfcc_windows`)
    -> float32 `[B, 1024]`.

    Raises:
      ValueError: for another shape.
    """
    if mfcc.ndim != 3 or mfcc.shape[1:] != (NUM_MFCC, MFCC_STEPS):
      raise ValueError(f"ChungSyncNet.embed_audio: mfcc {mfcc.shape}; expected "
                       f"[B, {NUM_MFCC}, {MFCC_STEPS}]")
    return self.audio(jnp.asarray(mfcc, jnp.float32)[..., None])
