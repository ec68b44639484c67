"""`jaxtalk generate` and the export bundle, on the real portraits and speech of ../shared/data.

The bundle here holds *untrained* (initialised) tiny generator networks: these tests check the
mechanics every model must get right (alignment, lengths, windows, muxing, errors, atomic
output, StableHLO reload). That the trained system follows poses, keeps sync and has no seams is
shown on the demo's trained models in tests/test_end_to_end.py (slow).
"""

import json
import pathlib
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk import bundle as bundle_lib
from jaxtalk import checkpointing
from jaxtalk import generate
from jaxtalk import video_io
from jaxtalk.tasks import coarse as coarse_task

pytestmark = pytest.mark.needs_data


def _write_stage(workdir: pathlib.Path, config, params) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  checkpointing.save_params(workdir / "params", params)


@pytest.fixture(scope="module")
def runs_dir(real_shards, tmp_path_factory):
  """Stage workdirs (config.json + initialised params) of coarse, refine and enhancer."""
  from configs import coarse, enhancer, refine  # pylint: disable=g-import-not-at-top
  runs = tmp_path_factory.mktemp("runs")
  key = jax.random.key(0, impl="rbg")
  for name, module in (("coarse", coarse), ("refine", refine), ("enhancer", enhancer)):
    config = module.get_config("size=tiny")
    with config.unlocked():
      config.input.data_dir = str(real_shards)
    t, r = int(config.input.window), int(config.input.resolution)
    src, pose, gaze, mel, sp = coarse_task.init_inputs(coarse_task.example_inputs(t, r))
    model = coarse_task.build(name, coarse_task.model_kwargs(config, name), "float32")
    if name == "coarse":
      params = model.init(key, src, pose, gaze, mel, sp)["params"]
    elif name == "refine":
      params = model.init(key, jnp.zeros((1, t, r, r, 3)), jnp.zeros((1, t, r, r, 2)), pose,
                          gaze, mel, sp)["params"]
    else:
      params = model.init(key, src, jnp.zeros((1, t, r, r, 3)))["params"]
    _write_stage(runs / name, config, params)
  return runs


@pytest.fixture(scope="module")
def model_dir(runs_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("export") / "bundle"
  bundle_lib.export_bundle(str(runs_dir), str(out))
  return out


@pytest.fixture(scope="module")
def pipeline(model_dir):
  return generate.TalkingHeadPipeline(model_dir)


def _short_wav(shared_data, tmp_path, seconds=1.3, rate=22050, channels=2):
  """A stereo 22.05 kHz excerpt of real speech (generate must resample and downmix)."""
  from jaxtalk import audio as audio_lib  # pylint: disable=g-import-not-at-top
  wav = audio_lib.load_audio(str(shared_data / "audio" / "eng.wav"))[16000:16000 + int(
      seconds * 16000)]
  x = np.interp(np.arange(int(seconds * rate)) / rate, np.arange(len(wav)) / 16000, wav)
  pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
  path = tmp_path / "speech.wav"
  with wave.open(str(path), "wb") as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(np.repeat(pcm[:, None], channels, 1).tobytes())
  return path


def test_bundle_layout_and_stablehlo_reload(model_dir):
  manifest = json.loads((model_dir / "bundle.json").read_text())
  assert manifest["resolution"] == 64 and manifest["renderer"]["stages"] == [
      "coarse", "enhancer", "refine"]
  assert manifest["pose_model"] is None  # no PLD trained in this fixture
  # The renderer reloads with jax + orbax only and reproduces its stored example outputs.
  from jaxtalk import export as export_lib  # pylint: disable=g-import-not-at-top
  exported, params, frozen = export_lib.load_exported(str(model_dir / "renderer"))
  ex = dict(np.load(model_dir / "renderer" / "example_inputs.npz"))
  want = np.load(model_dir / "renderer" / "example_outputs.npz")["frames"]
  got = np.asarray(exported.call(params, frozen, ex)["frames"])
  np.testing.assert_allclose(got, want, atol=1e-5)
  # Symbolic batch: two windows at once.
  two = {k: np.concatenate([v, v]) for k, v in ex.items()}
  assert exported.call(params, frozen, two)["frames"].shape[0] == 2


def test_generate_duration_matches_audio(pipeline, shared_data, tmp_path):
  audio = _short_wav(shared_data, tmp_path, seconds=1.3)
  out = tmp_path / "out.mp4"
  info = pipeline.generate(shared_data / "images" / "musk.png", audio, out,
                           pose_template="nod", progress=False)
  meta = video_io.probe(out)
  assert info["frames"] == round(1.3 * 25)
  assert meta["video_frames"] == info["frames"] and meta["fps"] == pytest.approx(25.0)
  assert abs(meta["duration"] - 1.3) <= 1 / 25
  assert abs(meta["audio_duration"] - 1.3) <= 1 / 25
  assert meta["video_codec"] == "h264" and meta["audio_codec"] == "aac"
  assert (meta["width"], meta["height"]) == (64, 64)


def test_paste_back_keeps_image_size(pipeline, shared_data, tmp_path):
  image = shared_data / "images" / "6.jpg"
  out = tmp_path / "paste.mp4"
  pipeline.generate(image, _short_wav(shared_data, tmp_path, seconds=0.5), out,
                    pose_template="still", paste_back=True, progress=False)
  h, w = video_io.load_image(image).shape[:2]
  meta = video_io.probe(out)
  assert (meta["width"], meta["height"]) == (w - w % 2, h - h % 2) or (
      meta["width"], meta["height"]) == (w, h)


def test_paste_is_identity_for_the_portraits_own_crop(shared_data):
  from jaxtalk import face as face_lib  # pylint: disable=g-import-not-at-top
  p = generate.align_portrait(shared_data / "images" / "HDTF_0.jpg", 256)
  out = generate.paste(p.image, face_lib.crop_image(p.image, p.box, 256), p.box)
  diff = np.abs(out.astype(int) - p.image.astype(int))
  assert np.mean(diff) < 1.5 and np.percentile(diff, 99) < 25


def test_pose_from_video_follows_reference(pipeline, shared_data, tmp_path):
  ref = shared_data / "videos" / "hdtf_WDA_KatieHill_000.mp4"
  wav = generate.load_speech(_short_wav(shared_data, tmp_path, seconds=2.0))
  portrait = generate.align_portrait(shared_data / "images" / "HDTF_0.jpg", 64)
  m = pipeline.motion(wav, portrait, pose_from=ref)
  ref_pose, _ = generate.poses_from_video(ref, 50)
  assert m.pose.shape == (1, 50, 6)
  np.testing.assert_allclose(m.pose[0, :, :3], ref_pose[:, :3], atol=1e-6)  # rotations kept
  np.testing.assert_allclose(m.pose[0, 0, 3:], portrait.pose[3:], atol=1e-6)  # framing: portrait


@pytest.mark.parametrize("case", ["no_face", "empty_audio", "silent_audio", "short_audio",
                                  "not_audio", "missing_image", "missing_model", "bad_gaze",
                                  "bad_template", "no_pose_model"])
def test_bad_inputs_fail_cleanly(case, model_dir, shared_data, tmp_path, capsys):
  """Each bad input: exit status 2, the file named in the message, no output file left."""
  image = str(shared_data / "images" / "musk.png")
  audio = str(_short_wav(shared_data, tmp_path, seconds=0.6))
  model = str(model_dir)
  extra = ["--pose-template", "nod"]
  named = None
  if case == "no_face":
    image = str(tmp_path / "noface.png")
    from PIL import Image  # pylint: disable=g-import-not-at-top
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(image)
    named = image
  elif case == "empty_audio":
    audio = str(tmp_path / "empty.wav")
    open(audio, "wb").close()
    named = audio
  elif case in ("silent_audio", "short_audio"):
    audio = str(tmp_path / f"{case}.wav")
    n = 16000 if case == "silent_audio" else 1000
    with wave.open(audio, "wb") as f:
      f.setnchannels(1)
      f.setsampwidth(2)
      f.setframerate(16000)
      amp = 0 if case == "silent_audio" else 8000
      f.writeframes((amp * np.sin(np.arange(n) * 0.1)).astype("<i2").tobytes())
    named = audio
  elif case == "not_audio":
    audio = image  # a PNG is not speech
    named = audio
  elif case == "missing_image":
    image = str(tmp_path / "nope.jpg")
    named = image
  elif case == "missing_model":
    model = str(tmp_path / "no_model")
    named = model
  elif case == "bad_gaze":
    extra += ["--gaze", "up"]
    named = "--gaze"
  elif case == "bad_template":
    extra = ["--pose-template", "moonwalk"]
    named = "moonwalk"
  elif case == "no_pose_model":
    extra = ["--text", "he nods"]
    named = "pld"
  out = tmp_path / "out.mp4"
  code = generate.run(["jaxtalk generate", "--image", image, "--audio", audio, "--model", model,
                       "--out", str(out), "--quiet", *extra])
  err = capsys.readouterr().err
  assert code == 2, err[-2000:]
  assert "jaxtalk generate: error:" in err
  assert named in err, err[-2000:]
  assert not out.exists()
  assert not [p for p in tmp_path.iterdir() if p.name.startswith("out")]


def test_export_cli_writes_bundle(runs_dir, tmp_path):
  from jaxtalk import export as export_lib  # pylint: disable=g-import-not-at-top
  out = tmp_path / "cli_bundle"
  assert export_lib.run(["jaxtalk export", "--workdir", str(runs_dir), "--out", str(out)]) == 0
  assert (out / "bundle.json").is_file() and (out / "renderer" / "infer.stablehlo").is_file()
  assert not (tmp_path / "cli_bundle.tmp").exists()


def test_several_faces_uses_the_largest_and_says_so(shared_data, tmp_path, caplog):
  """Two portraits side by side (the right one larger): the larger face is used, and a warning
  names the file, the number of faces and the one used."""
  import cv2  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  small = video_io.load_image(shared_data / "images" / "HDTF_0.jpg")
  big = video_io.load_image(shared_data / "images" / "musk.png")
  h = max(small.shape[0], big.shape[0])
  small = cv2.resize(small, (small.shape[1] * (h // 2) // small.shape[0], h // 2))
  big = cv2.resize(big, (big.shape[1] * h // big.shape[0], h))
  canvas = np.zeros((h, small.shape[1] + big.shape[1], 3), np.uint8)
  canvas[:small.shape[0], :small.shape[1]] = small
  canvas[:, small.shape[1]:] = big
  path = tmp_path / "two_faces.png"
  Image.fromarray(canvas).save(path)
  with caplog.at_level("WARNING"):
    p = generate.align_portrait(path, 64)
  assert p.num_faces == 2
  assert p.box[0] >= small.shape[1] - 0.25 * (p.box[2] - p.box[0])  # the right (larger) face
  assert any(str(path) in r.getMessage() and "2 faces" in r.getMessage() for r in caplog.records)
