"""Stage `syncnet`: train the lip-sync expert (Wav2Lip SyncNet) on in-sync and shifted pairs.

Each step draws `config.syncnet.windows_per_clip` windows per clip of the batch. For a window
starting at frame t (frames t..t+4, all valid under `mask`):
* positive: (frames t..t+4, `mel[:, t + 2]`), label 1;
* negative: (same frames, `mel[:, t' + 2]`) with |t' - t| >= `config.syncnet.min_shift` inside the
  same clip, label 0; when the clip is too short for such a t', the audio comes from the next
  clip of the batch (another speaker/moment) instead.
The loss is the mean binary cross-entropy on the cosine similarity (Wav2Lip's expert loss; the
similarity is PoseTalk eq. 7). Eval reports loss, accuracy at C > 0.5 and pair accuracy (C of the
positive > C of its negative) on a fixed draw of windows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models import syncnet as syncnet_lib
from jaxtalk.tasks import Task

NF = syncnet_lib.NUM_FRAMES
CENTER = NF // 2


def build_model(config) -> syncnet_lib.SyncNet:
  """SyncNet from `config.model` (widths, residual counts, embed_dim, norm, image_size, face_box)
  + dtype. The model carries image_size/face_box, so it accepts any aligned crop size."""
  m = config.model
  return syncnet_lib.SyncNet(
    face_widths=tuple(m.face_widths), face_res=tuple(m.face_res),
    audio_widths=tuple(m.audio_widths), audio_res=tuple(m.audio_res),
    embed_dim=m.embed_dim, norm=m.get("norm", "group"), image_size=int(m.image_size),
    face_box=tuple(m.face_box) if m.get("face_box") else None, dtype=jnp.dtype(config.dtype))


def sample_pairs(rng, frames, mel, mask, *, windows_per_clip: int, min_shift: int):
  """Draws positive and negative windows (see module docstring).

  Args:
    rng: PRNG key.
    frames: `[B, T, H, W, 3]`; mel: `[B, T, 16, 80]`; mask: `[B, T]` bool or None (valid frames
      form a prefix of the clip).
    windows_per_clip: K.
    min_shift: minimum |t' - t| of an in-clip negative (frames).

  Returns:
    dict with faces `[2BK, 5, H, W, 3]`, mel `[2BK, 16, 80]`, label `[2BK]` (1 then 0 halves),
    valid `[2BK]` (window fully inside the clip) and starts `[B, K]`.

  Raises:
    ValueError: if T < 5.
  """
  b, t = frames.shape[:2]
  if t < NF:
    raise ValueError(f"syncnet needs windows of >= {NF} frames, got T={t}")
  k = windows_per_clip
  length = jnp.sum(mask, axis=1).astype(jnp.int32) if mask is not None else jnp.full([b], t)
  n_starts = jnp.maximum(length - NF + 1, 1)                           # [B]
  r1, r2 = jax.random.split(rng)
  u = jax.random.uniform(r1, (b, k))
  starts = jnp.minimum((u * n_starts[:, None]).astype(jnp.int32), n_starts[:, None] - 1)
  cand = jnp.arange(t - NF + 1)                                        # [C]
  ok = ((cand[None, None] < n_starts[:, None, None]) &
        (jnp.abs(cand[None, None] - starts[..., None]) >= min_shift))  # [B, K, C]
  logits = jnp.where(ok, 0.0, -jnp.inf)
  has_neg = jnp.any(ok, axis=-1)
  neg = jax.random.categorical(r2, jnp.where(has_neg[..., None], logits, 0.0))
  # In-clip negative audio, else the same start in the next clip of the batch.
  neg_clip = jnp.where(has_neg, jnp.arange(b)[:, None], (jnp.arange(b)[:, None] + 1) % b)
  neg_start = jnp.where(has_neg, neg, jnp.minimum(starts, n_starts[neg_clip] - 1))
  faces = syncnet_lib.frame_windows(frames, starts)                    # [B, K, 5, H, W, 3]
  pos_mel = jax.vmap(lambda m, i: m[i])(mel, starts + CENTER)          # [B, K, 16, 80]
  neg_mel = mel[neg_clip, neg_start + CENTER]
  valid = length[:, None] >= NF
  if b == 1:
    valid = valid & has_neg                                            # no other clip to use
  flat = lambda x: x.reshape((b * k,) + x.shape[2:])
  faces = flat(faces)
  return {
    "faces": jnp.concatenate([faces, faces]),
    "mel": jnp.concatenate([flat(pos_mel), flat(neg_mel)]),
    "label": jnp.concatenate([jnp.ones(b * k), jnp.zeros(b * k)]),
    "valid": jnp.concatenate([flat(jnp.broadcast_to(valid, (b, k)))] * 2),
    "starts": starts,
  }


def pair_metrics(sim, label, valid) -> dict:
  """Loss / accuracy / pair accuracy of similarities `[2N]` (first N positives)."""
  w = valid.astype(jnp.float32)
  denom = jnp.maximum(jnp.sum(w), 1.0)
  bce = syncnet_lib.bce_loss(sim, label)
  n = sim.shape[0] // 2
  correct = ((sim > 0.5) == (label > 0.5)).astype(jnp.float32)
  pos, neg = sim[:n], sim[n:]
  wn = w[:n]
  return {
    "loss": jnp.sum(bce * w) / denom,
    "accuracy": jnp.sum(correct * w) / denom,
    "pair_accuracy": jnp.sum((pos > neg).astype(jnp.float32) * wn) / jnp.maximum(wn.sum(), 1.0),
    "sim_pos": jnp.sum(pos * wn) / jnp.maximum(wn.sum(), 1.0),
    "sim_neg": jnp.sum(neg * wn) / jnp.maximum(wn.sum(), 1.0),
  }


def get_task(config, *, mesh) -> Task:
  """The syncnet stage (see module docstring). `mesh` is unused (data parallel via train.py).

  The model turns frames into its faces itself (`syncnet.prepare_faces(frames,
  config.model.image_size, config.model.face_box)`); the lower half of those is what it sees.
  """
  del mesh
  model = build_model(config)
  size = int(config.model.image_size)
  k = int(config.syncnet.windows_per_clip)
  min_shift = int(config.syncnet.min_shift)

  def _inputs(batch, rng):
    return sample_pairs(rng, batch["frames"], batch["mel"], batch.get("mask"),
                        windows_per_clip=k, min_shift=min_shift)

  def init(rng, batch):
    b, _, h, w, _ = batch["frames"].shape
    faces = jnp.zeros((b, NF, h, w, 3), jnp.float32)
    mel = jnp.zeros((b, syncnet_lib.MEL_STEPS, syncnet_lib.NUM_MELS), jnp.float32)
    return model.init(rng, faces, mel)["params"]

  def loss(params, batch, rng, frozen, step):
    del frozen, step
    pairs = _inputs(batch, rng)
    sim, _ = model.apply({"params": params}, pairs["faces"], pairs["mel"], train=True)
    m = pair_metrics(sim, pairs["label"], pairs["valid"])
    return m["loss"], {"loss_bce": m["loss"], "accuracy": m["accuracy"],
                       "sim_pos": m["sim_pos"], "sim_neg": m["sim_neg"]}

  def evaluate(params, batch, frozen):
    del frozen
    pairs = _inputs(batch, jax.random.PRNGKey(int(config.seed) + 17))
    sim, _ = model.apply({"params": params}, pairs["faces"], pairs["mel"])
    return pair_metrics(sim, pairs["label"], pairs["valid"])

  def infer(params, frozen, inputs):
    del frozen
    sim, aux = model.apply({"params": params}, inputs["faces"], inputs["mel"])
    return {"sim": sim, **aux}

  def infer_example():
    return {"faces": np.zeros((1, NF, size, size, 3), np.float32),
            "mel": np.zeros((1, syncnet_lib.MEL_STEPS, syncnet_lib.NUM_MELS), np.float32)}

  return Task(init=init, loss=loss, evaluate=evaluate, infer=infer, infer_example=infer_example)

