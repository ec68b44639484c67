"""The "apptoy" method the app tests serve (registered by tests/app/conftest.py only).

Its generator nods with an amplitude set by `guidance` and records what it was called with (so
a test sees a page value reach the pipeline); its renderer shades the aligned crop by the head's
pitch over a tqdm bar (what the page's progress bar follows) and, after its first frame, waits
at `ToyModel.gate` (tests hold it to see the bar at 1/T, or to fill the queue). `LIP_SCALE` is
a control no method declares yet.
"""

import threading
import wave

import numpy as np

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.core import checkpointing
from jaxtalk.motion import controls as motion_controls


class ToyModel:
  """The "apptoy" method's loaded model (see module docstring)."""
  resolution = 64
  crop_scale = 1.6
  gate = threading.Event()
  calls: list = []
  rendered: list = []

  def __init__(self, gain):
    self.gain = gain

  def sample_motion(self, wav, *, num_frames, text=None, guidance=2.0, seed=0,
                    source_motion=None):
    del wav
    ToyModel.calls.append({"text": text, "guidance": guidance, "seed": seed})
    pose = np.repeat(np.asarray(source_motion.pose[0, :1], np.float32), num_frames, 0)[None]
    pose[0, :, 1] += 0.05 * guidance * np.sin(np.arange(num_frames) / 3.0)
    return motion_lib.Motion(pose=pose, gaze=np.zeros((1, num_frames, 2), np.float32))

  def render_motion(self, source, motion, *, mel, source_pose, progress=False):
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    del mel, source_pose
    ToyModel.rendered.append(motion)
    pitch = np.asarray(motion.pose[0, :, 1])
    out = []
    for t in tqdm(range(motion.num_frames), desc="render", disable=not progress, leave=False):
      if t == 1:
        ToyModel.gate.wait()  # after one frame: a progress bar shows 1/T while it waits
      out.append(np.clip(source * self.gain * (1.0 - abs(float(pitch[t]))), -1, 1))
    return np.stack(out).astype(np.float32)


def _export(stages, out_dir, *, dtype=None, platforms=None):
  del dtype, platforms
  params = checkpointing.load_params(f"{stages['apptoy']}/params")
  np.save(f"{out_dir}/gain.npy", np.asarray(params["gain"]))
  return {"resolution": ToyModel.resolution}


def _load(path, manifest, **options):
  del manifest, options
  return ToyModel(float(np.load(f"{path}/gain.npy")))


LIP_SCALE = methods.Control("lip_scale", float, 1.0, "mouth-motion amplitude (a control no "
                            "built-in method declares yet)", range=(0.0, 2.0))
TOY = methods.Method(
    name="apptoy", stages=("apptoy",), required=("apptoy",), export=_export, load=_load,
    controls=(
        methods.Control("text", str, None, "head-motion prompt"),
        methods.Control("guidance", float, 2.0, "nod amplitude", range=(0.0, 8.0)),
        methods.Control("seed", int, 0, "sampling seed"),
        methods.Control("pose_template", str, None, "named head motion",
                        choices=motion_controls.POSE_TEMPLATES),
        methods.Control("gaze_pitch", float, None, "fixed gaze pitch (radians)",
                        range=(-0.6, 0.6)),
        methods.Control("gaze_yaw", float, None, "fixed gaze yaw (radians)", range=(-0.6, 0.6)),
        methods.Control("pose_from", str, None, "video whose head poses drive the portrait"),
        methods.Control("gaze_from", str, None, "video whose gaze drives the portrait"),
    ))


def write_wav(path, wav, rate=16000):
  """Writes float `[N]` in [-1, 1] as 16-bit mono wav."""
  with wave.open(str(path), "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes((np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes())
  return path
