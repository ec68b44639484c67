"""A small procedurally rendered talking-face set that needs no download (the demo's default).

The portrait is `skimage.data.astronaut()` (a real photograph shipped inside scikit-image). Each
clip is rendered from it at 25 fps with:

* **speech-like audio** (16 kHz mono): a voiced source (harmonics of a jittered fundamental,
  100-180 Hz) filtered by two vowel formants that change per syllable, with an amplitude envelope
  of syllables (0.10-0.30 s, 3-5 per second) separated by short pauses and occasional longer
  breaks. It is not language, but it has the rhythm and spectral movement of speech, so log-mel
  features, SyncNet and the audio conditions see realistic structure.
* **lip motion** driven by that envelope: the mouth opens in proportion to the (40 ms smoothed)
  syllable amplitude at each frame, rendered by a backward warp that pulls the lower lip and chin
  down and fills the gap with the mouth-interior colour; so audio and lips are in sync by
  construction (the SyncNet stage can learn from it).
* **head motion** that follows the clip's text description (nods = pitch oscillation, shakes =
  yaw oscillation, turns = a slow yaw ramp, still = small drift), rendered as a similarity
  transform of the whole photograph (roll = in-plane rotation; yaw and pitch = horizontal and
  vertical shifts with a cos-foreshortening of the face), then cropped around the face.

These are 2D renderings, not a 3D head: the poses that preprocessing estimates from them are
correlated with, but not equal to, the rendering parameters. The set exists so that
`jaxtalk demo` runs end to end on a fresh machine; real clips are used with `--videos`.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from jaxtalk.serve import video_io

from jaxtalk.features.audio import FPS, SAMPLE_RATE  # pylint: disable=g-importing-member

# Head-motion styles with the descriptions written into the manifest (CelebV-Text style).
STYLES = (
    ("nod", "The woman nods slowly while she talks, keeping her gaze forward."),
    ("shake", "The woman shakes her head from side to side as she speaks."),
    ("turn_left", "The woman talks and slowly turns her head to the left."),
    ("turn_right", "The woman talks and slowly turns her head to the right."),
    ("still", "The woman talks steadily, keeping her head mostly still."),
    ("tilt", "The woman tilts her head from side to side while talking."),
)

# Face geometry of skimage.data.astronaut() (512x512), measured once with mediapipe FaceMesh:
# inner-lip centre, mouth corners' x-span and the face box.
_MOUTH_CENTER = (223.0, 146.5)
_MOUTH_HALF_WIDTH = 22.0
_CORNER_RISE = 6.5        # the inner-lip line is this much higher at the corners (a smile)
_CHIN_Y = 177.0
MAX_JAW_DROP_PX = 12.0    # mouth fully open: the lower lip moves this far (photo pixels)
_FACE_CENTER = (224.0, 126.0)
_CROP_SIZE = 240.0


def synth_speech(seconds: float, rng: np.random.Generator):
  """Speech-like audio and its syllable envelope.

  Returns:
    (audio float32 [N] in [-1, 1] at 16 kHz, envelope float32 [N] in [0, 1]).
  """
  n = int(round(seconds * SAMPLE_RATE))
  t = np.arange(n) / SAMPLE_RATE
  envelope = np.zeros(n, np.float32)
  f1 = np.full(n, 500.0)
  f2 = np.full(n, 1500.0)
  pos = int(0.15 * SAMPLE_RATE)
  vowels = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (660, 1720), (490, 1350))
  while pos < n:
    dur = int(rng.uniform(0.10, 0.30) * SAMPLE_RATE)
    seg = np.sin(np.linspace(0, np.pi, dur)) ** 0.7 * rng.uniform(0.5, 1.0)
    end = min(n, pos + dur)
    envelope[pos:end] = seg[:end - pos]
    v1, v2 = vowels[rng.integers(len(vowels))]
    f1[pos:end], f2[pos:end] = v1, v2
    gap = rng.uniform(0.04, 0.12) if rng.random() > 0.12 else rng.uniform(0.3, 0.6)
    pos = end + int(gap * SAMPLE_RATE)
  f0 = rng.uniform(110, 170) * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
  phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
  source = sum(np.sin(k * phase) / k for k in range(1, 25))
  # Formant filtering in the frequency domain would need stationarity; instead weight harmonics by
  # their distance to the (time-varying) formants, which is cheap and smooth.
  voiced = np.zeros(n)
  for k in range(1, 25):
    fk = k * f0
    gain = np.exp(-((fk - f1) / 180.0) ** 2) + 0.7 * np.exp(-((fk - f2) / 250.0) ** 2) + 0.05
    voiced += gain * np.sin(k * phase)
  del source
  noise = rng.normal(0, 0.02, n)
  audio = envelope * voiced
  audio = 0.6 * audio / (np.abs(audio).max() + 1e-6) + noise * (envelope > 0.05)
  return np.clip(audio, -1, 1).astype(np.float32), envelope


def head_motion(style: str, num_frames: int, rng: np.random.Generator) -> np.ndarray:
  """Rendering parameters `[T, 3]` (yaw, pitch, roll in radians) for a motion style.

  Every style has a sway of 0.25-0.5 Hz on all three angles (yaw 0.08, pitch 0.06, roll 0.04
  rad); the style adds nods (pitch 0.18 rad, 0.6-0.9 Hz), shakes (yaw 0.3 rad, 0.5-0.8 Hz), tilts
  (roll 0.18 rad, 0.3-0.5 Hz) or a turn (yaw ramps by 0.5 rad between 0.5 s and 3 s, then holds).
  Preprocessing's crop box is smoothed over 1 s (`pipeline.Options.crop_sigma`), so it follows
  slow translation (a turn's) but not these oscillations: they stay visible in the crops.
  """
  t = np.arange(num_frames) / FPS
  def sway(amp, lo, hi):
    return amp * np.sin(2 * np.pi * rng.uniform(lo, hi) * t + rng.uniform(0, 2 * np.pi))
  yaw = sway(0.08, 0.25, 0.45)
  pitch = sway(0.06, 0.3, 0.5)
  roll = sway(0.04, 0.25, 0.4)
  ramp = np.clip((t - 0.5) / 2.5, 0, 1)
  ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: the turn starts and ends gently.
  if style == "nod":
    pitch = pitch + 0.18 * np.sin(2 * np.pi * rng.uniform(0.6, 0.9) * t)
  elif style == "shake":
    yaw = yaw + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 0.8) * t)
  elif style == "turn_left":
    yaw = yaw + 0.5 * ramp
  elif style == "turn_right":
    yaw = yaw - 0.5 * ramp
  elif style == "tilt":
    roll = roll + 0.18 * np.sin(2 * np.pi * rng.uniform(0.3, 0.5) * t)
  return np.stack([yaw, pitch, roll], axis=-1).astype(np.float32)


def render_frame(photo: np.ndarray, yaw: float, pitch: float, roll: float, mouth_open: float,
                 size: int = 256) -> np.ndarray:
  """Renders one `[size, size, 3]` uint8 frame of the photo with a pose and a mouth opening."""
  import cv2  # pylint: disable=g-import-not-at-top
  h, w = photo.shape[:2]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  # Mouth: a jaw drop. Everything below the inner-lip line (lower lip, lower teeth, chin) moves
  # down by up to `MAX_JAW_DROP_PX`, fully at the lips' centre and tapering to 0 at the mouth
  # corners (so the opening is lens-shaped, as real lips part), over a region that widens towards
  # the chin and fades out on the neck; the opened gap shows the mouth interior.
  mx, my = _MOUTH_CENTER
  open_px = MAX_JAW_DROP_PX * float(np.clip(mouth_open, 0, 1))
  u = (xs - mx) / _MOUTH_HALF_WIDTH
  lip_line = my - _CORNER_RISE * np.clip(u, -1, 1) ** 2  # the smile's inner-lip line.
  below = ys >= lip_line
  depth = np.maximum(ys - my, 0.0)
  wx = np.clip(1 - (u / (1 + depth / 12.0)) ** 2, 0, 1)
  wy = np.clip(1 - (ys - _CHIN_Y) / 40.0, 0, 1)
  shift = np.where(below, open_px * wx * wy, 0.0).astype(np.float32)
  src_y = ys - shift
  out = cv2.remap(photo, xs, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
  gap = below & (src_y < lip_line) & (np.abs(u) < 1)
  shade = np.clip((src_y - (lip_line - shift)) / np.maximum(shift, 1e-3), 0, 1)[..., None]
  interior = np.array([70, 25, 30]) * (0.6 + 0.4 * shade)  # darker towards the upper teeth.
  out[gap] = interior[gap].astype(np.uint8)
  # Head pose: similarity transform of the whole photograph around the face centre.
  cx, cy = _FACE_CENTER
  m = cv2.getRotationMatrix2D((cx, cy), np.degrees(roll), 1.0)
  m[0, :2] *= np.cos(yaw) ** 0.5
  m[1, :2] *= np.cos(pitch) ** 0.5
  m[0, 2] += -np.sin(yaw) * 55.0 + cx * (1 - np.cos(yaw) ** 0.5)
  m[1, 2] += np.sin(pitch) * 45.0 + cy * (1 - np.cos(pitch) ** 0.5)
  posed = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
  half = _CROP_SIZE / 2
  crop = posed[int(cy - half * 0.9):int(cy + half * 1.1), int(cx - half):int(cx + half)]
  return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def make_demo_clips(out_dir, *, num_clips: int = 6, seconds: float = 8.0, seed: int = 0,
                    size: int = 256) -> pathlib.Path:
  """Renders `num_clips` talking clips (mp4, H.264 + AAC) and a `manifest.jsonl` describing them.

  Args:
    out_dir: output folder (created). Existing clips with the same names are reused.
    num_clips: number of clips; styles cycle through `STYLES`.
    seconds: length of each clip.
    seed: random seed (audio, motion); the same seed gives the same clips.
    size: frame size in pixels.

  Returns:
    Path of the manifest (one JSON line per clip: video, dataset, speaker, emotion, text).
  """
  import skimage.data  # pylint: disable=g-import-not-at-top
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  photo = skimage.data.astronaut()
  lines = []
  for i in range(num_clips):
    style, text = STYLES[i % len(STYLES)]
    rng = np.random.default_rng([seed, i])
    path = out_dir / f"astronaut_{i:02d}_{style}.mp4"
    if not path.exists():
      audio, envelope = synth_speech(seconds, rng)
      num_frames = int(round(seconds * FPS))
      hop = SAMPLE_RATE // FPS
      per_frame = np.array([envelope[k * hop:(k + 1) * hop].mean() for k in range(num_frames)])
      mouth = np.convolve(per_frame, [0.25, 0.5, 0.25], mode="same") / max(per_frame.max(), 1e-6)
      poses = head_motion(style, num_frames, rng)
      frames = (render_frame(photo, *poses[k], mouth[k], size=size) for k in range(num_frames))
      video_io.write_video(path, frames, audio=audio)
    lines.append(dict(video=path.name, dataset="synthetic", speaker="astronaut",
                      emotion="neutral", text=text, style=style))
  manifest = out_dir / "manifest.jsonl"
  manifest.write_text("".join(json.dumps(l) + "\n" for l in lines))
  return manifest
