"""The PLD's wav2vec 2.0 audio condition end to end (configs/posetalk/pld.py `audio=wav2vec`).

A tiny random wav2vec 2.0 checkpoint (the standard conv stack: 50 Hz frames, so the real 25 fps
alignment) is written as PyTorch-named safetensors with tests/features/test_wav2vec.py's helpers;
synthetic
clips get their `wav2vec` feature from preprocessing's own extractor and are written as shards
with preprocessing's dataset_info. Sampling must compute the very features the shards store.
Default suite: the stage traced (init/loss/eval/infer) and a PLD workdir made from the task's
untrained init (what train.py writes, without the compile-heavy train loop); `slow`: a tiny VAE +
PLD trained for a few steps through train.py.
"""

import json
import os
import shutil

from flax import linen as nn
import jax
import numpy as np
import pytest

from configs.posetalk import pld as pld_config
from configs.posetalk import pose_vae as vae_config
from data_pipelines import pipeline
from data_pipelines import schema
from jaxtalk.features import audio as audio_lib
from jaxtalk.core import checkpointing
from jaxtalk.core import input_pipeline
from jaxtalk.generators import pld as pld_lib
from jaxtalk import tasks
from jaxtalk import train
from jaxtalk.features import wav2vec
from tests.features.test_wav2vec import _random_state, _save

C = 12  # wav2vec hidden size of the tiny checkpoint (not the tiny VAE's latent size, 16).
W2V = dict(wav2vec.CONFIG_DEFAULTS, conv_dim=(4,) * 7, hidden_size=C, num_hidden_layers=1,
           num_attention_heads=2, intermediate_size=16, num_conv_pos_embeddings=8,
           num_conv_pos_embedding_groups=2)
MEL_KEYS = ("pose", "gaze", "mel", "text_ids", "text_mask", "mask")


def _write_w2v(path, seed=0, **overrides):
  cfg = dict(W2V, **overrides)
  _save(path, _random_state(cfg, np.random.default_rng(seed)), cfg)
  return str(path)


def test_preprocess_stops_on_a_broken_wav2vec_checkpoint(tmp_path):
  """A wav2vec folder that cannot be loaded fails before any output is written (it used to
  dead-letter every clip)."""
  bad = _write_w2v(tmp_path / "w2v")
  weights = os.path.join(bad, "model.safetensors")
  with open(weights, "rb") as f:
    head = f.read(64)
  with open(weights, "wb") as f:
    f.write(head)                                             # truncated
  out = tmp_path / "shards"
  with pytest.raises(ValueError, match=r"wav2vec_path=.*cannot load the checkpoint"):
    pipeline.preprocess(input_path=str(tmp_path / "none.jsonl"), output_dir=str(out),
                        resolution=8, wav2vec_path=bad)
  assert not out.exists()


def _speech(rng, frames):
  """Speech-like 16 kHz audio: harmonic bursts at a syllable rate, plus noise."""
  t = np.arange(frames * audio_lib.SAMPLES_PER_FRAME) / audio_lib.SAMPLE_RATE
  env = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
  f0 = rng.uniform(110, 220)
  voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
  return (0.3 * env * voice + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _write_shards(out, w2v_dir, num_clips=3, frames=100):
  """Synthetic clips -> shards + dataset_info.json the way `pipeline.preprocess` writes them.

  The audio features come from the code `process_video` runs (`pipeline._wav2vec`, log-mel)."""
  import cv2  # pylint: disable=g-import-not-at-top
  os.makedirs(out, exist_ok=True)
  rng = np.random.default_rng(0)
  jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
  extractor = pipeline._wav2vec(w2v_dir)  # pylint: disable=protected-access
  records = []
  for i in range(num_clips):
    pcm = audio_lib.to_int16(_speech(rng, frames))
    wav = audio_lib.from_int16(pcm)
    pose = np.cumsum(0.02 * rng.standard_normal((frames, 6)), 0).astype(np.float32)
    records.append(dict(
        schema_version=schema.SCHEMA_VERSION, clip_id=f"syn{i}_c000", video_id=f"syn{i}",
        source_path=f"syn{i}.mp4", dataset="synthetic", speaker=f"s{i % 2}", emotion="neutral",
        emotion_intensity=0, view="", text=["he nods", "she turns her head"][i % 2], fps=25,
        start_time=0.0, num_frames=frames, resolution=8, frames=[jpeg] * frames,
        crop_box=np.zeros((frames, 4), np.float32),
        landmarks=np.zeros((frames, schema.NUM_LANDMARKS, 3), np.float16),
        face_found=np.ones(frames, bool), pose=pose,
        gaze=(0.1 * rng.standard_normal((frames, 2))).astype(np.float32),
        mouth_box=np.tile(np.float32([0.3, 0.6, 0.7, 0.8]), (frames, 1)), audio=pcm,
        mel=audio_lib.log_mel(wav).astype(np.float16), num_faces_max=1, notes=[],
        wav2vec=extractor(wav).astype(np.float16)))
  shards = {}
  for r in records:
    shards.setdefault(pipeline.shard_of(r["clip_id"], 2), []).append(r)
  summaries = []
  for k, recs in sorted(shards.items()):
    name = pipeline.shard_name(k, 2)
    recs.sort(key=lambda r: r["clip_id"])
    pipeline.write_shard(os.path.join(out, name), [schema.encode_record(r) for r in recs])
    summaries.append((name, [pipeline.clip_summary(r) for r in recs]))
  info = pipeline.dataset_info(summaries, [], pipeline.Options(resolution=8, wav2vec_path=w2v_dir))
  with open(os.path.join(out, pipeline.DATASET_INFO), "w") as f:
    json.dump(info, f)
  return {r["clip_id"]: r for r in records}


def _mesh():
  from jaxtalk.core import sharding  # pylint: disable=g-import-not-at-top
  return sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])


def _pld_config(root, arg):
  c = pld_config.get_config(f"size=tiny,vae={os.path.join(root, 'vae', 'params')},{arg}")
  c.total_steps = c.checkpoint_every = c.eval_every = 4
  return c


def _write_workdir(workdir, config, params):
  """What train.py leaves in a workdir: config.json + params/."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort())
  checkpointing.save_params(os.path.join(workdir, "params"), params)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """(root, shards dir, wav2vec dir, {clip_id: record}); root/vae is an initialised tiny VAE."""
  root = str(tmp_path_factory.mktemp("pld_w2v"))
  w2v_dir = _write_w2v(tmp_path_factory.mktemp("w2v") / "tiny")
  shards = os.path.join(root, "shards")
  records = _write_shards(shards, w2v_dir)
  vc = vae_config.get_config(f"size=tiny,data_dir={shards}")
  vae = tasks.get_task(vc, mesh=None)
  batch = next(input_pipeline.create_iterator(vc))
  params = jax.jit(vae.init)(jax.random.PRNGKey(0), batch)
  _write_workdir(os.path.join(root, "vae"), vc, params)
  return root, shards, w2v_dir, records


@pytest.fixture(scope="module")
def bundle(data):
  """`load_pld` of a PLD workdir holding the wav2vec stage's initial params (head perturbed so
  the denoiser's output depends on its inputs)."""
  root, shards, _, _ = data
  config = _pld_config(root, f"data_dir={shards},audio=wav2vec")
  task = tasks.get_task(config, mesh=None)
  params = nn.unbox(jax.jit(task.init)(jax.random.PRNGKey(0),
                                       next(input_pipeline.create_iterator(config))))
  params["latent_out"] = jax.tree.map(
      lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape), params["latent_out"])
  _write_workdir(os.path.join(root, "pld"), config, params)
  return pld_lib.load_pld(os.path.join(root, "pld", "params"))


def _fake(w2v_dir, feature="wav2vec", **kw):
  """A PLDParams with only what `audio_condition` reads (C from the audio encoder's params)."""
  return pld_lib.PLDParams(
      vae=None, denoiser={"audio_encoder": {"ln_in": {"ln": {"scale": np.ones(C)}}}},
      vae_model={}, model={}, diffusion={}, window=50, audio_feature=feature,
      wav2vec_path=w2v_dir if feature == "wav2vec" else "", **kw)


def _f16(x):
  return np.asarray(x, np.float16).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Config and stage.
# ---------------------------------------------------------------------------------------------

def test_config_reads_the_wav2vec_feature_from_the_data(data, tmp_path):
  _, shards, w2v_dir, _ = data
  # The config itself never reads the disk: a data_dir that does not exist builds the same one.
  missing = pld_config.get_config(f"size=tiny,data_dir={tmp_path / 'none'},audio=wav2vec")
  c = pld_config.get_config(f"size=tiny,data_dir={shards},audio=wav2vec")
  assert c.model.to_dict() == missing.model.to_dict() and c.model.wav2vec_path == ""
  assert c.input["keys"] == ("pose", "gaze", "wav2vec", "text_ids", "text_mask", "mask")
  assert (c.model.audio_input, c.model.audio_feature) == ("features", "wav2vec")
  # Train time (train.py, before config.json): the data's C, folder, layer and clip length.
  tasks.resolve_config(c)
  assert c.model.audio_dim == C and c.model.wav2vec_path == w2v_dir
  assert c.sampling.wav2vec_seconds == pipeline.Options().max_clip_seconds
  c2 = pld_config.get_config(f"size=tiny,data_dir={shards},audio=wav2vec,wav2vec=other")
  tasks.resolve_config(c2)
  assert c2.model.wav2vec_path == os.path.abspath("other")
  # The default is the log-mel condition, exactly as before.
  m = pld_config.get_config(f"size=tiny,data_dir={shards}")
  assert m.input["keys"] == MEL_KEYS and m.model.audio_input == "mel"
  assert "audio_feature" not in m.model and "wav2vec_path" not in m.model
  with pytest.raises(ValueError, match="audio='wav'"):
    pld_config.get_config("size=tiny,audio=wav")


def test_shards_without_wav2vec_fail_naming_the_data_dir(data, tmp_path):
  root, shards, _, _ = data
  mel_only = tmp_path / "mel_shards"
  mel_only.mkdir()
  info = json.loads(open(os.path.join(shards, "dataset_info.json")).read())
  info.update(optional_features=[], optional_feature_dims={}, wav2vec=None)
  (mel_only / "dataset_info.json").write_text(json.dumps(info))
  want = rf"shards in {mel_only} have no wav2vec features(.|\n)*--wav2vec_path"
  with pytest.raises(ValueError, match=want):
    tasks.resolve_config(pld_config.get_config(f"size=tiny,data_dir={mel_only},audio=wav2vec"))
  # The data_dir given by a flag override instead: the stage itself says the same.
  c = _pld_config(root, f"data_dir={shards},audio=wav2vec")
  c.input.data_dir = str(mel_only)
  with pytest.raises(ValueError, match=want):
    train.train_and_evaluate(c, str(tmp_path / "run"), mesh=_mesh())


def test_stage_feeds_wav2vec_to_the_denoiser_in_training_eval_and_infer(data):
  root, shards, _, _ = data
  key = jax.random.PRNGKey(0)
  for arg, audio_key, shape in ((",audio=wav2vec", "wav2vec", (C,)), ("", "mel", (16, 80))):
    config = _pld_config(root, f"data_dir={shards}{arg}")
    batch = next(input_pipeline.create_iterator(config))
    assert batch[audio_key].shape == (32, 50) + shape
    assert ({"mel", "wav2vec"} - {audio_key}).isdisjoint(batch)
    task = tasks.get_task(config, mesh=None)
    params = nn.unbox(jax.eval_shape(task.init, key, batch))
    enc = params["audio_encoder"]
    if audio_key == "wav2vec":  # FeatureAudioEncoder over C-dim features
      assert enc["ln_in"]["ln"]["scale"].shape == (C,) and "conv1" not in enc
    else:  # the log-mel default: MelAudioEncoder, as before
      assert "conv1" in enc and "ln_in" not in enc
    loss, aux = jax.eval_shape(task.loss, params, batch, key, task.frozen, 0)
    assert loss.shape == () and "loss_eps" in aux
    ev = jax.eval_shape(task.evaluate, params, batch, task.frozen)
    assert ev["var_ratio_mean"].shape == ()
    ex = task.infer_example()
    assert ex[audio_key].shape == (1, 50) + shape
    out = jax.eval_shape(task.infer, params, task.frozen, ex)
    assert out["pose"].shape == (1, 50, 6) and out["gaze"].shape == (1, 50, 2)


# ---------------------------------------------------------------------------------------------
# Sampling.
# ---------------------------------------------------------------------------------------------

def test_sampling_features_equal_the_stored_ones(data):
  _, _, w2v_dir, records = data
  params = _fake(w2v_dir)
  for rec in records.values():
    wav = audio_lib.from_int16(rec["audio"])
    t = rec["num_frames"]
    stored = np.asarray(rec["wav2vec"], np.float32)
    # The same model, the same 25 fps alignment, the same float16 rounding as the shards.
    np.testing.assert_array_equal(pld_lib.audio_condition(params, wav, t), stored)
    # Frames before/after the audio (sample_motion's pre-roll) repeat the edge frames.
    np.testing.assert_array_equal(pld_lib.audio_condition(params, wav, t + 24, offset=-12),
                                  stored[np.clip(np.arange(-12, t + 12), 0, t - 1)])
  assert pld_lib.audio_condition(params, None, 7).shape == (7, C)


def test_long_audio_goes_through_wav2vec_in_cross_faded_chunks(data):
  _, _, w2v_dir, records = data
  wav = np.concatenate([audio_lib.from_int16(records[f"syn{i}_c000"]["audio"])
                        for i in range(2)])                          # 8 s, 200 frames
  params = _fake(w2v_dir, wav2vec_seconds=2.0)  # 50-frame chunks at 0, 40, 80, ..., 150
  feats = pld_lib.audio_condition(params, wav, 200)
  assert feats.shape == (200, C) and np.all(np.isfinite(feats))
  chunk = lambda s: _f16(params.wav2vec(wav[s * 640:(s + 50) * 640]))
  # Frames only one chunk covers are that chunk's features; the 10-frame overlaps cross-fade.
  np.testing.assert_array_equal(feats[:40], chunk(0)[:40])
  np.testing.assert_array_equal(feats[50:80], chunk(40)[10:40])
  ramp = (np.arange(10, dtype=np.float32) + 1)[:, None] / 11
  np.testing.assert_allclose(feats[40:50], (1 - ramp) * chunk(0)[40:] + ramp * chunk(40)[:10],
                             atol=2e-3 * np.abs(feats).max())
  # Within wav2vec_seconds (default 10 s, the preprocessed clips' length): one piece.
  one = _fake(w2v_dir)
  np.testing.assert_array_equal(pld_lib.audio_condition(one, wav, 200), _f16(one.wav2vec(wav)))


def test_sample_motion_passes_the_features_to_the_denoiser(data, bundle):
  _, _, _, records = data
  assert bundle.audio_feature == "wav2vec" and bundle.wav2vec.dim == C
  rec = records["syn0_c000"]
  wav = audio_lib.from_int16(rec["audio"])
  t = rec["num_frames"]
  stored = np.asarray(rec["wav2vec"], np.float32)
  seen = []
  fn = bundle._window_fn  # pylint: disable=protected-access

  def spy(*args):
    seen.extend(np.asarray(a) for a in args if np.shape(a)[1:] == (bundle.window, C))
    return fn(*args)

  bundle.__dict__["_window_fn"] = spy
  try:
    m = pld_lib.sample_motion(bundle, wav, seed=0)
  finally:
    bundle.__dict__["_window_fn"] = fn
  assert m.pose.shape == (1, t, 6) and m.gaze.shape == (1, t, 2)
  assert np.all(np.isfinite(np.asarray(m.pose)))
  from jaxtalk.motion import windows  # pylint: disable=g-import-not-at-top
  e = pld_lib.preroll_frames(bundle.window, bundle.overlap)
  starts = windows.window_starts(t + 2 * e, bundle.window, bundle.overlap)
  assert len(seen) == len(starts)
  for s, got in zip(starts, seen):
    np.testing.assert_array_equal(
        got[0], stored[np.clip(np.arange(s - e, s - e + bundle.window), 0, t - 1)])
  # Other audio, other motion; without audio no features are needed.
  m2 = pld_lib.sample_motion(bundle, audio_lib.from_int16(records["syn1_c000"]["audio"]))
  assert not np.allclose(np.asarray(m.pose), np.asarray(m2.pose))
  assert pld_lib.sample_motion(bundle, None, seconds=1.0).pose.shape == (1, 25, 6)


def test_missing_wav2vec_folder_errors(data, bundle, tmp_path):
  from jaxtalk.serve.video_io import InputError  # pylint: disable=g-import-not-at-top
  root, _, w2v_dir, records = data
  params = os.path.join(root, "pld", "params")
  with pytest.raises(ValueError, match=r"wav2vec folder '.*nowhere' \(given\) has no "
                                       r"config\.json(.|\n)*wav2vec=DIR"):
    pld_lib.load_pld(params, wav2vec=str(tmp_path / "nowhere"))
  # A workdir whose config.json records no folder (and no dataset_info.json to ask).
  cfg = json.loads(open(os.path.join(root, "pld", "config.json")).read())
  cfg["model"]["wav2vec_path"] = ""
  cfg["input"]["data_dir"] = ""
  moved = tmp_path / "moved"
  moved.mkdir()
  (moved / "config.json").write_text(json.dumps(cfg))
  os.symlink(params, moved / "params")
  with pytest.raises(ValueError, match=r"trained on wav2vec 2\.0 features(.|\n)*record no "
                                       r"wav2vec folder(.|\n)*wav2vec=DIR"):
    pld_lib.load_pld(str(moved / "params"))
  # The override is used (a copy of the folder gives the stored features).
  wav = audio_lib.from_int16(records["syn0_c000"]["audio"])
  copy = str(shutil.copytree(w2v_dir, tmp_path / "w2v_copy"))
  b = pld_lib.load_pld(str(moved / "params"), wav2vec=copy)
  assert b.wav2vec_path == copy
  np.testing.assert_array_equal(pld_lib.audio_condition(b, wav, 100),
                                np.asarray(records["syn0_c000"]["wav2vec"], np.float32))
  # A folder of another feature size is refused before sampling with it.
  b = pld_lib.load_pld(params, wav2vec=_write_w2v(tmp_path / "wide", hidden_size=24))
  with pytest.raises(ValueError, match="gives 24-dim features, the PLD was trained on 12-dim"):
    pld_lib.sample_motion(b, wav)
  # The generation bundle's sampler: an input error naming the folder.
  sample = pld_lib.lazy_sampler(
      params, os.path.join(root, "vae", "params"), None, wav2vec=str(tmp_path / "nowhere"))
  with pytest.raises(InputError, match="nowhere"):
    sample(wav)


def test_mel_default_is_unchanged(data, bundle, tmp_path):
  root, _, _, records = data
  wav = audio_lib.from_int16(records["syn0_c000"]["audio"])
  # The log-mel windows sample_motion built before: mel_windows(log_mel(wav)), zeros without
  # audio.
  mel = _fake("", feature="mel")
  np.testing.assert_array_equal(pld_lib.audio_condition(mel, wav, 60, offset=-12),
                                audio_lib.mel_windows(audio_lib.log_mel(wav), 60, offset=-12))
  np.testing.assert_array_equal(pld_lib.audio_condition(mel, None, 7), np.zeros((7, 16, 80)))
  # A log-mel stage loads without any wav2vec folder (one passed is ignored).
  cfg = json.loads(open(os.path.join(root, "pld", "config.json")).read())
  for k in ("audio_feature", "audio_dim", "wav2vec_path", "wav2vec_layer"):
    del cfg["model"][k]
  cfg["model"]["audio_input"] = "mel"
  (tmp_path / "mel").mkdir()
  (tmp_path / "mel" / "config.json").write_text(json.dumps(cfg))
  os.symlink(os.path.join(root, "pld", "params"), tmp_path / "mel" / "params")
  b = pld_lib.load_pld(str(tmp_path / "mel" / "params"), wav2vec=str(tmp_path / "nowhere"))
  assert b.audio_feature == "mel" and b.wav2vec_path == ""


# ---------------------------------------------------------------------------------------------
# Slow / real data.
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow  # ~4 min on the shared 2-core CPU: compiling two train steps and an eval.
def test_tiny_vae_and_pld_train_on_wav2vec_and_sample(data, tmp_path):
  """train.py: tiny VAE + PLD (audio=wav2vec) for 4 steps each with an eval; the trained
  bundle samples the requested number of frames from the clip's audio."""
  _, shards, w2v_dir, records = data
  root = str(tmp_path)
  vc = vae_config.get_config(f"size=tiny,data_dir={shards}")
  vc.total_steps = vc.checkpoint_every = 4
  vc.eval_every = 0
  train.train_and_evaluate(vc, os.path.join(root, "vae"), mesh=_mesh())
  res = train.train_and_evaluate(_pld_config(root, f"data_dir={shards},audio=wav2vec"),
                                 os.path.join(root, "pld"), mesh=_mesh())
  assert res["step"] == 4
  assert all(np.isfinite(h["train/loss_eps"]) for h in res["history"] if "train/loss_eps" in h)
  ev = [h for h in res["history"] if "eval/loss_eps" in h]
  assert ev and np.isfinite(ev[-1]["eval/loss_eps"]) and np.isfinite(
      ev[-1]["eval/var_ratio_mean"])
  b = pld_lib.load_pld(os.path.join(root, "pld", "params"))
  assert b.audio_feature == "wav2vec" and b.wav2vec_path == w2v_dir
  wav = audio_lib.from_int16(records["syn2_c000"]["audio"])[:3 * 16000]
  m = pld_lib.sample_motion(b, wav, text="he nods")
  assert m.pose.shape == (1, 75, 6) and np.all(np.isfinite(np.asarray(m.as_features())))


@pytest.mark.needs_data
def test_preprocess_records_the_wav2vec_folder(shared_data, tmp_path, monkeypatch):
  """Real preprocessing with a relative --wav2vec_path records the absolute folder; the stage
  config finds it, and sampling's features equal the stored ones."""
  _write_w2v(tmp_path / "w2v")
  monkeypatch.chdir(tmp_path)
  manifest = tmp_path / "m.jsonl"
  manifest.write_text(json.dumps(dict(video=str(shared_data / "videos" / "vox2_00373.mp4"),
                                      text="she turns her head.")) + "\n")
  info = pipeline.preprocess(str(manifest), str(tmp_path / "out"), resolution=32,
                             max_clip_seconds=3.0, wav2vec_path="w2v")
  assert info["wav2vec"] == {"path": str(tmp_path / "w2v"), "layer": -1}
  assert info["options"]["wav2vec_path"] == str(tmp_path / "w2v")
  c = pld_config.get_config(f"size=tiny,data_dir={tmp_path / 'out'},audio=wav2vec")
  tasks.resolve_config(c)
  assert c.model.wav2vec_path == str(tmp_path / "w2v") and c.model.audio_dim == C
  assert c.sampling.wav2vec_seconds == 3.0
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  src = array_record_data_source.ArrayRecordDataSource(
      [str(tmp_path / "out" / s) for s in info["shards"]])
  params = _fake(c.model.wav2vec_path, wav2vec_seconds=c.sampling.wav2vec_seconds)
  assert len(src) >= 1
  for i in range(len(src)):
    rec = schema.decode_record(src[i])
    np.testing.assert_array_equal(
        pld_lib.audio_condition(params, audio_lib.from_int16(rec["audio"]), rec["num_frames"]),
        np.asarray(rec["wav2vec"], np.float32))
