"""Stage `syncnet`: train the lip-sync expert (Wav2Lip SyncNet) on in-sync and shifted pairs.

Each step draws `config.syncnet.windows_per_clip` windows per clip of the batch. For a window
starting at frame t (frames t..t+4, all valid under `mask`):
* positive: (frames t..t+4, `mel[:, t + 2]`), label 1;
* negative: (same frames, `mel[:, t' + 2]`) with |t' - t| >= `config.syncnet.min_shift` inside the
  same clip, label 0; when the clip is too short for such a t', the audio comes from the next
  clip of the batch (another speaker/moment) instead.
The loss is the mean binary cross-entropy on the cosine similarity (Wav2Lip's expert loss; the
similarity is PoseTalk eq. 7), plus, when `config.syncnet.contrastive.weight` > 0, jaxtalk's
InfoNCE term over in-clip audio offsets (`contrastive_loss`), and with
`config.syncnet.augment` the pairs are augmented (`augment_pairs`). Eval reports loss, accuracy
at C > 0.5 and pair accuracy (C of the positive > C of its negative) on a fixed draw of windows.
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
  """The expert of a syncnet stage config (`config.model`, `config.dtype`; a ConfigDict or the
  dict of its config.json): `models.syncnet.from_config`."""
  return syncnet_lib.from_config(config["model"], config.get("dtype", "float32"))


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


def offset_candidates(mel, mask, starts, *, max_offset: int, min_offset: int):
  """Audio windows of each video window at in-clip offsets, for the contrastive term.

  Args:
    mel: `[B, T, 16, 80]`; mask: `[B, T]` bool or None; starts: `[B, K]` window starts.
    max_offset / min_offset: offsets o with o = 0 or min_offset <= |o| <= max_offset (frames);
      |o| < min_offset is left out (those mel windows overlap the in-sync one by more than half).

  Returns:
    (mel `[B, K, C, 16, 80]`, valid `[B, K, C]` bool: the shifted window lies inside the clip),
    candidate 0 being the in-sync window.
  """
  b, t = mel.shape[:2]
  length = jnp.sum(mask, axis=1).astype(jnp.int32) if mask is not None else jnp.full([b], t)
  offs = [0] + [o for o in range(-max_offset, max_offset + 1) if abs(o) >= min_offset]
  idx = starts[..., None] + CENTER + jnp.asarray(offs, jnp.int32)                 # [B, K, C]
  valid = (idx >= CENTER) & (idx < length[:, None, None] - (NF - 1 - CENTER))
  idx = jnp.clip(idx, 0, t - 1)
  return jax.vmap(lambda m, i: m[i])(mel, idx), valid


def contrastive_loss(video_emb, audio_emb, valid, temperature: float):
  """InfoNCE over in-clip offsets: `-log softmax(C / temperature)[0]` per window, mean over
  windows (jaxtalk's addition to Wav2Lip's BCE; every candidate shows the same face and speaker,
  so only the lip-audio timing separates them).

  Args:
    video_emb: `[N, D]` L2-normalised; audio_emb: `[N, C, D]`; valid: `[N, C]` (candidate 0, the
      in-sync window, must be valid). temperature: softmax temperature on C in [0, 1].
  Returns: (loss scalar f32, top-1 accuracy scalar f32).
  """
  sim = jnp.einsum("nd,ncd->nc", video_emb.astype(jnp.float32), audio_emb.astype(jnp.float32))
  logits = jnp.where(valid, sim / temperature, -jnp.inf)
  logp = jax.nn.log_softmax(logits, axis=-1)
  w = valid[:, 0].astype(jnp.float32) * (jnp.sum(valid, axis=-1) > 1)
  loss = -jnp.sum(logp[:, 0] * w) / jnp.maximum(jnp.sum(w), 1.0)
  top1 = jnp.sum((jnp.argmax(logits, axis=-1) == 0) * w) / jnp.maximum(jnp.sum(w), 1.0)
  return loss, top1


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


def augment_pairs(rng, pairs, *, flip: bool = False, shift_px: int = 0, contrast: float = 0.0,
                  brightness: float = 0.0, mel_gain: float = 0.0):
  """Training augmentation of `sample_pairs` output (jaxtalk's; Wav2Lip trains without it).

  With few speakers the expert memorises faces instead of learning lip shapes; these change the
  appearance of each pair but not its sync label. Per pair (all 5 frames alike):
    flip: mirror left-right with probability 1/2 (speech does not depend on the side).
    shift_px: translate by a random integer in [-shift_px, shift_px] pixels in x and y (frames
      wrap around; the face box sits well inside the aligned crop).
    contrast / brightness: `faces * exp(contrast * n1) + brightness * n2`, n ~ N(0, 1), clipped
      to [-1, 1].
    mel_gain: add `mel_gain * n3` to the normalised log-mel (8 units = 100 dB, so 0.3 ~ 4 dB),
      clipped to Wav2Lip's [-4, 4].
  Returns a new dict with "faces" `[P, 5, H, W, 3]` and "mel" `[P, 16, 80]` augmented.
  """
  faces, mel = pairs["faces"], pairs["mel"]
  p = faces.shape[0]
  r_flip, r_dx, r_dy, r_c, r_b, r_m = jax.random.split(rng, 6)
  if flip:
    do = jax.random.bernoulli(r_flip, 0.5, (p,))
    faces = jnp.where(do[:, None, None, None, None], faces[:, :, :, ::-1], faces)
  if shift_px > 0:
    dx = jax.random.randint(r_dx, (p,), -shift_px, shift_px + 1)
    dy = jax.random.randint(r_dy, (p,), -shift_px, shift_px + 1)
    faces = jax.vmap(lambda f, a, b: jnp.roll(f, (a, b), axis=(1, 2)))(faces, dy, dx)
  if contrast > 0 or brightness > 0:
    c = jnp.exp(contrast * jax.random.normal(r_c, (p, 1, 1, 1, 1)))
    b = brightness * jax.random.normal(r_b, (p, 1, 1, 1, 1))
    faces = jnp.clip(faces * c + b, -1.0, 1.0)
  if mel_gain > 0:
    mel = jnp.clip(mel + mel_gain * jax.random.normal(r_m, (p, 1, 1)), -4.0, 4.0)
  return dict(pairs, faces=faces.astype(pairs["faces"].dtype), mel=mel.astype(pairs["mel"].dtype))


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

  def _pair_similarities(params, pairs, shared_faces):
    # sample_pairs repeats the positives' faces for the negatives: embed them once (the visual
    # encoder is most of the cost) unless augmentation made the two halves differ.
    if not shared_faces:
      return model.apply({"params": params}, pairs["faces"], pairs["mel"], train=True)
    n = pairs["faces"].shape[0] // 2
    v = model.apply({"params": params}, pairs["faces"][:n], method=model.embed_video)
    a = model.apply({"params": params}, pairs["mel"], method=model.embed_audio)
    v = jnp.concatenate([v, v])
    return syncnet_lib.cosine_similarity(v, a), {"video_emb": v, "audio_emb": a}

  nce = dict(config.syncnet.get("contrastive", {}))
  nce_weight = float(nce.get("weight", 0.0))

  aug = dict(config.syncnet.get("augment", {}))

  def loss(params, batch, rng, frozen, step):
    del frozen, step
    if aug:
      r_pairs, r_aug = jax.random.split(rng)
      pairs = augment_pairs(r_aug, _inputs(batch, r_pairs), **aug)
    else:
      pairs = _inputs(batch, rng)
    sim, aux = _pair_similarities(params, pairs, shared_faces=not aug)
    m = pair_metrics(sim, pairs["label"], pairs["valid"])
    out = {"loss_bce": m["loss"], "accuracy": m["accuracy"], "sim_pos": m["sim_pos"],
           "sim_neg": m["sim_neg"]}
    total = m["loss"]
    if nce_weight > 0:
      cand, valid = offset_candidates(batch["mel"], batch.get("mask"), pairs["starts"],
                                      max_offset=int(nce.get("max_offset", 8)),
                                      min_offset=int(nce.get("min_offset", 3)))
      n = pairs["starts"].size
      c = cand.shape[2]
      a = model.apply({"params": params}, cand.reshape((n * c,) + cand.shape[3:]),
                      method=model.embed_audio).reshape(n, c, -1)
      l_nce, top1 = contrastive_loss(aux["video_emb"][:n], a, valid.reshape(n, c),
                                     float(nce.get("temperature", 0.1)))
      total = total + nce_weight * l_nce
      out.update(loss_nce=l_nce, offset_top1=top1)
    return total, out

  def evaluate(params, batch, frozen):
    del frozen
    pairs = _inputs(batch, jax.random.PRNGKey(int(config.seed) + 17))
    sim, _ = _pair_similarities(params, pairs, shared_faces=True)
    return pair_metrics(sim, pairs["label"], pairs["valid"])

  def infer(params, frozen, inputs):
    del frozen
    sim, aux = model.apply({"params": params}, inputs["faces"], inputs["mel"])
    return {"sim": sim, **aux}

  def infer_example():
    return {"faces": np.zeros((1, NF, size, size, 3), np.float32),
            "mel": np.zeros((1, syncnet_lib.MEL_STEPS, syncnet_lib.NUM_MELS), np.float32)}

  return Task(init=init, loss=loss, evaluate=evaluate, infer=infer, infer_example=infer_example)

