"""Tests of the Beam preprocessing pipeline (data_pipelines/) on the real clips in
../shared/data."""

import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from data_pipelines import pipeline
from data_pipelines import readers
from data_pipelines import schema
from jaxtalk.features import audio as audio_lib
from tests import media


def _records(out_dir):
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  info = json.loads((out_dir / "dataset_info.json").read_text())
  paths = [str(out_dir / s) for s in info["shards"]]
  src = array_record_data_source.ArrayRecordDataSource(paths)
  recs = [schema.decode_record(src[i]) for i in range(len(src))]
  return info, recs


@pytest.fixture(scope="module")
def real(real_shards):
  return _records(real_shards)


def _manifest(shared_data):
  return [json.loads(line) for line in (shared_data / "manifest.jsonl").read_text().splitlines()]


def _source_duration(path):
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as c:
    s = c.streams.video[0]
    return s.frames / float(s.average_rate)


# ----------------------------------------------------------------------------------------------
# Pure helpers (no data needed).
# ----------------------------------------------------------------------------------------------
def test_record_round_trip_and_validation():
  t = 3
  rec = dict(
      schema_version=schema.SCHEMA_VERSION, clip_id="v_c000", video_id="v", source_path="v.mp4",
      dataset="hdtf", speaker="s", emotion="happy", emotion_intensity=2, view="front",
      text="nods", fps=25, start_time=0.0, num_frames=t, resolution=8, frames=[b"a", b"b", b"c"],
      crop_box=np.zeros([t, 4], np.float32), landmarks=np.ones([t, 478, 3], np.float16),
      face_found=np.ones([t], bool), pose=np.arange(t * 6, dtype=np.float32).reshape(t, 6),
      gaze=np.zeros([t, 2], np.float32), mouth_box=np.zeros([t, 4], np.float32),
      audio=np.arange(t * 640, dtype=np.int16), mel=np.zeros([1 + t * 640 // 200, 80], np.float16),
      num_faces_max=1, notes=[])
  back = schema.decode_record(schema.encode_record(rec))
  for k, v in rec.items():
    if isinstance(v, np.ndarray):
      np.testing.assert_array_equal(back[k], v)
      assert back[k].dtype == v.dtype
    else:
      assert back[k] == v, k
  assert set(schema.decode_record(schema.encode_record(rec), keys=["pose"])) == {
      "pose", "schema_version", "clip_id"}
  bad = dict(rec, audio=np.zeros([5], np.int16))
  with pytest.raises(ValueError, match="audio"):
    schema.encode_record(bad)
  with pytest.raises(ValueError, match="not a jaxtalk clip record"):
    schema.decode_record(b"\xc1garbage")


def test_emotion_names():
  assert schema.emotion_index("Disgust") == schema.EMOTIONS.index("disgusted")
  assert schema.emotion_name("") == "neutral"
  with pytest.raises(ValueError, match="unknown emotion"):
    schema.emotion_name("bored")


def test_readers_parse_dataset_layouts(tmp_path):
  mead = tmp_path / "MEAD" / "M003" / "video" / "front" / "angry" / "level_2" / "001.mp4"
  mead_audio = tmp_path / "MEAD" / "M003" / "audio" / "angry" / "level_2" / "001.m4a"
  vox = tmp_path / "vox2" / "id00012" / "abcDEF" / "00003.mp4"
  hdtf = tmp_path / "hdtf" / "WRA_RoyBlunt_000.mp4"
  celeb = tmp_path / "celebv" / "videos" / "xyz_1.mp4"
  text = tmp_path / "celebv" / "action_dur" / "xyz_1.txt"
  for p in (mead, mead_audio, vox, hdtf, celeb, text):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("A man turns his head.\n" if p.suffix == ".txt" else "x")
  items = {it.dataset: it for it in readers.read_items(str(tmp_path))}
  assert items["mead"].speaker == "M003" and items["mead"].emotion == "angry"
  assert items["mead"].intensity == 2 and items["mead"].view == "front"
  assert items["mead"].audio == str(mead_audio)
  assert items["voxceleb2"].speaker == "id00012"
  assert items["hdtf"].speaker == "RoyBlunt"
  assert items["celebvtext"].text == "A man turns his head."
  csv = tmp_path / "m.csv"
  csv.write_text("video,speaker,emotion,text\nhdtf/WRA_RoyBlunt_000.mp4,rb,happy,nods\n")
  (it,) = readers.read_items(str(csv))
  assert it.video == str(hdtf) and it.speaker == "rb" and it.emotion == "happy"
  with pytest.raises(ValueError, match="no input videos"):
    readers.read_items(str(tmp_path / "nothing" / "*.mp4"))


# ----------------------------------------------------------------------------------------------
# Real clips.
# ----------------------------------------------------------------------------------------------
@pytest.mark.needs_data
def test_every_clip_yields_records_with_25fps_frame_counts(real, real_shards, shared_data):
  info, recs = real
  assert (real_shards / "dead_letter.jsonl").read_text() == ""
  assert info["schema_version"] == schema.SCHEMA_VERSION
  assert info["num_clips"] == len(recs) and info["num_frames"] == sum(
      r["num_frames"] for r in recs)
  for row in _manifest(shared_data):
    vid = os.path.splitext(os.path.basename(row["video"]))[0]
    mine = [r for r in recs if r["video_id"] == vid]
    assert mine, f"no record for {vid}"
    for r in mine:
      schema.validate_record(r)
      assert r["fps"] == 25 and r["resolution"] == 64
      assert r["speaker"] == row["speaker"] and r["text"] == row["text"]
    expected = _source_duration(str(shared_data / row["video"])) * 25
    got = sum(r["num_frames"] for r in mine)
    # A clip whose audio was re-synchronised (--sync_audio) loses at most |audio_shift| frames
    # at an end where the source has no audio for them.
    trimmed = sum(abs(r["audio_shift"]) for r in mine)
    assert -1 - trimmed <= got - expected <= 1, (vid, got, expected, trimmed)
  # The 30 fps clip comes out at 25 fps: 199 frames at 30 fps = 6.63 s -> 165 frames.
  (w4,) = [r for r in recs if r["video_id"] == "wild_4_30fps"]
  assert abs(w4["num_frames"] - 165) <= 1
  # The 15 s clip was cut into clips of at most 10 s.
  roy = [r for r in recs if r["video_id"] == "hdtf_WRA_RoyBlunt_000"]
  assert len(roy) == 2 and max(r["num_frames"] for r in roy) <= 250


@pytest.mark.needs_data
def test_audio_and_features_are_aligned(real, shared_data):
  _, recs = real
  for r in recs:
    t = r["num_frames"]
    assert r["audio"].shape == (t * 640,)
    assert r["mel"].shape == (1 + t * 640 // 200, 80)
    np.testing.assert_allclose(
        r["mel"].astype(np.float32), audio_lib.log_mel(audio_lib.from_int16(r["audio"])),
        atol=0.01)
  # The stored audio is the source's audio track from the time of the clip's first frame (plus
  # the shift --sync_audio applied, in frames): cross-correlation with an independent decode
  # peaks at lag 0.
  for vid in ("hdtf_WRA_RoyBlunt_000", "wild_4_30fps"):
    src = audio_lib.load_audio(str(shared_data / "videos" / f"{vid}.mp4"))
    for r in [r for r in recs if r["video_id"] == vid]:
      s0 = int(round((r["start_time"] + r["audio_shift"] / 25) * 16000))
      stored = audio_lib.from_int16(r["audio"])[:32000]
      lags = range(-400, 401, 40)
      score = [np.dot(stored[1000:30000], src[s0 + 1000 + lag:s0 + 30000 + lag]) for lag in lags]
      assert list(lags)[int(np.argmax(score))] == 0, (vid, r["clip_id"])


@pytest.mark.needs_data
def test_stored_crops_contain_a_face_and_landmarks_match(real):
  import cv2  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face  # pylint: disable=g-import-not-at-top
  _, recs = real
  checked = 0
  for r in recs:
    for k in range(0, r["num_frames"], 10):
      img = cv2.cvtColor(cv2.imdecode(np.frombuffer(r["frames"][k], np.uint8), 1),
                         cv2.COLOR_BGR2RGB)
      assert img.shape == (64, 64, 3)
      big = cv2.resize(img, (256, 256), interpolation=cv2.INTER_CUBIC)
      boxes = face.detect_faces(big, min_confidence=0.5)
      assert len(boxes), f"no face re-detected in {r['clip_id']} frame {k}"
      # The detected box centre agrees with the stored landmarks' centre (crop coordinates).
      lm = r["landmarks"][k].astype(np.float32)
      centre = (lm[:468, :2].min(0) + lm[:468, :2].max(0)) / 2
      det_centre = (boxes[0, :2] + boxes[0, 2:4]) / 2 / 256
      assert np.abs(centre - det_centre).max() < 0.15, (r["clip_id"], k, centre, det_centre)
      checked += 1
      mb = r["mouth_box"][k]
      assert 0 <= mb[0] < mb[2] <= 1 and 0.4 < mb[1] < mb[3] <= 1, mb
  assert checked > 100


@pytest.mark.needs_data
def test_poses_are_plausible_smooth_and_turned_head_has_larger_yaw(real):
  info, recs = real
  for r in recs:
    p = r["pose"]
    assert np.isfinite(p).all()
    assert np.abs(p[:, 0]).max() < 1.2 and np.abs(p[:, 1]).max() < 0.8, r["clip_id"]
    assert np.abs(p[:, 2]).max() < 0.6, r["clip_id"]
    assert np.all((p[:, 5] > 0.4) & (p[:, 5] < 0.9)), r["clip_id"]
    assert np.abs(p[:, 3:5]).max() < 0.15, r["clip_id"]
    # Smooth: bounded frame-to-frame change (0.1 rad = 5.7 degrees per 40 ms).
    assert np.abs(np.diff(p[:, :3], axis=0)).max() < 0.1, r["clip_id"]
    assert np.abs(np.diff(r["gaze"], axis=0)).max() < 0.2, r["clip_id"]
    assert np.abs(r["gaze"]).max() < 0.8, r["clip_id"]
  yaw = {r["video_id"]: np.median(np.abs(r["pose"][:, 0])) for r in recs}
  assert yaw["vox2_00373"] > yaw["hdtf_WRA_RoyBlunt_000"] + 0.15, yaw
  assert yaw["vox2_00373"] > 0.3
  # KatieHill turns her head both ways: large yaw range.
  katie = [r for r in recs if r["video_id"] == "hdtf_WDA_KatieHill_000"][0]["pose"][:, 0]
  assert katie.max() - katie.min() > 0.5
  assert len(info["pose_std"]) == 6 and min(info["pose_std"]) > 0
  assert len(info["gaze_std"]) == 2 and len(info["mel_std"]) == 80
  assert "head" in info["vocab"] and info["vocab"][:2] == ["<pad>", "<unk>"]


def _write_no_face_video(path, seconds=2.0):
  """A procedurally drawn video (moving coloured bars, no face) with a 440 Hz tone."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path), "w") as out:
    vs = out.add_stream("libx264", rate=25)
    vs.width = vs.height = 128
    vs.pix_fmt = "yuv420p"
    aus = out.add_stream("aac", rate=16000)
    aus.layout = "mono"
    n = int(seconds * 25)
    for k in range(n):
      img = np.zeros([128, 128, 3], np.uint8)
      img[:, (k * 4) % 128:(k * 4) % 128 + 20] = (200, 50, 50)
      img[(k * 3) % 128:(k * 3) % 128 + 10, :] = (50, 200, 50)
      for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        out.mux(p)
    for p in vs.encode():
      out.mux(p)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for i in range(0, tone.size, 1024):
      fr = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="flt", layout="mono")
      fr.sample_rate = 16000
      for p in aus.encode(fr):
        out.mux(p)
    for p in aus.encode():
      out.mux(p)


def _write_without_audio(src, dst, silent_track=False):
  """Copies the video stream of `src`; with `silent_track`, adds an all-zero AAC track."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(src)) as i, av.open(str(dst), "w") as o:
    s = i.streams.video[0]
    os_ = o.add_stream_from_template(s)
    if silent_track:  # every stream must exist before the first packet is muxed.
      aus = o.add_stream("aac", rate=16000)
      aus.layout = "mono"
    for pkt in i.demux(s):
      if pkt.dts is None:
        continue
      pkt.stream = os_
      o.mux(pkt)
    if silent_track:
      seconds = float(s.duration * s.time_base)
      for k in range(0, int(seconds * 16000), 1024):
        fr = av.AudioFrame.from_ndarray(np.zeros([1, 1024], np.float32), format="flt",
                                        layout="mono")
        fr.sample_rate = 16000
        for p in aus.encode(fr):
          o.mux(p)
      for p in aus.encode():
        o.mux(p)


@pytest.mark.needs_data
def test_bad_inputs_go_to_dead_letter_and_reruns_are_identical(shared_data, tmp_path,
                                                                monkeypatch):
  scratch = tmp_path / "scratch"   # The DirectRunner must not leave Beam temp dirs behind.
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  vids = shared_data / "videos"
  bad = tmp_path / "in"
  bad.mkdir()
  data = (vids / "vox2_00086.mp4").read_bytes()
  (bad / "truncated.mp4").write_bytes(data[:len(data) // 2])
  _write_without_audio(vids / "vox2_00086.mp4", bad / "silent.mp4")
  _write_without_audio(vids / "vox2_00086.mp4", bad / "mute.mp4", silent_track=True)
  shutil.copy(shared_data / "images" / "HDTF_0.jpg", bad / "image.mp4")
  _write_no_face_video(bad / "noface.mp4")
  rows = [dict(video=str(bad / n), speaker=n) for n in
          ("truncated.mp4", "silent.mp4", "mute.mp4", "image.mp4", "noface.mp4")]
  rows.append(dict(video=str(vids / "vox2_00373.mp4"), speaker="vox2_00373", text="turns"))
  manifest = tmp_path / "m.jsonl"
  manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

  out1 = tmp_path / "out1"
  info = pipeline.preprocess(str(manifest), str(out1), resolution=32, max_clip_seconds=3.0)
  dead = [json.loads(line) for line in (out1 / "dead_letter.jsonl").read_text().splitlines()]
  by_name = {os.path.basename(d["path"]): d for d in dead}
  assert set(by_name) == {"truncated.mp4", "silent.mp4", "mute.mp4", "image.mp4",
                          "noface.mp4"}, dead
  assert by_name["truncated.mp4"]["stage"] == "decode"
  assert by_name["silent.mp4"]["stage"] == "audio"
  assert "no audio" in by_name["silent.mp4"]["reason"]
  assert by_name["mute.mp4"]["stage"] == "audio" and "silent" in by_name["mute.mp4"]["reason"]
  assert by_name["image.mp4"]["stage"] == "decode" and "short" in by_name["image.mp4"]["reason"]
  assert by_name["noface.mp4"]["stage"] == "face"
  for d in dead:
    assert d["reason"] and d["path"].endswith(".mp4")
  # The good clip (5.1 s) still made it, cut into two clips of <= 3 s.
  assert info["num_clips"] == 2 and info["num_dead"] == 5
  assert sorted(c["clip_id"] for c in info["clips"]) == ["vox2_00373_c000", "vox2_00373_c001"]

  out2 = tmp_path / "out2"
  pipeline.preprocess(str(manifest), str(out2), resolution=32, max_clip_seconds=3.0)
  for name in info["shards"]:
    assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
  assert (out1 / "dataset_info.json").read_text() == (out2 / "dataset_info.json").read_text()
  assert not [p.name for p in scratch.iterdir() if p.name.startswith("beam")]


@pytest.mark.needs_data
def test_cli_runs_and_reports_bad_input(shared_data, tmp_path, capsys):
  assert pipeline.run(["jaxtalk preprocess", f"--input={tmp_path}/none/*.mp4",
                       f"--output_dir={tmp_path}/o"]) == 2
  assert "no input videos" in capsys.readouterr().err


def _write_two_faces_video(src, dst, seconds=2.0, second_size=128):
  """Frames of `src` with a copy of side `second_size` beside them (two faces), tone audio."""
  import av  # pylint: disable=g-import-not-at-top
  import cv2  # pylint: disable=g-import-not-at-top
  with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height = 256 + second_size, 256
    vs.pix_fmt = "yuv420p"
    aus = out.add_stream("aac", rate=16000)
    aus.layout = "mono"
    for k, fr in enumerate(inp.decode(video=0)):
      if k >= seconds * 25:
        break
      img = fr.to_ndarray(format="rgb24")
      canvas = np.full([256, 256 + second_size, 3], 90, np.uint8)
      canvas[:, :256] = img
      top = (256 - second_size) // 2
      canvas[top:top + second_size, 256:] = cv2.resize(img, (second_size, second_size),
                                                         interpolation=cv2.INTER_AREA)
      for p in vs.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
        out.mux(p)
    for p in vs.encode():
      out.mux(p)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for i in range(0, tone.size, 1024):
      fr = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="flt", layout="mono")
      fr.sample_rate = 16000
      for p in aus.encode(fr):
        out.mux(p)
    for p in aus.encode():
      out.mux(p)


@pytest.mark.needs_data
def test_several_faces_keep_largest_and_extreme_pose_is_dead_lettered(shared_data, tmp_path):
  vids = shared_data / "videos"
  _write_two_faces_video(vids / "hdtf_WRA_RoyBlunt_000.mp4", tmp_path / "two.mp4")
  # Two faces of the same size: the crop must stay with one person (no jumps between them).
  _write_two_faces_video(vids / "hdtf_WRA_RoyBlunt_000.mp4", tmp_path / "same.mp4",
                         second_size=256)
  rows = [dict(video=str(tmp_path / "two.mp4"), speaker="two"),
          dict(video=str(tmp_path / "same.mp4"), speaker="same"),
          dict(video=str(vids / "vox2_00373.mp4"), speaker="turned")]
  manifest = tmp_path / "m.jsonl"
  manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
  # vox2_00373's head is turned by ~0.5 rad: with a 0.35 rad limit it is an extreme pose.
  out = tmp_path / "out"
  # Through the command line (`jaxtalk preprocess ...`), with a Beam option passed through.
  assert pipeline.run(["jaxtalk preprocess", f"--input={manifest}", f"--output_dir={out}",
                       "--resolution=32", "--max_abs_yaw=0.35", "--direct_num_workers=1"]) == 0
  info = json.loads((out / "dataset_info.json").read_text())
  dead = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
  assert [(os.path.basename(d["path"]), d["stage"]) for d in dead] == [("vox2_00373.mp4", "pose")]
  assert "extreme head pose" in dead[0]["reason"]
  warnings = (out / "warnings.jsonl").read_text()
  assert "several faces" in warnings and "kept the largest" in warnings
  _, recs = _records(out)
  (rec, same) = sorted(recs, key=lambda r: r["video_id"] != "two")
  same_x = (same["crop_box"][:, 0] + same["crop_box"][:, 2]) / 2
  assert np.all(same_x < 256) or np.all(same_x > 256), same_x
  assert np.abs(np.diff(same_x)).max() < 3.0
  assert same["num_faces_max"] == 2
  assert rec["num_faces_max"] == 2 and any("several faces" in n for n in rec["notes"])
  # The crop follows the large face on the left (x < 256), not the small copy on the right.
  centre_x = (rec["crop_box"][:, 0] + rec["crop_box"][:, 2]) / 2
  assert np.all(centre_x < 200), centre_x.max()
  assert info["num_clips"] == 2


@pytest.mark.needs_data
def test_tfds_data_source_over_the_shards(real, real_shards, tmp_path):
  from data_pipelines import tfds_source  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  info, recs = real
  source = tfds_source.data_source(str(real_shards), str(tmp_path / "tfds"))
  train, ev = input_pipeline.split_clips(info)
  assert len(source["train"]) == len(train) and len(source["eval"]) == len(ev)
  by_id = {r["clip_id"]: r for r in recs}
  ex = source["eval"][0]
  rec = by_id[ex["clip_id"].decode() if isinstance(ex["clip_id"], bytes) else ex["clip_id"]]
  assert len(ex["frames"]) == rec["num_frames"] and ex["frames"][0].shape == (64, 64, 3)
  np.testing.assert_array_equal(ex["pose"], rec["pose"])
  np.testing.assert_array_equal(ex["audio"], rec["audio"])
  assert ex["emotion"] == schema.EMOTIONS.index(rec["emotion"])


def _save_random(cls, cfg, path, input_shape):
  """Saves a randomly initialised transformers Flax model (jitted init: eager init is slow)."""
  import jax  # pylint: disable=g-import-not-at-top
  model = cls(cfg, _do_init=False)
  params = jax.jit(model.init_weights, static_argnums=1)(jax.random.PRNGKey(0), input_shape)
  model.save_pretrained(str(path), params=params)


def _tiny_wav2vec(path):
  from transformers import FlaxWav2Vec2Model, Wav2Vec2Config  # pylint: disable=g-import-not-at-top
  cfg = Wav2Vec2Config(
      hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
      conv_dim=(8,) * 7, do_stable_layer_norm=True, feat_extract_norm="layer",
      num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
  _save_random(FlaxWav2Vec2Model, cfg, path, (1, 1024))


def _tiny_clip(path):
  """A random tiny CLIP text model with a letters-only BPE tokenizer in `path`."""
  from transformers import CLIPTextConfig, FlaxCLIPTextModel  # pylint: disable=g-import-not-at-top
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(",.'!?")
  tokens = letters + [c + "</w>" for c in letters] + ["<|startoftext|>", "<|endoftext|>"]
  path.mkdir(parents=True, exist_ok=True)
  (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
  (path / "merges.txt").write_text("#version: 0.2\n")
  cfg = CLIPTextConfig(vocab_size=len(tokens), hidden_size=16, intermediate_size=32,
                       num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                       bos_token_id=len(tokens) - 2, eos_token_id=len(tokens) - 1)
  _save_random(FlaxCLIPTextModel, cfg, path, (1, 8))


@pytest.mark.slow  # ~1 min on a loaded 2-core CPU: building and jitting two random models.
@pytest.mark.needs_data
def test_optional_wav2vec_and_clip_features(shared_data, tmp_path):
  from configs import common  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  _tiny_wav2vec(tmp_path / "w2v")
  _tiny_clip(tmp_path / "clip")
  manifest = tmp_path / "m.jsonl"
  manifest.write_text(json.dumps(dict(video=str(shared_data / "videos" / "vox2_00373.mp4"),
                                      text="she turns her head.")) + "\n")
  out = tmp_path / "out"
  info = pipeline.preprocess(str(manifest), str(out), resolution=32, max_clip_seconds=3.0,
                             wav2vec_path=str(tmp_path / "w2v"), clip_path=str(tmp_path / "clip"))
  assert info["optional_features"] == ["text_embedding", "wav2vec"]
  assert info["optional_feature_dims"] == {"text_embedding": 16, "wav2vec": 16}
  _, recs = _records(out)
  for r in recs:
    assert r["wav2vec"].shape == (r["num_frames"], 16) and r["wav2vec"].dtype == np.float16
    assert np.isfinite(r["wav2vec"]).all() and r["wav2vec"].std() > 0
    assert r["text_embedding"].shape == (16,)
  np.testing.assert_array_equal(recs[0]["text_embedding"], recs[1]["text_embedding"])
  c = common.base_config()
  c.batch_size = 2
  c.input.data_dir = str(out)
  c.input.window = 10
  c.input.resolution = 32
  c.input.keys = ("wav2vec", "text_embedding", "mel")
  batch = next(input_pipeline.create_iterator(c, mesh=None))
  assert batch["wav2vec"].shape == (2, 10, 16) and batch["text_embedding"].shape == (2, 16)
  with pytest.raises(ValueError, match="no config.json"):
    pipeline.preprocess(str(manifest), str(tmp_path / "o2"), wav2vec_path=str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Bad-input corpus (issue 14): odd frame rates, containers, audio tracks and files that are not
# videos, in one run. Each input is either a record with the right frame count and audio, or a
# dead letter naming the file with the stage and reason.
# ----------------------------------------------------------------------------------------------
@pytest.mark.needs_data
def test_odd_and_bad_inputs_corpus(shared_data, tmp_path):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  speech = audio_lib.load_audio(str(shared_data / "audio" / "eng.wav"))[3 * 16000:6 * 16000]
  write, faces = media.write_mp4, media.face_frames
  d = tmp_path / "in"
  d.mkdir()

  def speech_at(rate, seconds):
    t = np.arange(int(round(seconds * rate))) / rate
    return np.interp(t, np.arange(speech.size) / 16000, speech).astype(np.float32)

  # Expected records: name -> frames at 25 fps.
  good = {}
  write(d / "fps12.mp4", faces(shared_data, 12, 1.5), 12, speech_at(16000, 1.5))
  good["fps12"] = 37  # 1.5 s -> floor(37.5)
  write(d / "fps50.mp4", faces(shared_data, 50, 1.2), 50, speech_at(16000, 1.2))
  good["fps50"] = 30
  write(d / "ntsc.mp4", faces(shared_data, 30000 / 1001, 1.5), 30000 / 1001,
             speech_at(16000, 1.6))
  good["ntsc"] = 37  # 45 frames at 29.97 fps = 1.5015 s
  six = speech_at(48000, 1.2)
  write(d / "surround.mp4", faces(shared_data, 25, 1.2), 25,
             np.repeat(six[:, None], 6, 1), audio_rate=48000, layout="5.1")
  good["surround"] = 30
  write(d / "phone_8k.mp4", faces(shared_data, 25, 1.2), 25, speech_at(8000, 1.2),
             audio_rate=8000)
  good["phone_8k"] = 30
  write(d / "clip.mkv", faces(shared_data, 25, 1.2), 25, speech_at(16000, 1.2),
             fmt="matroska")
  good["clip"] = 30
  write(d / "full_hd.mp4", faces(shared_data, 25, 1.2, canvas=(1920, 1080),
                                             face_side=540), 25, speech_at(44100, 1.2),
             audio_rate=44100)
  good["full_hd"] = 30
  write(d / "short_audio.mp4", faces(shared_data, 25, 2.0), 25,
             speech_at(16000, 1.4))
  good["short_audio"] = 35  # cut to the audio

  # Expected dead letters: name -> (stage, words in the reason).
  bad = {}
  write(d / "voice_only.mp4", [], 25, speech_at(16000, 1.5))
  bad["voice_only.mp4"] = ("decode", "has no video stream")
  sf.write(str(d / "speech.wav"), speech_at(16000, 1.5), 16000)
  bad["speech.wav"] = ("decode", "has no video stream")
  (d / "empty.mp4").write_bytes(b"")
  bad["empty.mp4"] = ("decode", "cannot open")
  (d / "notes.mp4").write_text("this is a text file\n" * 40)
  bad["notes.mp4"] = ("decode", "cannot open")
  write(d / "blink.mp4", faces(shared_data, 25, 0.5), 25, speech_at(16000, 0.5))
  bad["blink.mp4"] = ("decode", "too short")
  write(d / "tiny_face.mp4", faces(shared_data, 25, 1.2, canvas=(320, 240),
                                               face_side=24), 25, speech_at(16000, 1.2))
  bad["tiny_face.mp4"] = ("face", "no face found")

  rows = [dict(video=str(p), speaker=p.stem) for p in sorted(d.iterdir())]
  manifest = tmp_path / "m.jsonl"
  manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = tmp_path / "out"
  info = pipeline.preprocess(str(manifest), str(out), resolution=32, sync_audio=False)
  dead = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
  got_dead = {os.path.basename(x["path"]): (x["stage"], x["reason"]) for x in dead}
  assert set(got_dead) == set(bad), got_dead
  for name, (stage, words) in bad.items():
    assert got_dead[name][0] == stage and words in got_dead[name][1], (name, got_dead[name])
  _, recs = _records(out)
  by_video = {}
  for r in recs:
    by_video.setdefault(r["video_id"], []).append(r)
  assert set(by_video) == set(good), sorted(by_video)
  for vid, frames in good.items():
    (r,) = by_video[vid]
    schema.validate_record(r)
    assert r["fps"] == 25 and r["num_frames"] == frames, (vid, r["num_frames"], frames)
    assert r["audio"].shape == (frames * 640,)
    # The stored audio is the track's speech at its level (6 channels averaged, not summed):
    stored = audio_lib.from_int16(r["audio"])
    want = speech[:stored.size]
    corr = np.corrcoef(stored, want)[0, 1]
    level = np.sqrt(np.mean(stored ** 2)) / np.sqrt(np.mean(want ** 2))
    assert corr > 0.9 and abs(level - 1) < 0.15, (vid, corr, level)
  assert info["num_dead"] == len(bad) and info["num_clips"] == len(good)
  warnings = (out / "warnings.jsonl").read_text()
  assert "short_audio" in warnings and "cut to the audio" in warnings
