"""SyncNet expert (PoseTalk eqs. 7-8, Wav2Lip): shapes, pair sampling, losses, stage learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import syncnet as syncnet_config
from jaxtalk.models import syncnet as syncnet_lib
from jaxtalk.tasks import syncnet as task_lib

def _key(seed):
  # rbg keys: threefry's random-bit kernels take seconds each to compile on this CPU.
  return jax.random.key(seed, impl="rbg")


TINY = dict(face_widths=(8, 16, 32, 64, 64, 64), face_res=(0, 1, 1, 1, 1, 0),
            audio_widths=(8, 16, 32, 64), audio_res=(1, 1, 1, 1), embed_dim=64)


@pytest.fixture(scope="module")
def tiny_params():
  faces, mel = jnp.zeros((1, 5, 64, 64, 3)), jnp.zeros((1, 16, 80))
  return jax.jit(syncnet_lib.SyncNet(**TINY).init)(_key(2), faces, mel)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_syncnet_shapes_and_range(dtype, tiny_params):
  model = syncnet_lib.SyncNet(**TINY, dtype=dtype)
  faces = jax.random.uniform(_key(0), (3, 5, 64, 64, 3), minval=-1, maxval=1)
  mel = jax.random.normal(_key(1), (3, 16, 80))
  params = tiny_params
  sim, aux = jax.jit(model.apply)(params, faces, mel)
  assert sim.shape == (3,) and sim.dtype == jnp.float32
  assert np.all((sim >= 0) & (sim <= 1 + 1e-6))
  for k in ("video_emb", "audio_emb"):
    assert aux[k].shape == (3, 64) and aux[k].dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(aux[k], axis=-1), 1.0, atol=1e-3)
  # The visual encoder only looks at the lower half of the face.
  upper = faces.at[:, :, :32].set(0.0)
  np.testing.assert_allclose(jax.jit(model.apply)(params, upper, mel)[0], sim, atol=1e-6)
  with pytest.raises(ValueError, match="expected \\[B, 5"):
    jax.eval_shape(model.apply, params, faces[:, :4], mel)
  with pytest.raises(ValueError, match="mel"):
    jax.eval_shape(model.apply, params, faces, mel[:, :8])


def _unboxed(tree):
  return jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, tree,
                      is_leaf=lambda x: hasattr(x, "unbox"))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_motion_input_is_mean_frame_plus_scaled_differences(dtype):
  """motion_gain > 0: the first convolution sees [mean, g * (frame_i - mean)] (6 images, 18
  channels) instead of the 5 frames (15): a static window reaches it only through the mean
  channels, a moving one also through the difference channels."""
  kw = dict(widths=(4, 4), num_res=(0, 0), embed_dim=8, norm="none", dtype=dtype)
  enc = syncnet_lib.FaceEncoder(**kw, motion_gain=4.0)
  faces = jax.random.uniform(_key(5), (2, 5, 8, 16, 3), minval=-1, maxval=1)
  params = _unboxed(jax.jit(enc.init)(_key(6), faces)["params"])
  plain = _unboxed(syncnet_lib.FaceEncoder(**kw).init(_key(6), faces)["params"])
  assert plain["stage0"]["conv"]["kernel"].shape[-2] == 15
  kernel = params["stage0"]["conv"]["kernel"]
  assert kernel.shape[-2] == 18
  out = jax.jit(enc.apply)({"params": params}, faces)
  assert out.shape == (2, 8) and out.dtype == jnp.float32

  def mean_only(p):  # zero the kernel taps that read the difference channels
    k = p["stage0"]["conv"]["kernel"].at[:, :, 3:].set(0.0)
    return {**p, "stage0": {"conv": {**p["stage0"]["conv"], "kernel": k}}}

  apply = jax.jit(enc.apply)
  static = jnp.broadcast_to(faces[:, :1], faces.shape)
  np.testing.assert_allclose(apply({"params": mean_only(params)}, static),
                             apply({"params": params}, static), atol=1e-6)
  assert float(jnp.abs(apply({"params": mean_only(params)}, faces) - out).max()) > 1e-3


def test_cosine_and_losses_known_values():
  v = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
  a = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(syncnet_lib.cosine_similarity(v, a), [1.0, 2 ** -0.5, 0.0],
                             atol=1e-6)
  np.testing.assert_allclose(syncnet_lib.sync_loss(jnp.array([1.0, 0.5])), np.log(2) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(syncnet_lib.bce_loss(jnp.array([0.8, 0.8]), jnp.array([1, 0])),
                             [-np.log(0.8), -np.log(0.2)], rtol=1e-5)
  m = task_lib.pair_metrics(jnp.array([0.9, 0.4, 0.2, 0.6]), jnp.array([1.0, 1.0, 0.0, 0.0]),
                            jnp.ones(4, bool))
  assert float(m["accuracy"]) == 0.5 and float(m["pair_accuracy"]) == 0.5


def test_sample_pairs_alignment_and_shifts():
  b, t = 4, 20
  ids = jnp.arange(b * t, dtype=jnp.float32).reshape(b, t)
  frames = jnp.broadcast_to(ids[:, :, None, None, None], (b, t, 2, 2, 3))
  mel = jnp.broadcast_to(ids[:, :, None, None], (b, t, 16, 80))
  mask = jnp.arange(t)[None] < jnp.array([20, 20, 12, 7])[:, None]
  out = task_lib.sample_pairs(_key(0), frames, mel, mask,
                              windows_per_clip=8, min_shift=5)
  k = 8
  faces = np.asarray(out["faces"][:b * k, :, 0, 0, 0]).astype(int)   # [BK, 5] frame ids
  pos = np.asarray(out["mel"][:b * k, 0, 0]).astype(int)
  neg = np.asarray(out["mel"][b * k:, 0, 0]).astype(int)
  np.testing.assert_array_equal(np.diff(faces, axis=1), 1)   # consecutive frames
  np.testing.assert_array_equal(pos, faces[:, 2])             # mel[t + 2] with frames t..t+4
  clip = faces[:, 0] // t
  lengths = np.array([20, 20, 12, 7])[clip]
  assert np.all(faces[:, 4] % t < lengths)                    # windows inside the valid prefix
  same = (neg // t) == clip
  shift = np.abs(neg - pos)
  assert np.all(shift[same] >= 5)
  # Clip 3 (7 valid frames) has no in-clip negative: its audio comes from clip 0.
  assert np.all(~same[clip == 3]) and np.all(same[clip < 2])
  np.testing.assert_array_equal(out["label"], np.r_[np.ones(b * k), np.zeros(b * k)])
  assert bool(out["valid"].all())


def test_configs_load():
  for arg in syncnet_config.DOCUMENTED_ARGS:
    c = syncnet_config.get_config(arg)
    assert c.task == "jaxtalk.tasks.syncnet"
  assert syncnet_config.get_config("size=tiny").model.image_size == 48


def test_model_built_from_config_crops_its_face_box(tiny_params):
  """A `build_model` expert turns any crop size into its face box, like prepare_faces does."""
  c = syncnet_config.get_config("size=tiny")
  assert task_lib.build_model(c).motion_gain == c.model.motion_gain == 4.0
  c.model.norm = "group"
  c.model.motion_gain = 0.0
  c.model.update({k: v for k, v in TINY.items()})
  c.model.image_size = 64
  model = task_lib.build_model(c)
  bare = syncnet_lib.SyncNet(**TINY)
  frames = jax.random.uniform(_key(5), (2, 5, 96, 96, 3), minval=-1, maxval=1)
  mel = jax.random.normal(_key(6), (2, 16, 80))
  ref = syncnet_lib.prepare_faces(frames, 64, c.model.face_box)
  np.testing.assert_allclose(jax.jit(model.apply)(tiny_params, frames, mel)[0],
                             jax.jit(bare.apply)(tiny_params, ref, mel)[0], atol=1e-5)
  with pytest.raises(ValueError):
    syncnet_config.get_config("size=huge")


def test_offset_candidates_and_contrastive_loss():
  t = 30
  mel = jnp.broadcast_to(jnp.arange(t, dtype=jnp.float32)[None, :, None, None], (2, t, 16, 80))
  mask = jnp.arange(t)[None] < jnp.array([[30], [12]])
  starts = jnp.array([[0, 10], [3, 7]])
  cand, valid = task_lib.offset_candidates(mel, mask, starts, max_offset=4, min_offset=3)
  offs = np.array([0, -4, -3, 3, 4])
  assert cand.shape == (2, 2, 5, 16, 80) and valid.shape == (2, 2, 5)
  centre = np.asarray(starts)[..., None] + 2 + offs                     # mel window of frame
  np.testing.assert_array_equal(np.asarray(cand[..., 0, 0])[valid], centre[np.asarray(valid)])
  # A shifted window must lie inside the clip: start in [0, length - 5].
  ok = (centre - 2 >= 0) & (centre - 2 <= np.array([30, 12])[:, None, None] - 5)
  np.testing.assert_array_equal(np.asarray(valid), ok)
  # InfoNCE: the in-sync candidate most similar -> low loss, top-1 = 1; invalid ones ignored.
  v = jnp.eye(4)[:2]
  a = jnp.stack([jnp.stack([jnp.eye(4)[0], jnp.eye(4)[1], jnp.eye(4)[1]]),
                 jnp.stack([jnp.eye(4)[1], jnp.eye(4)[2], jnp.eye(4)[3]])])
  loss, top1 = task_lib.contrastive_loss(v, a, jnp.ones((2, 3), bool), 0.1)
  expect = np.log1p(2 * np.exp(-10.0))
  np.testing.assert_allclose(float(loss), expect, rtol=2e-3)
  assert float(top1) == 1.0
  loss2, _ = task_lib.contrastive_loss(v, a, jnp.array([[True, False, False], [True, True, False]]),
                                       0.1)
  np.testing.assert_allclose(float(loss2), np.log1p(np.exp(-10.0)), rtol=2e-3)   # row 0 dropped


def test_augment_pairs():
  faces = jax.random.uniform(_key(0), (8, 5, 16, 16, 3), minval=-1, maxval=1)
  mel = jax.random.uniform(_key(1), (8, 16, 80), minval=-3, maxval=3)
  pairs = {"faces": faces, "mel": mel, "label": jnp.arange(8) < 4}
  out = task_lib.augment_pairs(_key(2), pairs, flip=True, mel_gain=0.3)
  f, fo = np.asarray(faces), np.asarray(out["faces"])
  flipped = [np.array_equal(fo[i], f[i, :, :, ::-1]) for i in range(8)]
  assert all(flipped[i] or np.array_equal(fo[i], f[i]) for i in range(8)) and 0 < sum(flipped) < 8
  d = np.asarray(out["mel"] - mel)
  np.testing.assert_allclose(d, np.broadcast_to(d[:, :1, :1], d.shape), atol=1e-5)  # one gain
  np.testing.assert_array_equal(np.asarray(out["label"]), np.asarray(pairs["label"]))
  shifted = np.asarray(task_lib.augment_pairs(_key(3), pairs, shift_px=2)["faces"])
  for i in range(8):   # every pair is a whole-window roll by at most 2 px
    assert any(np.array_equal(shifted[i], np.roll(f[i], (dy, dx), axis=(1, 2)))
               for dy in range(-2, 3) for dx in range(-2, 3))
  np.testing.assert_array_equal(np.asarray(task_lib.augment_pairs(_key(4), pairs)["faces"]), f)


@pytest.mark.slow
def test_stage_trains_with_the_trainer_on_synthetic_data(tmp_path):
  """The stage runs in jaxtalk.train (sharded on 8 devices) and its loss falls (~2 min here:
  compiling the sharded train and eval steps dominates)."""
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  c = syncnet_config.get_config("size=tiny,synthetic=true")
  c.batch_size = 8
  c.syncnet.windows_per_clip = 1
  c.total_steps = 12
  c.log_every = 4
  c.eval_every = 12
  c.eval_batches = 1
  c.checkpoint_every = 12
  c.progress = False
  out = train.train_and_evaluate(c, str(tmp_path))
  hist = [h for h in out["history"] if "train/loss_bce" in h]
  assert out["step"] == 12
  assert hist[-1]["train/loss_bce"] < hist[0]["train/loss_bce"]
  evals = [h for h in out["history"] if "eval/pair_accuracy" in h]
  assert evals and 0.0 <= evals[-1]["eval/pair_accuracy"] <= 1.0


def test_expert_sync_loss_windows_and_gradients(tiny_params):
  model = syncnet_lib.SyncNet(**TINY)
  frames = jax.random.uniform(_key(3), (2, 8, 48, 48, 3), minval=-1, maxval=1)
  mel = jax.random.normal(_key(4), (2, 8, 16, 80))
  mask = jnp.arange(8)[None] < jnp.array([8, 6])[:, None]
  fn = jax.jit(lambda p, f: syncnet_lib.expert_sync_loss(model, p, f, mel, image_size=64,
                                                         mask=mask))
  (loss, aux), g = jax.value_and_grad(fn, argnums=1, has_aux=True)(tiny_params["params"], frames)
  # Reference: the 4 + 2 valid windows scored one by one.
  faces = jnp.stack([frames[b, s:s + 5] for b, n in ((0, 8), (1, 6)) for s in range(n - 4)])
  mels = jnp.stack([mel[b, s + 2] for b, n in ((0, 8), (1, 6)) for s in range(n - 4)])
  sims = np.asarray(jax.jit(model.apply)(tiny_params, syncnet_lib.prepare_faces(faces, 64),
                                         mels)[0])
  np.testing.assert_allclose(loss, -np.log(np.clip(sims, 1e-7, 1)).mean(), rtol=1e-4)
  np.testing.assert_allclose(aux["sync_sim"], sims.mean(), rtol=1e-4)
  assert g.shape == frames.shape and float(jnp.abs(g).sum()) > 0
  assert float(jnp.abs(g[1, 6:]).sum()) == 0.0                 # padding frames get no gradient


# ------------------------------------------------------------------------------------------------
# Real data: train the tiny expert on the first 70% of every clip, test on the last 30%.
# Shards come from the default pipeline (`synced_shards`): it measures every clip's audio-visual
# offset and shifts the audio of clips with a confident one (the HDTF example clips' speech
# follows the lips by 3-5 frames). Clips still out of sync after that (KatieHill: +6 at
# confidence 2.8, below the pipeline's 3.0, left as is) are left out: out-of-sync "positives"
# would teach the expert the wrong thing. That leaves 8 clips, ~35 s of training video.
# ------------------------------------------------------------------------------------------------
# What this much data supports: a bilinear logistic probe on FaceMesh lip landmarks (5 frames,
# PCA 20) x mel windows (PCA 20), same split, reaches 0.69-0.72 held-out pair accuracy (0.57-0.61
# on the 5 non-HDTF clips alone). The test scores the expert on EVERY held-out window against
# every shift of 5-15 frames inside the clip's tail (`sync.shift_accuracies`; ~6000 pairs), per
# window and per 1 s segment (the averaging LSE does), instead of a sampled 256 pairs whose
# standard error (0.03) was as large as the differences between runs.
# Measured with the tiny config (motion_gain=4, contrastive term, lr 1e-3), four data seeds:
# the expert leaves the BCE plateau by step 75-150 (Wav2Lip's stacked input: 150 to over 450
# steps, seed-dependent). At step 300: window accuracy 0.609 / 0.617 / 0.591 / 0.582, 1 s segment
# accuracy 0.901 / 0.794 / 0.840 / 0.748, pooled LSE offset 0 / 1 / 0 / -1 and 6 / 7 / 6 / 5 with
# the audio delayed 6 frames (the first two runs trained on 60% of each clip). After ~300 steps it
# memorises: train accuracy passes 0.9 by step 400 and held-out accuracy stops improving.
# This test as written (300 steps, 70% split), seeds 0 / 1 / 2 / 3 (seed 0 is the default):
# window accuracy 0.629 / 0.601 / 0.584 / 0.623 (6138 pairs), 1 s segment accuracy 0.796 / 0.877 /
# 0.696 / 0.849 (431), pooled LSE offset 0 / 0 / 0 / -1, audio delayed 6 frames: 6 / 6 / 5 / 5.
# ~9 min each (two at a time) on this 2-core CPU. Bars: window > 0.56, segment > 0.65 (chance 0.5).
REAL_STEPS = syncnet_config.get_config("size=tiny").total_steps


def in_sync_clips(data_dir):
  """Clips of `data_dir` the syncnet stage trains on: residual audio-visual offset within the
  config's `input.max_av_offset` (see section comment)."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  inp = syncnet_config.get_config("size=tiny").input
  info = input_pipeline.load_dataset_info(str(data_dir))
  out, _ = input_pipeline.out_of_sync_clips(info, inp.max_av_offset, inp.av_min_confidence)
  keep = [c["clip_id"] for i, c in enumerate(info["clips"]) if i not in out]
  return reenactment.read_clips(str(data_dir), clip_ids=keep)


def _train_batches(clips, rng, batch=16, window=20, split=0.7):
  """Windows from the first `split` of each clip (the rest is held out)."""
  frames, mels = [], []
  for _ in range(batch):
    i = int(rng.integers(len(clips)))
    s = int(rng.integers(0, int(split * len(clips[i]["frames"])) - window + 1))
    frames.append(clips[i]["frames"][s:s + window])
    mels.append(clips[i]["mel"][s:s + window])
  return {"frames": np.stack(frames), "mel": np.stack(mels),
          "mask": np.ones((batch, window), bool)}


def train_tiny_expert_on_clips(clips, steps=REAL_STEPS, seed=0):
  """Optax loop over the syncnet task's own loss (time-split windows; see section comment)."""
  config = syncnet_config.get_config("size=tiny")
  task = task_lib.get_task(config, mesh=None)
  rng = np.random.default_rng(seed)
  params = task.init(_key(seed), _train_batches(clips, rng))
  params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                        is_leaf=lambda x: hasattr(x, "unbox"))
  opt = optax.adam(config.optax.lr)
  state = opt.init(params)

  @jax.jit
  def step(p, s, b, k):
    (_, aux), g = jax.value_and_grad(task.loss, has_aux=True)(p, b, k, {}, 0)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, aux

  for i in range(steps):
    params, state, _ = step(params, state, _train_batches(clips, rng), _key(i))
  return config, task, params


@pytest.mark.needs_data
@pytest.mark.slow
def test_tiny_expert_separates_in_sync_from_shifted_on_held_out_windows(synced_shards):
  from jaxtalk.evaluators import sync  # pylint: disable=g-import-not-at-top
  clips = in_sync_clips(synced_shards)
  assert len(clips) >= 6, [c["clip_id"] for c in clips]
  config, _, params = train_tiny_expert_on_clips(clips)
  ev = sync.SyncEvaluator(task_lib.build_model(config), params, max_offset=10)
  counts = {k: 0 for k in ("window_correct", "window_pairs", "segment_correct", "segment_pairs")}
  dists, dists_delayed = [], []
  for c in clips:
    n = len(c["frames"])
    f, mel = c["frames"][int(0.7 * n):], c["mel"][int(0.7 * n):]
    acc = ev.shift_accuracies(f, mel)
    counts = {k: v + acc[k] for k, v in counts.items()}
    dists.append(ev(f, mel)["dists"])
    delayed = np.concatenate([np.repeat(mel[:1], 6, 0), mel[:-6]])
    dists_delayed.append(ev(f, delayed)["dists"])
  window = counts["window_correct"] / counts["window_pairs"]
  segment = counts["segment_correct"] / counts["segment_pairs"]
  # LSE over the 8 tails pooled (each tail is only ~45 frames; per-clip offsets are noisy).
  offset = int(np.nanargmin(np.nanmean(dists, axis=0))) - 10
  offset_delayed = int(np.nanargmin(np.nanmean(dists_delayed, axis=0))) - 10
  print(f"\nheld-out: window accuracy {window:.3f} ({counts['window_pairs']} pairs), 1 s segment "
        f"accuracy {segment:.3f} ({counts['segment_pairs']}); pooled LSE offset {offset}, with "
        f"the audio delayed 6 frames {offset_delayed}")
  # Chance is 0.5 for both accuracies.
  assert window > 0.56 and segment > 0.65
  assert abs(offset) <= 1 and abs(offset_delayed - 6) <= 1


@pytest.mark.slow
def test_tiny_expert_learns_sync_on_synthetic_clips():
  """Synthetic clips (mouth opening follows mel energy): the tiny expert separates in-sync from
  shifted pairs on held-out (eval-seed) clips. Measured after the 150 steps: eval pair accuracy
  0.852, accuracy 0.816 with the tiny config's motion input (0.727 / 0.695 with Wav2Lip's
  stacked frames); ~5 min on the loaded CPU."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  c = syncnet_config.get_config("size=tiny,synthetic=true")
  task = task_lib.get_task(c, mesh=None)
  it = input_pipeline.create_iterator(c, split="train")
  params = task.init(_key(0), next(it))
  params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, params,
                        is_leaf=lambda x: hasattr(x, "unbox"))
  opt = optax.adam(c.optax.lr)
  state = opt.init(params)

  @jax.jit
  def step(p, s, b, k):
    (_, aux), g = jax.value_and_grad(task.loss, has_aux=True)(p, b, k, {}, 0)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, aux

  for i in range(150):
    params, state, _ = step(params, state, next(it), _key(i))
  evaluate = jax.jit(task.evaluate)
  eval_it = input_pipeline.create_iterator(c, split="eval")
  ms = [evaluate(params, next(eval_it), {}) for _ in range(4)]
  m = {k: float(np.mean([x[k] for x in ms])) for k in ms[0]}
  print(f"\nsynthetic held-out: {m}")
  assert m["pair_accuracy"] > 0.65 and m["accuracy"] > 0.6
