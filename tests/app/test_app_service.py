"""`jaxtalk app` without a browser: controls from the registry, requests, errors, clean-up."""

import os
import pathlib
import shutil
import types

import numpy as np
import pytest
from PIL import Image

from jaxtalk import methods
from jaxtalk.app import page
from jaxtalk.app import service
from jaxtalk.app import uploads
from jaxtalk.serve import generate
from jaxtalk.serve import video_io
from tests import media
from tests.app import apptoy

pytestmark = pytest.mark.needs_data


def _stand_in(method):
  """What `App` and the page read of a pipeline, for pages that generate nothing."""
  return types.SimpleNamespace(method=method, bundle=types.SimpleNamespace(path=f"/m/{method.name}"))


def _components(blocks) -> dict:
  return {c["props"].get("label"): c["props"] for c in blocks.config["components"]
          if "label" in c.get("props", {})}


def test_page_shows_every_declared_control_with_its_range_and_default(tmp_path):
  later = methods.Method(name="later", stages=(), required=(), export=None, load=None,
                         controls=(apptoy.LIP_SCALE,
                                   methods.Control("emotion", str, None, "target emotion",
                                                   choices=("neutral", "happy"))))
  app = service.App([_stand_in(methods.get("posetalk")), _stand_in(later)], root=tmp_path)
  props = _components(page.build(app))
  assert [tuple(c) for c in props["method"]["choices"]] == [("posetalk",) * 2, ("later",) * 2]
  # PoseTalk's declared guidance: a slider over its range, starting at its default, with help.
  g = methods.get("posetalk").controls
  guidance = next(c for c in g if c.name == "guidance")
  assert (props["guidance"]["minimum"], props["guidance"]["maximum"]) == guidance.range
  assert props["guidance"]["value"] == guidance.default
  assert guidance.help in props["guidance"]["info"]
  # An optional number starts blank (the method's default), showing its range.
  assert props["gaze pitch"]["value"] == "" and "blank" in props["gaze pitch"]["info"]
  assert props["gaze pitch"]["placeholder"] == "-0.6 .. 0.6"
  # A method registered later, with controls no page code names, shows them all.
  assert (props["lip scale"]["minimum"], props["lip scale"]["maximum"],
          props["lip scale"]["value"]) == (0.0, 2.0, 1.0)
  assert [c[1] for c in props["emotion"]["choices"]] == ["", "neutral", "happy"]
  # The motion source's templates are the declared choices; shared controls are not repeated.
  templates = next(c for c in g if c.name == "pose_template").choices
  assert [c[1] for c in props["pose template"]["choices"]] == list(templates)
  assert "text" not in props and "pose from" not in props


@pytest.fixture
def app(toy_bundle, tmp_path):
  a = service.App([generate.TalkingHeadPipeline(toy_bundle)], root=tmp_path / "root",
                  limits=uploads.Limits(max_seconds=5.0))
  yield a
  a.close()


def _upload(app, src, name=None) -> str:
  """Puts a file where gradio puts uploads: `<root>/<hash>/<name>`."""
  d = app.root / f"upload{len(list(app.root.iterdir()))}"
  d.mkdir()
  return str(shutil.copyfile(src, d / (name or pathlib.Path(src).name)))


def _work_left(app) -> list:
  return [p for p in (app.root / "work").rglob("*")] if (app.root / "work").exists() else []


def test_request_reaches_the_pipeline_and_leaves_no_work_files(app, shared_data, speech_clip):
  apptoy.ToyModel.calls.clear()
  req = service.Request(portrait=_upload(app, shared_data / "images" / "HDTF_0.jpg"),
                        speech=_upload(app, speech_clip), prompt="he nods slowly",
                        method="apptoy", controls={"guidance": 6.0, "seed": 3,
                                                   "gaze_pitch": None, "gaze_yaw": None})
  result = app.generate(req)
  assert result.ok, result.message
  assert apptoy.ToyModel.calls == [{"text": "he nods slowly", "guidance": 6.0, "seed": 3}]
  info = video_io.probe(result.video)
  assert info["video_frames"] == 33 and abs(info["audio_duration"] - 1.32) < 0.04
  assert Image.open(result.crop).size == (64, 64)
  assert "33 frames" in result.message
  assert _work_left(app) == []
  # The uploads stay for another request with the same file (gradio stores them once).
  assert pathlib.Path(req.portrait).is_file()
  # A template replaces the generator; the prompt is then reported unused, not sent.
  apptoy.ToyModel.calls.clear()
  result = app.generate(dataclass_replace(req, motion_source="template", template="still"))
  assert result.ok and "prompt was not used" in result.message
  assert apptoy.ToyModel.calls == []


def test_only_declared_motion_sources_and_prompts_are_accepted(tmp_path):
  bare = methods.Method(name="bare", stages=(), required=(), export=None, load=None,
                        controls=(methods.Control("seed", int, 0, "seed"),))
  app = service.App([_stand_in(bare)], root=tmp_path)
  for kw, expect in (({"prompt": "nod"}, "the bare method takes no text prompt"),
                     ({"motion_source": "template", "template": "nod"},
                      "the bare method has no pose templates"),
                     ({"motion_source": "reference video", "reference": "x.mp4"},
                      "the bare method takes no reference video"),
                     ({"motion_source": "mirror"}, "motion source 'mirror': expected one of")):
    with pytest.raises(video_io.InputError, match=expect):
      app.generate_kwargs(bare, service.Request(None, None, method="bare", **kw), tmp_path, {})
  kw, note = app.generate_kwargs(bare, service.Request(None, None, controls={"seed": 4.0}),
                                 tmp_path, {})
  assert kw == {"paste_back": False, "seed": 4} and isinstance(kw["seed"], int) and note == ""


def dataclass_replace(req, **kw):
  import dataclasses  # pylint: disable=g-import-not-at-top
  return dataclasses.replace(req, **kw)


def _no_face(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "noise.png"
  Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(path)
  return path


@pytest.mark.parametrize("case", [
    "no_face", "silent", "too_short", "too_long", "text_as_image", "image_as_speech",
    "outside_root", "missing_portrait", "guidance_range", "seed_not_int", "gaze_half",
    "unknown_method", "template_unset", "reference_unset", "too_big"])
def test_errors_are_messages_naming_the_upload(case, app, shared_data, speech_clip, tmp_path):
  portrait = _upload(app, shared_data / "images" / "HDTF_0.jpg")
  speech = _upload(app, speech_clip)
  kw, controls = {}, {}
  expect = {
      "no_face": "the portrait (noise.png): no face found",
      "silent": "the speech (quiet.wav): audio is silent",
      "too_short": "the speech (short.wav): audio is 0.100 s long",
      "too_long": "the speech (long.wav) is 6.0 s long; the limit is 5 s",
      "text_as_image": "the portrait (face.jpg) holds no image, audio or video",
      "image_as_speech": "the speech (HDTF_0.jpg) holds an image; need speech",
      "outside_root": "the portrait: not an upload of this server",
      "missing_portrait": "no portrait: upload one",
      "guidance_range": "guidance: 9 is outside 0 .. 8",
      "seed_not_int": "seed: 1.5 is not a whole number",
      "gaze_half": "gaze pitch and gaze yaw go together",
      "unknown_method": "method 'nope': this server has apptoy",
      "template_unset": "choose a pose template",
      "reference_unset": "motion source reference video: upload a video with a face",
      "too_big": "is 0.0 MB; the limit is 1e-06 MB",
  }[case]
  if case == "no_face":
    portrait = _upload(app, _no_face(tmp_path))
  elif case in ("silent", "too_short", "too_long"):
    n = {"silent": 16000, "too_short": 1600, "too_long": 96000}[case]
    wav = np.zeros(n) if case == "silent" else 0.3 * np.sin(np.arange(n) * 0.05)
    speech = _upload(app, apptoy.write_wav(tmp_path / f"{case}.wav", wav),
                     {"silent": "quiet.wav", "too_short": "short.wav", "too_long": "long.wav"}[
                         case])
  elif case == "text_as_image":
    (tmp_path / "face.jpg").write_text("#!/bin/sh\necho not a picture\n")
    portrait = _upload(app, tmp_path / "face.jpg")
  elif case == "image_as_speech":
    speech = _upload(app, shared_data / "images" / "HDTF_0.jpg")
  elif case == "outside_root":
    portrait = str(shared_data / "images" / "HDTF_0.jpg")
  elif case == "missing_portrait":
    portrait = None
  elif case == "guidance_range":
    controls["guidance"] = 9.0
  elif case == "seed_not_int":
    controls["seed"] = 1.5
  elif case == "gaze_half":
    controls["gaze_pitch"] = 0.1
  elif case == "unknown_method":
    kw["method"] = "nope"
  elif case == "template_unset":
    kw["motion_source"] = "template"
  elif case == "reference_unset":
    kw["motion_source"] = "reference video"
  elif case == "too_big":
    app.limits = uploads.Limits(max_upload_mb=1e-6)
  result = app.generate(service.Request(portrait, speech, **{"method": "apptoy", **kw},
                                        controls=controls))
  assert not result.ok and result.video is None
  assert result.message.startswith("error: ") and expect in result.message, result.message
  assert str(app.root) not in result.message and "Traceback" not in result.message
  assert _work_left(app) == []
  assert not list((app.root / "results").rglob("*.mp4"))


def test_a_bug_is_an_internal_error_without_traceback(app, shared_data, speech_clip, caplog,
                                                      monkeypatch):
  pipe = app.pipelines["apptoy"]
  monkeypatch.setattr(pipe, "generate", lambda *a, **k: 1 / 0)
  result = app.generate(service.Request(_upload(app, shared_data / "images" / "HDTF_0.jpg"),
                                        _upload(app, speech_clip), method="apptoy"))
  assert result.message == ("error: internal error (ZeroDivisionError); the server log has the "
                            "details")
  assert "ZeroDivisionError" in caplog.text  # the traceback goes to the log
  assert _work_left(app) == []


def test_old_results_and_uploads_are_pruned(app, shared_data, speech_clip):
  req = service.Request(_upload(app, shared_data / "images" / "HDTF_0.jpg"),
                        _upload(app, speech_clip), method="apptoy")
  first = app.generate(req)
  assert first.ok
  old = pathlib.Path(first.video).parent
  stale = pathlib.Path(_upload(app, speech_clip, "stale.wav"))
  for p in (old, stale.parent):
    os.utime(p, (0, 0))
  app.keep_seconds = 60
  os.utime(pathlib.Path(req.portrait).parent, (0, 0))  # old, but this request's: kept
  second = app.generate(req)
  assert second.ok and not old.exists() and not stale.exists()
  assert pathlib.Path(second.video).is_file() and pathlib.Path(req.portrait).is_file()


def test_posetalk_bundle_through_the_app(model_dir, shared_data, speech_clip, tmp_path):
  app = service.App.load([model_dir], root=tmp_path / "root")
  try:
    portrait = _upload(app, shared_data / "images" / "vox1_25.jpg")
    speech = _upload(app, speech_clip)
    result = app.generate(service.Request(portrait, speech, method="posetalk",
                                          motion_source="template", template="nod",
                                          paste_back=True, controls={"seed": 1}))
    assert result.ok, result.message
    info = video_io.probe(result.video)
    assert info["video_frames"] == 33 and (info["width"], info["height"]) == (256, 256)
    # This bundle has no pose model: the page says so, as `jaxtalk generate` does.
    result = app.generate(service.Request(portrait, speech, prompt="he nods",
                                          method="posetalk"))
    assert not result.ok and "has no motion generator" in result.message
    assert str(app.root) not in result.message
  finally:
    app.close()
  assert not app.root.exists()


def _clip(shared_data, tmp_path, frames=25):
  """The first second of a real HDTF clip (256x256, 25 fps), as an mp4 named like an image."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(shared_data / "videos" / "hdtf_WRA_RoyBlunt_000.mp4")) as c:
    rgb = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), c.decode(video=0))]
  return media.write_mp4(tmp_path / "reference.jpg", rgb, 25, fmt="mp4")


def test_reference_videos_drive_pose_and_gaze(app, shared_data, speech_clip, tmp_path):
  ref = _clip(shared_data, tmp_path)
  portrait = _upload(app, shared_data / "images" / "HDTF_0.jpg")
  req = service.Request(portrait, _upload(app, speech_clip), method="apptoy",
                        motion_source="reference video", reference=_upload(app, ref),
                        controls={"gaze_from": _upload(app, ref, "gaze.mp4")})
  apptoy.ToyModel.calls.clear()
  apptoy.ToyModel.rendered.clear()
  result = app.generate(req)
  assert result.ok, result.message
  assert apptoy.ToyModel.calls == []  # the generator is not used
  aligned = generate.align_portrait(req.portrait, 64, 1.6)
  tracked_pose, tracked_gaze = generate.poses_from_video(ref, 33)
  motion = apptoy.ToyModel.rendered[-1]
  np.testing.assert_allclose(motion.gaze[0], tracked_gaze, atol=1e-5)
  # The reference's head rotations, its translation and scale re-based on the portrait's.
  np.testing.assert_allclose(motion.pose[0, :, :3], tracked_pose[:, :3], atol=1e-5)
  np.testing.assert_allclose(motion.pose[0, :, 3:], tracked_pose[:, 3:] - tracked_pose[:1, 3:]
                             + aligned.pose[3:], atol=1e-4)
  assert np.ptp(tracked_pose[:, 0]) > 1e-3  # the reference does move
  # A still image given as a reference video is refused by content, naming the control.
  still = _upload(app, shared_data / "images" / "vox1_25.jpg", "frame.mp4")
  result = app.generate(dataclass_replace(req, controls={"gaze_from": still}))
  assert not result.ok and ("the gaze from video (frame.mp4) holds an image; need a video with "
                            "a face") in result.message, result.message
