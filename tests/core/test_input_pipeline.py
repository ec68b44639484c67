"""Tests of jaxtalk/core/input_pipeline.py: synthetic source, state restore, global batches, real
shards."""

import jax
import numpy as np
import pytest

from configs import common
from configs import syncnet as syncnet_config
from jaxtalk.core import input_pipeline
from jaxtalk.core import sharding

EXPECTED = {  # key: (shape without B, dtype) for T=6, H=W=32, Lt=32
  "frames": ((6, 32, 32, 3), np.float32),
  "source": ((32, 32, 3), np.float32),
  "source_pose": ((6,), np.float32),
  "pose": ((6, 6), np.float32),
  "gaze": ((6, 2), np.float32),
  "mel": ((6, 16, 80), np.float32),
  "mouth_box": ((6, 4), np.float32),
  "text_ids": ((32,), np.int32),
  "text_mask": ((32,), np.bool_),
  "emotion": ((), np.int32),
  "speaker": ((), np.int32),
  "mask": ((6,), np.bool_),
}


def _config(**input_overrides):
  c = common.base_config()
  c.batch_size = 8
  c.input.synthetic = True
  c.input.window = 6
  c.input.resolution = 32
  for k, v in input_overrides.items():
    c.input[k] = v
  return c


def test_synthetic_batch_layout():
  batch = next(input_pipeline.create_iterator(_config(), mesh=None))
  assert set(batch) == set(EXPECTED)
  for key, (shape, dtype) in EXPECTED.items():
    assert batch[key].shape == (8,) + shape, key
    assert batch[key].dtype == dtype, key
  assert batch["frames"].min() >= -1 and batch["frames"].max() <= 1
  assert batch["mouth_box"].min() >= 0 and batch["mouth_box"].max() <= 1
  assert np.all(batch["mouth_box"][..., 2] > batch["mouth_box"][..., 0])
  # text mask marks exactly the non-padding ids.
  np.testing.assert_array_equal(batch["text_mask"], batch["text_ids"] > 0)


def test_synthetic_is_deterministic_and_keys_are_honoured():
  a = next(input_pipeline.create_iterator(_config(), mesh=None))
  b = next(input_pipeline.create_iterator(_config(keys=("pose", "mel")), mesh=None))
  assert set(b) == {"pose", "mel"}
  np.testing.assert_array_equal(a["pose"], b["pose"])
  np.testing.assert_array_equal(a["mel"], b["mel"])
  c = next(input_pipeline.create_iterator(_config(shuffle_seed=1), mesh=None))
  assert not np.allclose(a["pose"], c["pose"])
  ev = next(input_pipeline.create_iterator(_config(), mesh=None, split="eval"))
  assert not np.allclose(a["pose"], ev["pose"])
  with pytest.raises(ValueError, match="unknown keys"):
    input_pipeline.create_iterator(_config(keys=("nope",)), mesh=None)


def test_synthetic_state_restore_gives_same_next_batch():
  it = input_pipeline.create_iterator(_config(), mesh=None)
  next(it)
  state = it.get_state()
  expected = next(it)
  fresh = input_pipeline.create_iterator(_config(), mesh=None)
  fresh.set_state(state)
  got = next(fresh)
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_to_global_shards_batch_over_data_axes():
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  batch = next(input_pipeline.create_iterator(_config(), mesh=mesh))
  g = input_pipeline.to_global(batch, mesh)
  assert g["frames"].shape == (8, 6, 32, 32, 3)
  assert len(g["frames"].addressable_shards) == jax.device_count()
  assert g["frames"].addressable_shards[0].data.shape[0] == 8 // 4
  np.testing.assert_array_equal(np.asarray(g["pose"]), batch["pose"])


def test_per_process_sharding_partitions_the_stream(monkeypatch):
  whole = next(input_pipeline.create_iterator(_config(), mesh=None))
  parts = []
  for p in range(2):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    parts.append(next(input_pipeline.create_iterator(_config(), mesh=None)))
  assert parts[0]["pose"].shape[0] == 4  # local batch = 8 // 2
  # Process p gets global examples p, p+2, p+4, ...: together the first 8 examples.
  np.testing.assert_array_equal(parts[0]["pose"], whole["pose"][0::2])
  np.testing.assert_array_equal(parts[1]["pose"], whole["pose"][1::2])


# ----------------------------------------------------------------------------------------------
# Real shards (../shared/data at 64 px).
# ----------------------------------------------------------------------------------------------
HOLDOUT = "hdtf_WRA_RoyBlunt_000_c001"


def _real_config(data_dir, **input_overrides):
  c = common.base_config()
  c.batch_size = 4
  c.input.data_dir = str(data_dir)
  c.input.window = 20
  c.input.resolution = 64
  c.input.holdout = (HOLDOUT,)
  for k, v in input_overrides.items():
    c.input[k] = v
  return c


@pytest.mark.needs_data
def test_real_windows_round_trip(real_shards):
  import cv2  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  from data_pipelines import schema  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import audio  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import text  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(str(real_shards))
  train, ev = input_pipeline.split_clips(info, (HOLDOUT,))
  assert [info["clips"][i]["clip_id"] for i in ev] == [HOLDOUT]
  assert len(train) == len(info["clips"]) - 1
  batch = next(input_pipeline.create_iterator(_real_config(real_shards), mesh=None, split="eval"))
  assert set(batch) == set(EXPECTED)
  for key, (_, dtype) in EXPECTED.items():
    assert batch[key].dtype == dtype, key
  assert batch["frames"].shape == (4, 20, 64, 64, 3) and batch["source"].shape == (4, 64, 64, 3)
  assert batch["mel"].shape == (4, 20, 16, 80) and batch["pose"].shape == (4, 20, 6)

  # Eval windows: starts 0, 20, 40, 60 of the held-out clip, in order.
  src = array_record_data_source.ArrayRecordDataSource(
      [str(real_shards / s) for s in info["shards"]])
  rec = schema.decode_record(src[ev[0]])
  mean, std = np.array(info["pose_mean"]), np.array(info["pose_std"])
  mel_w = audio.mel_windows(audio.log_mel(audio.from_int16(rec["audio"])), rec["num_frames"])
  for b, start in enumerate((0, 20, 40, 60)):
    sl = slice(start, start + 20)
    frames = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(f, np.uint8), 1),
                                    cv2.COLOR_BGR2RGB) for f in rec["frames"][sl]])
    np.testing.assert_allclose(batch["frames"][b], frames / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(batch["pose"][b], (rec["pose"][sl] - mean) / std, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(batch["mouth_box"][b], rec["mouth_box"][sl], atol=1e-6)
    # Audio features stay aligned end to end: window t = mel frames of video frames t-2..t+2.
    np.testing.assert_allclose(batch["mel"][b], mel_w[sl], atol=0.02)
    assert batch["mask"][b].all()
    # The source frame is from another time of the same clip, >= 5 frames from the window.
    dists = [np.abs(batch["source"][b] - batch["frames"][b, t]).mean() for t in range(20)]
    assert min(dists) > 0.0
  ids, mask = text.make_tokenizer(vocab=info["vocab"]).encode([rec["text"]], 32)
  np.testing.assert_array_equal(batch["text_ids"][0], ids[0])
  np.testing.assert_array_equal(batch["text_mask"][0], mask[0])
  assert batch["speaker"][0] == info["speakers"].index("RoyBlunt")
  assert batch["emotion"][0] == 0


@pytest.mark.needs_data
def test_real_train_iterator_restores_and_augments(real_shards):
  import json  # pylint: disable=g-import-not-at-top
  config = _real_config(real_shards)
  it = input_pipeline.create_iterator(config, mesh=None)
  first = next(it)
  state = json.loads(json.dumps(it.get_state()))  # the state is plain JSON
  expected = [next(it) for _ in range(2)]
  fresh = input_pipeline.create_iterator(config, mesh=None)
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert first["frames"].shape == (4, 20, 64, 64, 3)
  assert np.all((first["mouth_box"] >= 0) & (first["mouth_box"] <= 1))
  # Random crop changes the framing between epochs of the same clip; without it frames equal the
  # stored crops exactly (checked in the round trip test).
  no_crop = next(input_pipeline.create_iterator(_real_config(real_shards, random_crop=False),
                                                mesh=None))
  assert not np.allclose(no_crop["frames"], first["frames"])


def test_residual_av_offset():
  assert input_pipeline.residual_av_offset({"av_offset": 5, "audio_shift": 5}) == 0
  assert input_pipeline.residual_av_offset({"av_offset": 6, "audio_shift": 0}) == 6
  assert input_pipeline.residual_av_offset({"av_offset": -3}) == -3
  assert input_pipeline.residual_av_offset({"clip_id": "old shard"}) is None
  # Below min_confidence the estimate is unknown.
  assert input_pipeline.residual_av_offset({"av_offset": 6, "av_confidence": 2.0}, 3.0) is None
  assert input_pipeline.residual_av_offset({"av_offset": 6, "av_confidence": 3.1}, 3.0) == 6


def test_out_of_sync_clips_ignores_uncertain_estimates():
  clips = [dict(clip_id="late_sure", av_offset=6, av_confidence=4.0, audio_shift=0),
           dict(clip_id="late_unsure", av_offset=-10, av_confidence=0.8, audio_shift=0),
           dict(clip_id="fixed", av_offset=5, av_confidence=4.0, audio_shift=5),
           dict(clip_id="old")]
  info = dict(clips=clips, options=dict(sync_min_confidence=3.0))
  assert input_pipeline.out_of_sync_clips(info, 2) == ([0], [1])
  # An explicit threshold overrides the shards' own.
  assert input_pipeline.out_of_sync_clips(info, 2, 0.5) == ([0, 1], [])
  # Shards without options use av_sync's default (3.0).
  assert input_pipeline.out_of_sync_clips(dict(clips=clips), 2) == ([0], [1])


@pytest.mark.needs_data
def test_max_av_offset_leaves_out_clips_still_out_of_sync(real_shards, caplog):
  # real_shards only MEASURES offsets (sync_audio=False): the HDTF clips keep theirs (+3..+6).
  info = input_pipeline.load_dataset_info(str(real_shards))
  min_conf = syncnet_config.get_config("size=tiny").input.av_min_confidence
  late = {c["speaker"] for c in info["clips"]
          if abs(input_pipeline.residual_av_offset(c, min_conf) or 0) > 2}
  assert {"RoyBlunt", "KatieHill"} <= late
  config = _real_config(real_shards, holdout=(), max_av_offset=2, av_min_confidence=min_conf,
                        keys=("speaker", "mask"))
  it = input_pipeline.create_iterator(config, mesh=None)
  seen = {info["speakers"][int(i)] for _ in range(12) for i in next(it)["speaker"]}
  assert seen and not seen & late, seen
  assert "still out of sync" in caplog.text
  everything = input_pipeline.create_iterator(_real_config(real_shards, holdout=(),
                                                           keys=("speaker",)), mesh=None)
  assert {info["speakers"][int(i)] for _ in range(12) for i in next(everything)["speaker"]} & late


@pytest.mark.needs_data
def test_bad_record_is_reported_and_skipped(real_shards, tmp_path, caplog):
  import json  # pylint: disable=g-import-not-at-top
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(str(real_shards))
  src = array_record_data_source.ArrayRecordDataSource(
      [str(real_shards / s) for s in info["shards"]])
  good = src[0]
  pipeline.write_shard(str(tmp_path / "clips-00000-of-00001.array_record"),
                       [good, b"\x00corrupt record"])
  clip0 = dict(info["clips"][0], index=0, shard="clips-00000-of-00001.array_record")
  clip1 = dict(clip0, clip_id="broken", index=1)
  info = dict(info, clips=[clip0, clip1], shards=["clips-00000-of-00001.array_record"])
  (tmp_path / "dataset_info.json").write_text(json.dumps(info))
  config = _real_config(tmp_path, holdout=(), eval_fraction=0.0, windows_per_clip=1)
  it = input_pipeline.create_iterator(config, mesh=None)
  with caplog.at_level("WARNING"):
    batches = [next(it) for _ in range(2)]
  assert all(b["frames"].shape[0] == 4 for b in batches)
  assert "broken" in caplog.text and "skipping record" in caplog.text


def test_tail_start():
  assert input_pipeline.tail_start(100, 0.0, 20) == 100
  assert input_pipeline.tail_start(100, 0.2, 20) == 80
  assert input_pipeline.tail_start(100, 0.9, 20) == 20     # one window left to train on
  assert input_pipeline.tail_start(30, 0.2, 20) == 20      # clip too short: train side first


@pytest.mark.needs_data
def test_eval_tail_splits_each_training_clip_in_time(real_shards):
  """`input.eval_tail`: eval windows come from the last fraction of the TRAINING clips, train
  windows and their source frames from the frames before it; the held-out clip is not used.
  Frames are located in their clips by their pixels (no crop, stored resolution)."""
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  key = lambda f: np.round((np.asarray(f) + 1.0) * 127.5).astype(np.uint8).tobytes()
  clips = {c["clip_id"]: c for c in reenactment.read_clips(str(real_shards))}
  where = {key(f): (cid, t) for cid, c in clips.items() for t, f in enumerate(c["frames"])}

  def located(images):
    return [where[key(f)] for f in np.asarray(images).reshape((-1, 64, 64, 3))
            if key(f) in where]

  kw = dict(eval_tail=0.25, random_crop=False)
  ev = input_pipeline.create_iterator(_real_config(real_shards, **kw), mesh=None, split="eval")
  tr = input_pipeline.create_iterator(_real_config(real_shards, **kw), mesh=None, split="train")
  starts = {cid: input_pipeline.tail_start(len(c["frames"]), 0.25, 20) for cid, c in clips.items()}
  seen_eval = [h for _ in range(6) for h in located(next(ev)["frames"])]
  seen_train = []
  for _ in range(6):
    b = next(tr)
    seen_train += located(b["frames"]) + located(b["source"])
  assert len(seen_eval) > 100 and len(seen_train) > 100, (len(seen_eval), len(seen_train))
  assert all(cid != HOLDOUT and t >= starts[cid] for cid, t in seen_eval), seen_eval[:5]
  assert all(cid != HOLDOUT and t < starts[cid] for cid, t in seen_train)
  assert len({cid for cid, _ in seen_eval}) >= 3
