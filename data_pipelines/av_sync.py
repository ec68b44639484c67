"""Network-free audio-visual offset estimation: does a clip's audio lead or lag its lips?

Some source videos carry audio that is out of sync with the lips (the HDTF example clips in
../shared/data: speech energy follows mouth opening 3-7 frames late). A lip-sync expert trained on
such clips learns the wrong thing, so preprocessing (`pipeline.py`, `--sync_audio`) measures every
clip with `estimate_av_offset` and, when the evidence is clear, shifts the clip's audio.

Method: normalised cross-correlation of two per-video-frame signals of the clip,
  mouth opening  m[t] = outer-lip height (landmarks 0 -> 17) / inter-ocular distance (33 -> 263),
                        from the FaceMesh landmarks the pipeline already has (`mouth_opening`);
  speech energy  e[t] = mean Wav2Lip log-mel over the bands centred in 1-4 kHz of the mel frames
                        centred inside video frame t, from the clip's own stored mel
                        (`speech_energy`),
over lags l = -max_offset .. max_offset: r(l) = Pearson correlation of m[t] and e[t + l] on the
frames where both exist.

Sign convention: offset l > 0 means the mouth at video frame t matches the audio at frame t + l,
i.e. the audio is LATE by l / 25 s (it lags the lips); l < 0 means the audio is early. To line
them up, frame t must get the audio of frame t + l ("shift the audio l frames earlier"); after
that correction the estimate on the corrected clip is ~0. In-sync talking faces peak at 0 .. +1
(the mouth opens slightly before the sound it makes).

Confidence: the peak correlation r(offset) divided by its standard error under "no correlation",
se = sqrt(S / n) with n the overlap length and S = 1 + 2 sum_k w_k rho_m(k) rho_e(k) (Bartlett's
formula for two autocorrelated series; rho = sample autocorrelations up to 1 s, triangular
weights w; S is floored at 1 so a clip never counts as more than n independent samples). It is
a z-score: for unrelated signals every lag is ~N(0, 1), and the maximum over the 2 max_offset + 1
lags has a 95th percentile of 2.2-2.8 and reaches 3.0 in at most ~2.5% of clips (independent
white or smoothed Gaussian noise, 25-250 frames; mouth and audio of different real clips: 95th
percentile 2.7). Short clips (small n), slowly varying signals (large S) and weak correlations
all give low values; a constant signal gives 0.
Measured on ../shared/data (max_offset 10): HDTF clips offset +3..+6 at confidence 2.8-4.3
(KatieHill +6 at 2.8, below the pipeline's default 3.0), in-sync clips with clear speech
-1..+1 at 2.9-4.6, a turned-head VoxCeleb2 clip (+2) and a half-body news clip (-1) at 1.8-1.9.
Signal choice, on the same clips: outer-lip height / inter-ocular distance gave higher
confidences than the mouth box height or the inner-lip gap (over mouth width or inter-ocular
distance), and the 1-4 kHz bands slightly higher than all 80 mel bands; nine clips are a small
sample, so these are reasonable defaults rather than tuned optima.

Limits: this is a weak proxy, not SyncNet. It needs speech with visible mouth movement over
most of the clip; music, several speakers, an off-screen voice, or a face too small for
reliable lip landmarks give meaningless offsets (at low confidence, usually, but not always).
Lip height also moves with head pitch and smiles, and mouth opening precedes sound by a frame or
so; treat |offset| <= 1 as "in sync" and only act on clearly confident estimates: below
DEFAULT_MIN_CONFIDENCE (3.0, the pipeline's `sync_min_confidence`) an estimate means "unknown",
and neither the re-sync (`correction`) nor the training-data filter
(`jaxtalk.core.input_pipeline.out_of_sync_clips`) acts on it.
The estimate is only as good as the lip landmarks: a mouth FaceMesh misreads (an opening drawn
as a dark band across the teeth reads as the lips closing) gives a meaningless offset at low
confidence, i.e. "unknown". The demo's clips, rendered as a jaw drop, measure offset 0 at
confidence ~8 (tests/demo/test_demo_data.py).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from jaxtalk.features.audio import HOP_SIZE as MEL_HOP  # pylint: disable=g-importing-member
from jaxtalk.features.audio import SAMPLES_PER_FRAME  # pylint: disable=g-importing-member
ENERGY_BAND_HZ = (1000.0, 4000.0)  # mel bands averaged by `speech_energy`
MOUTH_TOP, MOUTH_BOTTOM = 0, 17   # FaceMesh outer-lip midpoints (upper, lower)
EYE_OUTER = (33, 263)             # FaceMesh outer eye corners
AUTOCORR_FRAMES = 25              # autocorrelation lags used for the standard error (1 s)
DEFAULT_MAX_OFFSET = 10           # frames (0.4 s)
DEFAULT_MIN_CONFIDENCE = 3.0      # below this an estimate is "unknown": nothing acts on it


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
  """Per-frame mouth opening from FaceMesh landmarks.

  Args:
    landmarks: `[T, 478, 2 or 3]` FaceMesh landmarks, pixels or crop coordinates (only x, y are
      used; the ratio below does not depend on the unit).

  Returns:
    float32 `[T]`: outer-lip height (distance of landmarks 0 and 17) over the inter-ocular
    distance (33 and 263); ~0.25-0.3 for closed lips on a frontal face, larger when open.

  Raises:
    ValueError: if `landmarks` is not `[T, K, >=2]` with K > 263.
  """
  lm = np.asarray(landmarks, np.float64)
  if lm.ndim != 3 or lm.shape[1] <= max(EYE_OUTER) or lm.shape[2] < 2:
    raise ValueError(f"mouth_opening expects landmarks [T, 478, 2|3], got shape {lm.shape}")
  xy = lm[..., :2]
  height = np.linalg.norm(xy[:, MOUTH_TOP] - xy[:, MOUTH_BOTTOM], axis=-1)
  eyes = np.linalg.norm(xy[:, EYE_OUTER[0]] - xy[:, EYE_OUTER[1]], axis=-1)
  return (height / np.maximum(eyes, 1e-9)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _energy_bands() -> np.ndarray:
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  import librosa  # pylint: disable=g-import-not-at-top  # slow import, only for the band centres.
  centres = librosa.mel_frequencies(audio_lib.NUM_MELS + 2, fmin=audio_lib.FMIN,
                                    fmax=audio_lib.FMAX)[1:-1]
  return np.flatnonzero((centres >= ENERGY_BAND_HZ[0]) & (centres < ENERGY_BAND_HZ[1]))


def speech_energy(mel: np.ndarray, num_frames: int) -> np.ndarray:
  """Per-video-frame speech energy from a clip's log-mel.

  Args:
    mel: `[M, 80]` Wav2Lip log-mel of the clip's audio (`jaxtalk.features.audio.log_mel`; mel frame
    m is centred on audio sample 200 m, sample 0 = the start of video frame 0).
    num_frames: T, video frames of the clip.

  Returns:
    float32 `[T]`: mean log-mel (in [-4, 4]) over the bands centred in 1-4 kHz and over the mel
    frames centred inside video frame t (samples [640 t, 640 (t + 1))); frames without a mel
    frame (audio shorter than the video) repeat the last value.

  Raises:
    ValueError: if `mel` is not `[M, 80]` with M >= 1, or num_frames < 1.
  """
  mel = np.asarray(mel, np.float32)
  if mel.ndim != 2 or mel.shape[0] < 1 or mel.shape[1] != 80:
    raise ValueError(f"speech_energy expects mel [M, 80], got shape {mel.shape}")
  if num_frames < 1:
    raise ValueError(f"speech_energy needs num_frames >= 1, got {num_frames}")
  band = mel[:, _energy_bands()].mean(axis=1).astype(np.float64)
  frame = np.arange(mel.shape[0]) * MEL_HOP // SAMPLES_PER_FRAME
  keep = frame < num_frames
  total = np.bincount(frame[keep], weights=band[keep], minlength=num_frames)
  count = np.bincount(frame[keep], minlength=num_frames)
  out = np.empty([num_frames], np.float64)
  have = count > 0
  out[have] = total[have] / count[have]
  out[~have] = band[keep][-1] if keep.any() else band[-1]  # only after the audio has ended.
  return out.astype(np.float32)


def _validate(mouth_open, audio_energy, max_offset):
  m = np.asarray(mouth_open, np.float64)
  e = np.asarray(audio_energy, np.float64)
  if m.ndim != 1 or m.shape != e.shape:
    raise ValueError(f"mouth_open and audio_energy must both be [T]; got shapes {m.shape} and "
                     f"{e.shape}")
  if not (np.isfinite(m).all() and np.isfinite(e).all()):
    raise ValueError("mouth_open and audio_energy must be finite")
  if int(max_offset) < 0:
    raise ValueError(f"max_offset must be >= 0, got {max_offset}")
  return m, e


def _lags(t: int, max_offset: int) -> np.ndarray:
  """Lags searched for a clip of t frames: |l| <= max_offset and an overlap of >= t / 2."""
  lim = min(int(max_offset), t // 2)
  return np.arange(-lim, lim + 1)


def lag_correlations(mouth_open: np.ndarray, audio_energy: np.ndarray,
                     max_offset: int = DEFAULT_MAX_OFFSET) -> tuple[np.ndarray, np.ndarray]:
  """Pearson correlation of mouth_open[t] and audio_energy[t + l] for each lag l.

  Args:
    mouth_open: `[T]` mouth opening per video frame (any unit).
    audio_energy: `[T]` speech energy per video frame (any unit).
    max_offset: largest |l| searched, frames; lags are also limited to T // 2 so every
      correlation uses at least half of the clip.

  Returns:
    (lags int64 `[L]`, r float64 `[L]` in [-1, 1]; 0 where a part is constant).

  Raises:
    ValueError: for mismatched shapes, non-finite values or a negative max_offset.
  """
  m, e = _validate(mouth_open, audio_energy, max_offset)
  lags = _lags(m.size, max_offset)
  r = np.zeros([lags.size], np.float64)
  for i, lag in enumerate(lags):
    a, b = (m[:m.size - lag], e[lag:]) if lag >= 0 else (m[-lag:], e[:e.size + lag])
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    r[i] = np.dot(a, b) / den if den > 1e-12 * a.size else 0.0
  return lags, r


def _autocorr(x: np.ndarray, max_lag: int) -> np.ndarray:
  x = x - x.mean()
  var = np.dot(x, x)
  if var <= 0:
    return np.zeros([max_lag + 1])
  return np.array([np.dot(x[:x.size - k], x[k:]) / var for k in range(max_lag + 1)])


def estimate_av_offset(mouth_open: np.ndarray, audio_energy: np.ndarray,
                       max_offset: int = DEFAULT_MAX_OFFSET) -> tuple[int, float]:
  """Audio-visual offset of a clip by normalised cross-correlation (see module docstring).

  Args:
    mouth_open: `[T]` mouth opening per 25 fps video frame (`mouth_opening`).
    audio_energy: `[T]` speech energy per video frame from the same clip's audio
      (`speech_energy`).
    max_offset: largest |offset| searched, in frames (limited to T // 2).

  Returns:
    (offset, confidence): offset in video frames (1 frame = 40 ms), in [-max_offset,
    max_offset]; > 0 means the audio lags the lips (audio late: frame t's mouth matches the
    audio of frame t + offset), < 0 that it leads them. confidence >= 0 is the peak correlation
    in units of its no-correlation standard error (a z-score; unrelated signals: 95% below
    2.2-2.8, 3.0 or more in at most ~2.5% of clips; clearly synchronised speech: 3 and more). A
    clip shorter than 4 frames or a constant signal gives (0, 0.0).

  Raises:
    ValueError: for mismatched shapes, non-finite values or a negative max_offset.
  """
  m, e = _validate(mouth_open, audio_energy, max_offset)
  if m.size < 4 or np.ptp(m) == 0 or np.ptp(e) == 0:
    return 0, 0.0
  lags, r = lag_correlations(m, e, max_offset)
  i = int(np.argmax(r))
  k = min(AUTOCORR_FRAMES, m.size // 2)
  rho_m, rho_e = _autocorr(m, k), _autocorr(e, k)
  w = 1.0 - np.arange(1, k + 1) / (k + 1)
  s = max(1.0, 1.0 + 2.0 * float(np.sum(w * rho_m[1:] * rho_e[1:])))
  n = m.size - abs(int(lags[i]))
  confidence = max(0.0, float(r[i] * np.sqrt(n / s)))
  return int(lags[i]), confidence


def correction(offset: int, confidence: float, *, min_confidence: float,
               min_offset: int = 2) -> int:
  """The audio shift, in frames, that preprocessing applies for an estimate (0: leave it).

  The conservative rule of `--sync_audio`: shift only when |offset| >= min_offset (|offset| <= 1
  is normal for in-sync speech) and confidence >= min_confidence. The returned shift equals
  the offset: frame t then gets the audio of frame t + shift.
  """
  if abs(int(offset)) >= int(min_offset) and float(confidence) >= float(min_confidence):
    return int(offset)
  return 0


def clip_offset(landmarks: np.ndarray, mel: np.ndarray,
                max_offset: int = DEFAULT_MAX_OFFSET,
                num_frames: Optional[int] = None) -> tuple[int, float]:
  """`estimate_av_offset` of a stored clip from its `landmarks [T, 478, 3]` and `mel [M, 80]`."""
  t = int(num_frames if num_frames is not None else len(landmarks))
  return estimate_av_offset(mouth_opening(landmarks[:t]), speech_energy(mel, t), max_offset)
