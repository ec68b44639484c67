"""`jaxtalk generate --method gohd` on the real portraits and speech of ../shared/data, with the
tiny synthetic-trained GoHD stages of tests/renderers/gohd_runs.py: the output guarantees and
the bad-input rejections of `jaxtalk generate` (the posetalk corpus, tests/serve/bad_inputs.py),
and the controls of the Python API."""

import numpy as np
import pytest

from jaxtalk.serve import generate
from jaxtalk.serve import video_io
from tests.serve.bad_inputs import BAD_INPUTS, _short_wav, assert_rejected

pytestmark = pytest.mark.needs_data

REFERENCE = "hdtf_WDA_KatieHill_000.mp4"


@pytest.fixture(scope="module")
def pipeline(gohd_bundle):
  return generate.TalkingHeadPipeline(gohd_bundle, method="gohd")


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory):
  """(portrait, 16 kHz speech of 1.3 s, the aligned portrait at 32 px)."""
  tmp = tmp_path_factory.mktemp("gohd_inputs")
  audio = _short_wav(shared_data, tmp, seconds=1.3)
  image = shared_data / "images" / "musk.png"
  return image, audio, generate.align_portrait(image, 32)


def test_generate_gohd_gives_mp4_as_long_as_the_audio(gohd_bundle, inputs, tmp_path, capsys):
  """The default motion (GoHD's generators from the portrait's p_0) -> H.264 + AAC mp4 whose
  duration matches the audio within one frame."""
  image, audio, _ = inputs
  out = tmp_path / "gohd.mp4"
  code = generate.run(["jaxtalk generate", "--image", str(image), "--audio", str(audio),
                       "--model", str(gohd_bundle), "--method", "gohd", "--out", str(out),
                       "--quiet"])
  assert code == 0, capsys.readouterr().err[-2000:]
  meta = video_io.probe(out)
  assert meta["video_frames"] == round(1.3 * 25) and meta["fps"] == pytest.approx(25.0)
  assert abs(meta["duration"] - 1.3) <= 1 / 25 and abs(meta["audio_duration"] - 1.3) <= 1 / 25
  assert meta["video_codec"] == "h264" and meta["audio_codec"] == "aac"
  assert (meta["width"], meta["height"]) == (32, 32)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_are_rejected_as_for_posetalk(case, gohd_bundle, shared_data, tmp_path,
                                                 capsys):
  assert_rejected(case, gohd_bundle, shared_data, tmp_path, capsys, ("--method", "gohd"))


def test_wrong_method_and_lam_on_the_cli(gohd_bundle, inputs, tmp_path, capsys):
  image, audio, _ = inputs
  out = tmp_path / "x.mp4"
  base = ["jaxtalk generate", "--image", str(image), "--audio", str(audio), "--out", str(out),
          "--quiet", "--model", str(gohd_bundle), "--pose-template", "nod"]
  assert generate.run(base + ["--method", "posetalk"]) == 2
  err = capsys.readouterr().err
  assert "is a gohd model, not posetalk" in err and str(gohd_bundle) in err
  assert generate.run(base + ["--method", "pctalk"]) == 2
  assert "is a gohd model, not pctalk" in capsys.readouterr().err
  assert generate.run(base + ["--method", "nosuch"]) == 2
  assert "unknown method" in capsys.readouterr().err
  assert generate.run(base[:-2] + ["--drive", str(tmp_path / "none.mp4")]) == 2  # before the file
  assert "the gohd method has no video-driven reenactment" in capsys.readouterr().err
  assert generate.run(base + ["--expression-from", str(tmp_path / "none.mp4")]) == 2
  assert "reference video not found" in capsys.readouterr().err
  assert not out.exists()


def test_motion_controls(pipeline, inputs, shared_data):
  """pose_scale 0 holds p_0, exp_scale 0 holds e_0, gaze modes set every frame's gaze, and
  gaze / expression come from a reference video independently of the pose."""
  _, audio, portrait = inputs
  wav = generate.load_speech(audio)
  t = generate.num_frames_for(wav)
  base = pipeline.motion(wav, portrait, seed=0)
  assert base.expression.shape == (1, t, 64)
  e0 = pipeline.source_motion(portrait).expression[0, 0]
  still = pipeline.motion(wav, portrait, seed=0, pose_scale=0.0, exp_scale=0.0)
  np.testing.assert_allclose(still.pose[0], np.broadcast_to(portrait.pose, (t, 6)), atol=1e-6)
  np.testing.assert_allclose(still.expression[0], np.broadcast_to(e0, (t, 64)), atol=1e-6)
  assert np.abs(base.expression[0] - e0).max() > 1e-4  # ...which the generated one is not
  double = pipeline.motion(wav, portrait, seed=0, exp_scale=2.0)
  np.testing.assert_allclose(double.expression - e0, 2 * (base.expression - e0), atol=1e-5)
  frozen = pipeline.motion(wav, portrait, seed=0, gaze_mode="freeze")
  np.testing.assert_allclose(frozen.gaze[0], np.broadcast_to(portrait.gaze, (t, 2)), atol=1e-6)
  np.testing.assert_allclose(frozen.pose, base.pose, atol=1e-6)  # gaze only
  ref = shared_data / "videos" / REFERENCE
  pose_v, gaze_v, lm_v = generate.track_video(ref)
  idx = generate.ping_pong(len(pose_v), t)
  mixed = pipeline.motion(wav, portrait, pose_template="nod", gaze_from=ref,
                          expression_from=ref)
  np.testing.assert_allclose(mixed.gaze[0], gaze_v[idx], atol=1e-6)
  np.testing.assert_allclose(mixed.expression[0],
                             pipeline.bundle.expression_coefficients(lm_v)[idx], atol=1e-5)
  np.testing.assert_allclose(mixed.pose[0], generate.controls.pose_template("nod", t,
                                                                            portrait.pose))
  with pytest.raises(video_io.InputError, match="gaze mode"):
    pipeline.motion(wav, portrait, pose_template="nod", gaze_mode="up")


def test_lam_zero_renders_the_portraits_own_latent(pipeline, inputs):
  _, audio, portrait = inputs
  wav = generate.load_speech(audio)
  motion = pipeline.motion(wav, portrait, pose_template="shake")
  frames = pipeline.render(portrait, motion, wav, progress=False, **pipeline.render_controls(0.0))
  np.testing.assert_array_equal(frames, np.broadcast_to(frames[:1], frames.shape))
  moving = pipeline.render(portrait, motion, wav, progress=False)
  assert np.abs(moving.astype(int) - moving[:1]).max() > 0


def test_pose_model_drives_the_animator(pipeline, gohd_bundle, gohd_renderer_bundle, inputs):
  """Another bundle's generator gives pose and gaze (e.g. PoseTalk's PLD for --text); the
  renderer's own expression predictor (here none: e_0 held) gives the expression."""
  _, audio, portrait = inputs
  wav = generate.load_speech(audio)
  p = generate.TalkingHeadPipeline(gohd_renderer_bundle, pose_model=gohd_bundle)
  m = p.motion(wav, portrait, seed=0)
  own = pipeline.motion(wav, portrait, seed=0)
  np.testing.assert_allclose(m.pose, own.pose, atol=1e-5)
  e0 = p.source_motion(portrait).expression[0, 0]
  np.testing.assert_allclose(m.expression[0], np.broadcast_to(e0, m.expression.shape[1:]))
  with pytest.raises(video_io.InputError, match="--pose-model has no motion generator"):
    generate.TalkingHeadPipeline(gohd_bundle, pose_model=gohd_renderer_bundle)
