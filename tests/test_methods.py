"""A new method is one registration: export, the bundle and generate run it unchanged.

The toy method here (a generator that nods, a renderer that scales the source's brightness by a
trained "gain" and darkens it with the head's pitch) is registered in this file only; nothing else
in jaxtalk knows about it. That is the proof that GoHD or PC-Talk can be added as one folder.
"""

import json
import os
import wave

import numpy as np
import pytest
import skimage.data
from PIL import Image

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.core import checkpointing
from jaxtalk.demo import data as demo_data
from jaxtalk.serve import bundle as bundle_lib
from jaxtalk.serve import export_cli
from jaxtalk.serve import generate
from jaxtalk.serve import video_io


class ToyModel:
  resolution = 32
  crop_scale = 1.6

  def __init__(self, gain):
    self.gain = gain

  def sample_motion(self, wav, *, num_frames, text=None, guidance=7.5, seed=0,
                    source_motion=None):
    del wav, text, guidance, seed, source_motion
    pose = np.zeros((1, num_frames, 6), np.float32)
    pose[0, :, 1] = 0.3 * np.sin(np.arange(num_frames) / 5.0)
    return motion_lib.Motion(pose=pose, gaze=np.zeros((1, num_frames, 2), np.float32))

  def render_motion(self, source, motion, *, mel, source_pose, progress=False):
    del source_pose, progress
    assert mel.shape == (motion.num_frames, 16, 80)
    shade = 1.0 - np.abs(np.asarray(motion.pose[0, :, 1]))[:, None, None, None]
    return np.clip(source[None] * self.gain * shade, -1, 1).astype(np.float32)


def _export(stages, out_dir, *, dtype=None, platforms=None):
  del dtype, platforms
  params = checkpointing.load_params(os.path.join(stages["toy"], "params"))
  np.save(os.path.join(out_dir, "gain.npy"), np.asarray(params["gain"]))
  return {"resolution": ToyModel.resolution, "source": stages}


def _load(path, manifest, **options):
  assert manifest["method"] == "toy" and not options
  return ToyModel(float(np.load(os.path.join(path, "gain.npy"))))


@pytest.fixture
def toy_method(monkeypatch):
  monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))  # pylint: disable=protected-access
  return methods.register(methods.Method(
      name="toy", stages=("toy",), required=("toy",), export=_export, load=_load,
      controls=(methods.Control("seed", int, 0, "unused"),)))


@pytest.fixture
def runs_dir(tmp_path):
  stage = tmp_path / "runs" / "toy"
  stage.mkdir(parents=True)
  (stage / "config.json").write_text(json.dumps({"task": "toy"}))
  checkpointing.save_params(stage / "params", {"gain": np.float32(0.5)})
  return tmp_path / "runs"


def _inputs(tmp_path):
  portrait = tmp_path / "portrait.png"
  Image.fromarray(skimage.data.astronaut()).save(portrait)
  wav, _ = demo_data.synth_speech(1.2, np.random.default_rng(0))
  speech = tmp_path / "speech.wav"
  with wave.open(str(speech), "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(16000)
    f.writeframes((wav * 32767).astype("<i2").tobytes())
  return portrait, speech


def test_toy_method_exports_loads_and_generates(toy_method, runs_dir, tmp_path):
  assert "toy" in methods.available() and methods.get("toy") is toy_method
  out = tmp_path / "bundle"
  manifest = bundle_lib.export_bundle(str(runs_dir), str(out), method="toy")
  assert manifest["method"] == "toy" and (out / "gain.npy").is_file()
  assert json.loads((out / "bundle.json").read_text())["method"] == "toy"
  assert not (tmp_path / "bundle.tmp").exists()
  # The command line exports it too.
  cli_out = tmp_path / "cli_bundle"
  assert export_cli.run(["jaxtalk export", "--workdir", str(runs_dir), "--out", str(cli_out),
                         "--method", "toy"]) == 0
  assert isinstance(bundle_lib.load_bundle(cli_out), ToyModel)

  portrait, speech = _inputs(tmp_path)
  pipe = generate.TalkingHeadPipeline(out)
  video = tmp_path / "toy.mp4"
  info = pipe.generate(portrait, speech, video, progress=False)
  assert info["frames"] == 30 and video_io.probe(video)["video_frames"] == 30
  # The frames are the toy renderer's: the aligned crop at half brightness, shaded by the pitch
  # the toy generator made (a pose template replaces the generator, as for any method).
  aligned = generate.align_portrait(portrait, 32)
  wav = generate.load_speech(speech)
  frames = pipe.render(aligned, pipe.motion(wav, aligned, pose_template="still"), wav,
                       progress=False)
  shade = 1.0 - abs(float(aligned.pose[1]))  # "still" keeps the portrait's own pitch
  expect = np.clip(aligned.crop.astype(np.float32) / 127.5 - 1, -1, 1) * 0.5 * shade
  expect = np.clip((expect + 1) * 127.5 + 0.5, 0, 255)
  assert np.abs(frames.astype(np.float32) - expect[None]).max() <= 1.0
  nod = pipe.motion(wav, aligned)
  assert np.ptp(nod.pose[0, :, 1]) > 0.3


def test_unknown_method_is_a_clear_error(runs_dir, tmp_path):
  with pytest.raises(ValueError, match="unknown method 'nope'; available: .*posetalk"):
    bundle_lib.export_bundle(str(runs_dir), str(tmp_path / "b"), method="nope")
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "bundle.json").write_text(json.dumps(
      {"format": bundle_lib.FORMAT, "method": "nope"}))
  with pytest.raises(video_io.InputError, match="bundle.json: unknown method 'nope'"):
    bundle_lib.load_bundle(tmp_path / "old")
