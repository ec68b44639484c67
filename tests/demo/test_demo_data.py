"""The demo's procedural talking-face set: playable clips whose lips follow the audio."""

import json

import numpy as np
import skimage.data

from jaxtalk.demo import data as demo_data
from jaxtalk.serve import video_io


def test_make_demo_clips(tmp_path):
  manifest = demo_data.make_demo_clips(tmp_path, num_clips=2, seconds=2.0)
  rows = [json.loads(l) for l in manifest.read_text().splitlines()]
  assert [r["style"] for r in rows] == ["nod", "shake"]
  for r in rows:
    info = video_io.probe(tmp_path / r["video"])
    assert info["video_frames"] == 50 and info["audio_codec"] == "aac"
    assert r["text"] and r["dataset"] == "synthetic"


def test_mouth_opening_follows_amplitude():
  photo = skimage.data.astronaut()
  closed = demo_data.render_frame(photo, 0, 0, 0, 0.0).astype(np.float32)
  half = demo_data.render_frame(photo, 0, 0, 0, 0.5).astype(np.float32)
  full = demo_data.render_frame(photo, 0, 0, 0, 1.0).astype(np.float32)
  d_half, d_full = np.abs(half - closed).mean(), np.abs(full - closed).mean()
  assert 0 < d_half < d_full


def test_speech_envelope_has_syllables():
  audio, env = demo_data.synth_speech(4.0, np.random.default_rng(0))
  assert audio.shape == env.shape == (64000,) and np.abs(audio).max() <= 1
  onsets = np.sum((env[1:] > 0.05) & (env[:-1] <= 0.05))
  assert 8 <= onsets <= 25  # 3-5 syllables per second with pauses


def test_facemesh_sees_the_rendered_mouth_opening():
  """Preprocessing's lip-sync estimate reads the mouth through FaceMesh landmarks: the rendered
  opening must be what FaceMesh measures (an earlier rendering, a dark band over the teeth, read
  as the lips closing: correlation -0.4..-0.6, and every clip's offset estimate was noise)."""
  from data_pipelines import av_sync  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import face  # pylint: disable=g-import-not-at-top
  photo = skimage.data.astronaut()
  rng = np.random.default_rng(0)
  opening = np.concatenate([[0.0, 1.0], rng.uniform(0, 1, 10)])
  poses = demo_data.head_motion("shake", opening.size, rng)
  measured = []
  with face.FaceMeshTracker(static_image_mode=True) as tracker:
    for k, m in enumerate(opening):
      lm = tracker(demo_data.render_frame(photo, *poses[k], m)).landmarks
      measured.append(av_sync.mouth_opening(lm[None])[0])
  assert np.corrcoef(opening, measured)[0, 1] > 0.9, measured
  assert measured[1] > measured[0] + 0.1, measured  # fully open vs closed, in eye distances


def test_head_motion_survives_the_smoothed_crop():
  """Preprocessing's crop box follows the head through a 1 s Gaussian (`crop_sigma` = 25
  frames): what the renderer has to learn is the motion left after it. Every style keeps at
  least 0.04 rad (std) of it on some angle, and the styles move the angle they name."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  t = 200
  left = {}
  for style, _ in demo_data.STYLES:
    poses = demo_data.head_motion(style, t, np.random.default_rng(1))
    assert poses.shape == (t, 3) and np.abs(poses).max() < 0.8
    left[style] = (poses - ndimage.gaussian_filter1d(poses, 25.0, axis=0, mode="nearest")).std(0)
    assert left[style].max() > 0.04, (style, left[style])
  assert left["nod"][1] > 2 * left["still"][1]    # pitch
  assert left["shake"][0] > 2 * left["still"][0]  # yaw
  assert left["tilt"][2] > 2 * left["still"][2]   # roll
  turn = demo_data.head_motion("turn_right", t, np.random.default_rng(1))
  assert turn[100:, 0].mean() < turn[:10, 0].mean() - 0.35  # turned by about 0.5 rad
