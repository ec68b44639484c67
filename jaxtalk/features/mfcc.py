"""MFCC windows for the original SyncNet (`jaxtalk.models.chung_syncnet`), computed with the
library its evaluation release uses (python_speech_features 0.6, `mfcc` with its defaults:
25 ms rectangular frames every 10 ms, pre-emphasis 0.97, 512-point FFT, 26 mel filters
0-8000 Hz, 13 cepstra with lifter 22, c0 replaced by the log frame energy) on 16 kHz int16-scaled
samples, as syncnet_python reads its wav.

A video window starting at frame i (frames i..i+4) is paired there with MFCC steps 4i .. 4i+19;
here the window of frame c is the one of the video window CENTRED on c (i = c - 2), the pairing
`jaxtalk.evaluators.sync` uses, with step indices outside the clip clamped to its edges.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
STEPS_PER_FRAME = 4      # 100 Hz MFCC steps per 25 fps video frame
WINDOW = 20              # steps per window (0.2 s)


def mfcc(wav) -> np.ndarray:
  """wav: `[N]` float speech in [-1, 1] at 16 kHz -> float32 `[M, 13]` MFCC (module docstring),
  M = 1 + ceil((N - 400) / 160).

  Raises:
    ValueError: if `wav` is not 1-D with at least 400 samples (one 25 ms frame).
  """
  import python_speech_features  # pylint: disable=g-import-not-at-top
  wav = np.asarray(wav, np.float64)
  if wav.ndim != 1 or wav.shape[0] < 400:
    raise ValueError(f"mfcc: wav {wav.shape}; expected [N] with N >= 400 (16 kHz)")
  pcm = np.clip(np.round(wav * 32768.0), -32768, 32767)
  return python_speech_features.mfcc(pcm, SAMPLE_RATE).astype(np.float32)


def mfcc_windows(wav, num_frames: int) -> np.ndarray:
  """float32 `[T, 13, 20]`: for each video frame c of T, the MFCC steps 4(c-2) .. 4(c-2)+19
  (clamped to the clip), coefficients x steps as the SyncNet audio stream takes them."""
  feats = mfcc(wav)                                                   # [M, 13]
  starts = STEPS_PER_FRAME * (np.arange(int(num_frames)) - 2)
  idx = np.clip(starts[:, None] + np.arange(WINDOW)[None], 0, len(feats) - 1)
  return np.transpose(feats[idx], (0, 2, 1))
