"""The lip-sync expert (Wav2Lip's SyncNet_color, retrained by jaxtalk): PoseTalk eqs. 7-8.

A visual encoder embeds 5 consecutive lower-half face crops stacked on channels; an audio encoder
embeds the matching 16 x 80 log-mel window (0.2 s, the window of the middle frame); the two
embeddings are non-negative (final ReLU) and L2-normalised, so their cosine similarity C (eq. 7)
lies in [0, 1] and is read as the probability that the pair is in sync. The expert is trained
with binary cross-entropy on C over in-sync and shifted pairs (`jaxtalk/tasks/syncnet.py`); the
generator stages then minimise `sync_loss` = -mean log C (eq. 8) through the frozen expert.

Differences from Wav2Lip (documented on purpose): no BatchNorm (jaxtalk's trainer keeps no
mutable batch statistics, and the expert is used frozen inside other losses): `norm="group"`
(GroupNorm) or `norm="none"`; per-sample normalisation of the first layers removes the absolute
loudness of a mel window and the absolute darkness of an open mouth, which are the sync cues, so
the tiny config uses "none";
the last 3x3-valid/1x1 convolutions are replaced by flatten + Dense, which makes the trunk work at
any crop size (Wav2Lip: 96 px faces -> 48 x 96 lower halves); optionally (`motion_gain` > 0, the
tiny config) the visual encoder sees the window's mean frame plus each frame's difference from it
scaled by `motion_gain`. That is an invertible linear re-parametrisation of the same 5 frames
(the first convolution could compute it), but it amplifies the lip motion against the static
face: on the 8 real clips of ../shared/data it moves the end of the BCE plateau from 150 to
over 450 steps (seed-dependent) to 75-150 (4 seeds; configs/syncnet.py).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

NUM_FRAMES = 5        # frames per visual window (t .. t+4)
MEL_STEPS = 16        # mel frames per window (80 mel frames/s -> 0.2 s)
NUM_MELS = 80
EPS = 1e-7            # eq. 7


def _conv_init():
  return nn.with_logical_partitioning(
    nn.initializers.kaiming_normal(), ("kernel", "kernel", "conv_in", "conv_out"))


class ConvNormAct(nn.Module):
  """Conv -> GroupNorm (f32) [-> + residual] -> ReLU (Wav2Lip's `Conv2d` block).

  Attributes:
    features: output channels.
    kernel: kernel size (h, w).
    strides: (sh, sw).
    residual: add the input before the ReLU (requires stride 1 and equal channels).
    norm: "group" (GroupNorm, gcd(8, C) groups) or "none".
    dtype: compute dtype.
  """

  features: int
  kernel: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  residual: bool = False
  norm: str = "group"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.Conv(self.features, tuple(self.kernel), strides=tuple(self.strides), padding="SAME",
                dtype=self.dtype, param_dtype=jnp.float32, kernel_init=_conv_init(),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                name="conv")(x)
    if self.norm not in ("group", "none"):
      raise ValueError(f"ConvNormAct norm={self.norm!r}; expected 'group' or 'none'")
    if self.norm == "none":
      y = y.astype(jnp.float32)
      if self.residual:
        y = y + x.astype(jnp.float32)
      return nn.relu(y).astype(self.dtype)
    y = nn.GroupNorm(
      num_groups=math.gcd(8, self.features), dtype=jnp.float32, param_dtype=jnp.float32,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
      name="norm")(y.astype(jnp.float32))
    if self.residual:
      y = y + x.astype(jnp.float32)
    return nn.relu(y).astype(self.dtype)


def _embed_head(x: jax.Array, dim: int, dtype, name: str) -> jax.Array:
  x = x.reshape((x.shape[0], -1))
  x = nn.Dense(dim, dtype=dtype, param_dtype=jnp.float32,
               kernel_init=nn.with_logical_partitioning(
                 nn.initializers.lecun_normal(), ("embed", "mlp")),
               bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
               name=name)(x)
  return nn.relu(x.astype(jnp.float32))


class FaceEncoder(nn.Module):
  """Visual encoder: `[B, 5, h, w, 3]` lower-half crops -> `[B, D]` non-negative embedding.

  Attributes:
    widths: channels of (7x7 stem, 5x5 stride-(1,2) stage, then one stride-2 stage per entry).
    num_res: residual blocks after each entry of `widths`.
    embed_dim: D.
    norm: see `ConvNormAct`.
    motion_gain: 0 = Wav2Lip's input (the 5 frames stacked on channels, 15 channels); > 0 = the
      window's mean frame and `motion_gain * (frame - mean)` for each frame (6 images stacked on
      channels, 18 channels; see the module docstring).
    dtype: compute dtype.
  """

  widths: Sequence[int] = (32, 64, 128, 256, 512, 512)
  num_res: Sequence[int] = (0, 2, 3, 2, 2, 0)
  embed_dim: int = 512
  norm: str = "group"
  motion_gain: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, faces: jax.Array) -> jax.Array:
    if self.motion_gain:
      mean = jnp.mean(faces.astype(jnp.float32), axis=1, keepdims=True)
      faces = jnp.concatenate([mean, self.motion_gain * (faces - mean)], axis=1)
    b, n, h, w, c = faces.shape
    x = jnp.transpose(faces, (0, 2, 3, 1, 4)).reshape(b, h, w, n * c).astype(self.dtype)
    for i, (width, reps) in enumerate(zip(self.widths, self.num_res)):
      kernel, strides = ((7, 7), (1, 1)) if i == 0 else ((5, 5), (1, 2)) if i == 1 else \
        ((3, 3), (2, 2))
      x = ConvNormAct(width, kernel, strides, norm=self.norm, dtype=self.dtype,
                      name=f"stage{i}")(x)
      for r in range(reps):
        x = ConvNormAct(width, residual=True, norm=self.norm, dtype=self.dtype,
                        name=f"stage{i}_res{r}")(x)
    return _embed_head(x, self.embed_dim, self.dtype, "embed")


class AudioEncoder(nn.Module):
  """Audio encoder: `[B, 16, 80]` log-mel window -> `[B, D]` non-negative embedding.

  The window is laid out as Wav2Lip's 80 (mel) x 16 (time) single-channel image.

  Attributes:
    widths: channels of the 4 stages (strides (1,1), (3,1), (3,3), (3,2) over (mel, time)).
    num_res: residual blocks per stage.
    embed_dim: D.
    norm: see `ConvNormAct`.
    dtype: compute dtype.
  """

  widths: Sequence[int] = (32, 64, 128, 256)
  num_res: Sequence[int] = (2, 2, 2, 1)
  embed_dim: int = 512
  norm: str = "group"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, mel: jax.Array) -> jax.Array:
    x = jnp.transpose(mel, (0, 2, 1))[..., None].astype(self.dtype)   # [B, 80, 16, 1]
    strides = ((1, 1), (3, 1), (3, 3), (3, 2))
    for i, (width, reps) in enumerate(zip(self.widths, self.num_res)):
      x = ConvNormAct(width, (3, 3), strides[i], norm=self.norm, dtype=self.dtype,
                      name=f"stage{i}")(x)
      for r in range(reps):
        x = ConvNormAct(width, residual=True, norm=self.norm, dtype=self.dtype,
                        name=f"stage{i}_res{r}")(x)
    return _embed_head(x, self.embed_dim, self.dtype, "embed")


def cosine_similarity(v: jax.Array, a: jax.Array) -> jax.Array:
  """PoseTalk eq. 7: `v.a / max(|v| |a|, 1e-7)` over the last axis, float32."""
  v, a = v.astype(jnp.float32), a.astype(jnp.float32)
  num = jnp.sum(v * a, axis=-1)
  den = jnp.linalg.norm(v, axis=-1) * jnp.linalg.norm(a, axis=-1)
  return num / jnp.maximum(den, EPS)


class SyncNet(nn.Module):
  """Lip-sync expert.

  Attributes:
    face_widths, face_res: `FaceEncoder` layout.
    audio_widths, audio_res: `AudioEncoder` layout.
    embed_dim: D of both embeddings.
    norm: "group" or "none" (see `ConvNormAct`).
    motion_gain: visual input layout (see `FaceEncoder`).
    image_size: if set, `embed_video` first turns any input crop into this face size with
      `prepare_faces(faces, image_size, face_box)`, so every caller feeds the expert exactly
      what it was trained on (set by `from_config` from the stage config).
    face_box: (x0, y0, x1, y1) in [0, 1] of the crop used as the face box (see `prepare_faces`).
    dtype: compute dtype (embeddings and similarities are float32).
  """

  face_widths: Sequence[int] = (32, 64, 128, 256, 512, 512)
  face_res: Sequence[int] = (0, 2, 3, 2, 2, 0)
  audio_widths: Sequence[int] = (32, 64, 128, 256)
  audio_res: Sequence[int] = (2, 2, 2, 1)
  embed_dim: int = 512
  norm: str = "group"
  motion_gain: float = 0.0
  image_size: Optional[int] = None
  face_box: Optional[tuple] = None
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.face_encoder = FaceEncoder(self.face_widths, self.face_res, self.embed_dim, self.norm,
                                    self.motion_gain, self.dtype)
    self.audio_encoder = AudioEncoder(self.audio_widths, self.audio_res, self.embed_dim,
                                      self.norm, self.dtype)

  def embed_video(self, faces: jax.Array) -> jax.Array:
    """faces `[B, 5, H, W, 3]` in [-1, 1] (aligned crops, any size when `image_size` is set; the
    LOWER HALF of the face image, rows H//2.., is used) -> float32 `[B, D]` L2-normalised
    (non-negative) embeddings.

    Raises:
      ValueError: if not 5 RGB frames.
    """
    if faces.ndim != 5 or faces.shape[1] != NUM_FRAMES or faces.shape[-1] != 3:
      raise ValueError(f"SyncNet faces: expected [B, {NUM_FRAMES}, H, W, 3], got {faces.shape}")
    if self.face_box is not None or (
        self.image_size and faces.shape[2:4] != (self.image_size, self.image_size)):
      faces = prepare_faces(faces, self.image_size or faces.shape[2], self.face_box)
    lower = faces[:, :, faces.shape[2] // 2:]
    return _normalize(self.face_encoder(lower))

  def embed_audio(self, mel: jax.Array) -> jax.Array:
    """mel `[B, 16, 80]` log-mel window -> float32 `[B, D]` L2-normalised embeddings."""
    if mel.ndim != 3 or mel.shape[1:] != (MEL_STEPS, NUM_MELS):
      raise ValueError(f"SyncNet mel: expected [B, {MEL_STEPS}, {NUM_MELS}], got {mel.shape}")
    return _normalize(self.audio_encoder(mel))

  def __call__(self, faces: jax.Array, mel: jax.Array, *, train: bool = False
               ) -> tuple[jax.Array, dict]:
    """Returns (C [B] float32 in [0, 1] (eq. 7), aux {"video_emb", "audio_emb"} [B, D])."""
    del train  # No dropout / batch statistics.
    v, a = self.embed_video(faces), self.embed_audio(mel)
    return cosine_similarity(v, a), {"video_emb": v, "audio_emb": a}


def _normalize(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), EPS)


def bce_loss(sim: jax.Array, label: jax.Array) -> jax.Array:
  """Per-pair binary cross-entropy of C against label (1 = in sync), f32; C clipped to [eps, 1-eps]
  (Wav2Lip's expert loss)."""
  p = jnp.clip(sim.astype(jnp.float32), EPS, 1.0 - EPS)
  y = label.astype(jnp.float32)
  return -(y * jnp.log(p) + (1.0 - y) * jnp.log1p(-p))


def sync_loss(sim: jax.Array, mask=None) -> jax.Array:
  """PoseTalk eq. 8: `-mean_i log C_i` over in-sync (generated) pairs, f32 scalar.

  Args:
    sim: `[N]` cosine similarities from a FROZEN expert on generated mouths + their audio.
    mask: optional `[N]` weights (False = padding pair).
  """
  nll = -jnp.log(jnp.clip(sim.astype(jnp.float32), EPS, 1.0))
  if mask is None:
    return jnp.mean(nll)
  w = jnp.asarray(mask, jnp.float32)
  return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)


# The face box inside jaxtalk's aligned crops: the data pipeline's crop is 1.6x the face size,
# centred on the face (`jaxtalk.features.face.smoothed_crop_boxes`), so the face is the central
# 1/1.6.
ALIGNED_FACE_BOX = (0.1875, 0.1875, 0.8125, 0.8125)


def prepare_faces(frames: jax.Array, size: int, face_box=None) -> jax.Array:
  """Turns aligned crops `[..., H, W, 3]` into the expert's `size` x `size` face images.

  Args:
    frames: `[..., H, W, 3]` in [-1, 1].
    size: output side.
    face_box: optional (x0, y0, x1, y1) in [0, 1] of the crop to treat as the face box (the
      region Wav2Lip's detector box would give; e.g. `ALIGNED_FACE_BOX`); cut out with the
      differentiable bilinear `jaxtalk.losses.crop_and_resize`. None: the whole crop, resized
      (linear, antialiased); identity when already `size` x `size`.

  Returns:
    float32 `[..., size, size, 3]`; differentiable w.r.t. `frames`.
  """
  if face_box is not None:
    from jaxtalk import losses  # pylint: disable=g-import-not-at-top
    boxes = jnp.broadcast_to(jnp.asarray(face_box, jnp.float32), frames.shape[:-3] + (4,))
    return losses.crop_and_resize(frames, boxes, size)
  if frames.shape[-3:-1] == (size, size):
    return frames
  shape = frames.shape[:-3] + (size, size, frames.shape[-1])
  return jax.image.resize(frames.astype(jnp.float32), shape, method="linear", antialias=True)


def frame_windows(frames: jax.Array, starts: jax.Array) -> jax.Array:
  """Gathers 5-frame windows: frames `[B, T, H, W, C]`, starts `[B, K]` int -> `[B, K, 5, H, W, C]`
  (frames starts..starts+4; the matching mel window is `mel[:, starts + 2]`)."""
  idx = starts[..., None] + jnp.arange(NUM_FRAMES)                 # [B, K, 5]
  return jax.vmap(lambda f, i: f[i])(frames, idx)


def expert_sync_loss(model: SyncNet, params, frames: jax.Array, mel: jax.Array, *,
                     image_size: Optional[int] = None, face_box=None, mask=None,
                     stride: int = 1) -> tuple[jax.Array, dict]:
  """PoseTalk eq. 8 over every 5-frame window of generated clips, through a frozen expert.

  Args:
    model, params: the trained expert (`params` = the syncnet stage's params; not updated:
      gradients flow only to `frames`).
    frames: `[B, T, H, W, 3]` generated face crops in [-1, 1] (T >= 5), aligned like the
      expert's training crops (PoseTalk aligns them by warping before this call).
    mel: `[B, T, 16, 80]` the batch's mel windows; window t+2 goes with frames t..t+4.
    image_size, face_box: leave None for a model from `from_config` (it carries
      them); for a bare `SyncNet`, its stage's `config.model.image_size` / `.face_box`.
    mask: optional `[B, T]` valid frames; a window counts only if all 5 frames are valid.
    stride: use windows starting every `stride` frames.

  Returns:
    (loss f32 scalar, {"sync_sim": mean C over the windows used}).
  """
  b, t = frames.shape[:2]
  if t < NUM_FRAMES:
    raise ValueError(f"expert_sync_loss needs T >= {NUM_FRAMES}, got frames {frames.shape}")
  starts = jnp.arange(0, t - NUM_FRAMES + 1, stride)
  k = starts.shape[0]
  if image_size is not None or face_box is not None:
    frames = prepare_faces(frames, image_size or frames.shape[2], face_box)
  faces = frame_windows(frames, jnp.broadcast_to(starts, (b, k)))
  faces = faces.reshape((b * k,) + faces.shape[2:])
  win_mel = mel[:, starts + NUM_FRAMES // 2].reshape((b * k,) + mel.shape[2:])
  params = jax.lax.stop_gradient(params)
  sim, _ = model.apply({"params": params}, faces, win_mel)
  valid = None
  if mask is not None:
    idx = starts[:, None] + jnp.arange(NUM_FRAMES)
    valid = jnp.all(jnp.asarray(mask)[:, idx], axis=-1).reshape(-1)
  w = jnp.ones_like(sim) if valid is None else valid.astype(jnp.float32)
  mean_sim = jnp.sum(sim * w) / jnp.maximum(jnp.sum(w), 1.0)
  return sync_loss(sim, valid), {"sync_sim": mean_sim}


def from_config(model_cfg, dtype="float32") -> SyncNet:
  """`SyncNet` from the syncnet stage's `config.model` mapping (face/audio widths and residual
  counts, embed_dim, norm, motion_gain, image_size, face_box) and a compute dtype name. The
  model carries image_size/face_box, so it accepts any aligned crop size."""
  m = dict(model_cfg)
  return SyncNet(
      face_widths=tuple(m["face_widths"]), face_res=tuple(m["face_res"]),
      audio_widths=tuple(m["audio_widths"]), audio_res=tuple(m["audio_res"]),
      embed_dim=int(m["embed_dim"]), norm=m.get("norm", "group"),
      motion_gain=float(m.get("motion_gain", 0.0)), image_size=int(m["image_size"]),
      face_box=tuple(m["face_box"]) if m.get("face_box") else None, dtype=jnp.dtype(dtype))
