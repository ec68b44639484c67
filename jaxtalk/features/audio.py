"""Audio front end: load any audio/video container as 16 kHz mono, Wav2Lip log-mel, mel windows.

Frame alignment (used everywhere in jaxtalk; video is 25 fps, audio 16 kHz):

* Video frame t covers the time span [t / 25, (t + 1) / 25) s, i.e. audio samples
  [640 t, 640 (t + 1)).
* `log_mel` uses a centred STFT (window 800, hop 200, reflect padding of 400 samples), so mel frame
  m is centred on sample 200 m, i.e. at time m / 80 s. There are 80 mel frames per second, 3.2 per
  video frame; a clip of T frames (N = 640 T samples) has M = 1 + N // 200 = 1 + 3.2 T mel frames.
* `mel_windows(mel, T)[t]` is the 16 mel frames (0.2 s = 5 video frames) starting at mel frame
  s(t) = floor(16 (t - 2) / 5) = floor(80 (t - 2) / 25): the audio of video frames t-2 .. t+2,
  centred on frame t. This is Wav2Lip's `crop_audio_window` (start = int(80 * t / 25), window
  covering frames t..t+4) shifted back by two frames so the window is centred. Mel indices
  outside [0, M) are clamped (edge padding), so the first two and last two frames see repeated
  edge mel frames.
"""

from __future__ import annotations

import functools
import os

import numpy as np

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

# Wav2Lip hparams (hparams.py in Rudrabha/Wav2Lip).
N_FFT = 800
HOP_SIZE = 200
WIN_SIZE = 800
NUM_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_STEP = 16  # mel frames per window (0.2 s)
MEL_FPS = SAMPLE_RATE / HOP_SIZE  # 80.0


def load_audio(path: str, sr: int = SAMPLE_RATE) -> np.ndarray:
  """Decodes the first audio stream of `path` (wav, mp3, m4a, mp4, mkv, ...) with PyAV.

  Args:
    path: any file PyAV (FFmpeg) can open, including video containers.
    sr: output sample rate in Hz.

  Returns:
    float32 `[N]` mono samples in [-1, 1] at `sr` Hz: every channel resampled to `sr`, then the
    channels averaged (any count: mono, stereo, 5.1, ...; any sample format and rate).

  Raises:
    ValueError: naming the file, if it cannot be opened, has no audio stream, or has no samples.
  """
  return load_audio_with_start(path, sr)[0]


def load_audio_with_start(path: str, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
  """Like `load_audio`, also returning the stream time (s) of the first decoded sample."""
  import av  # pylint: disable=g-import-not-at-top  # keep `import jaxtalk.features.audio` light.
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such audio file")
  try:
    container = av.open(path)
  except Exception as e:  # pylint: disable=broad-except  # av raises many error types.
    raise ValueError(f"{path}: cannot open as audio ({type(e).__name__}: {e})") from e
  try:
    if not container.streams.audio:
      raise ValueError(f"{path}: has no audio stream")
    stream = container.streams.audio[0]
    # Resampled per channel and then averaged here: FFmpeg's own downmix to mono is not an
    # average (stereo with the same signal in both channels came out 1.41x louder, 4 to 8
    # channels 2.3-2.5x, so loud speech clipped), and its gains depend on the channel layout.
    resampler, setup = None, None
    chunks = []
    start = None
    decoded = 0.0  # seconds of source samples decoded

    def take(frames):
      for out in frames:
        # Packed float32 (interleaved): PyAV's planar to_ndarray crashes on 8-channel frames.
        chunks.append(out.to_ndarray().reshape(-1, len(out.layout.channels)).mean(1))

    try:
      for frame in container.decode(stream):
        if start is None and frame.pts is not None and frame.time_base is not None:
          start = float(frame.pts * frame.time_base)
        decoded += frame.samples / frame.sample_rate
        if (frame.format.name, frame.layout.name, frame.sample_rate) != setup:  # 1st or changed
          if resampler is not None:
            take(resampler.resample(None))
          setup = (frame.format.name, frame.layout.name, frame.sample_rate)
          resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=sr)
        take(resampler.resample(frame))
      if resampler is not None:
        take(resampler.resample(None))
    except av.error.FFmpegError as e:
      if not chunks:
        raise ValueError(f"{path}: cannot decode audio ({type(e).__name__}: {e})") from e
      # A truncated stream: keep what decoded.
    # AAC decoders return whole 1024-sample frames, so the last one carries the encoder's
    # padding (up to 64 ms at 16 kHz: a video passed as --audio gave one frame too many). MP4
    # and MOV headers give the exact length that was encoded; cut the padding to it (never more
    # than one codec frame, so a wrong header cannot cut real audio).
    declared = None
    if stream.duration is not None and stream.time_base is not None and any(
        f in container.format.name.split(",") for f in ("mp4", "mov", "m4a")):
      declared = float(stream.duration * stream.time_base)
    frame_seconds = (stream.codec_context.frame_size or 0) / (stream.codec_context.sample_rate
                                                              or sr)
  finally:
    container.close()
  wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros([0], np.float32)
  if wav.size == 0:
    raise ValueError(f"{path}: audio stream has no samples")
  if declared is not None and 0 < decoded - declared <= frame_seconds + 1e-6:
    wav = wav[:max(1, int(round(declared * sr)))]
  return np.clip(wav, -1.0, 1.0), (start or 0.0)


@functools.lru_cache(maxsize=None)
def _mel_basis() -> np.ndarray:
  import librosa  # pylint: disable=g-import-not-at-top  # slow import, only for the filter bank.
  return librosa.filters.mel(
      sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=NUM_MELS, fmin=FMIN, fmax=FMAX).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _window() -> np.ndarray:
  # Periodic Hann window (scipy.signal.get_window("hann", 800), what librosa.stft uses).
  n = np.arange(WIN_SIZE)
  return (0.5 - 0.5 * np.cos(2 * np.pi * n / WIN_SIZE)).astype(np.float64)


def log_mel(wav: np.ndarray) -> np.ndarray:
  """Wav2Lip's normalised log-mel spectrogram.

  Pre-emphasis (0.97), centred STFT (n_fft 800, hop 200, Hann window 800, reflect padding),
  magnitude, 80 Slaney mel bands 55-7600 Hz, 20 log10(max(1e-5, .)) - 20 dB, then the symmetric
  normalisation clip(8 (S + 100) / 100 - 4, -4, 4).

  Args:
    wav: float `[N]` mono audio at 16 kHz in [-1, 1].

  Returns:
    float32 `[M, 80]` in [-4, 4], M = 1 + N // 200 (80 frames per second; frame m is centred on
    sample 200 m).

  Raises:
    ValueError: if `wav` is not 1-D.
  """
  wav = np.asarray(wav, np.float64)
  if wav.ndim != 1:
    raise ValueError(f"log_mel expects mono audio [N], got shape {wav.shape}")
  emphasised = np.empty_like(wav)
  if wav.size:
    emphasised[0] = wav[0]
    emphasised[1:] = wav[1:] - PREEMPHASIS * wav[:-1]
  pad = N_FFT // 2
  if emphasised.size > pad:
    padded = np.pad(emphasised, pad, mode="reflect")
  else:  # too short to reflect: zero padding.
    padded = np.pad(emphasised, pad)
  num = 1 + (padded.size - N_FFT) // HOP_SIZE
  idx = np.arange(N_FFT)[None, :] + HOP_SIZE * np.arange(num)[:, None]
  frames = padded[idx] * _window()[None, :]
  mag = np.abs(np.fft.rfft(frames, n=N_FFT, axis=-1)).astype(np.float32)  # [M, 401]
  mel = mag @ _mel_basis().T  # [M, 80]
  db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
  norm = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
  return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def mel_window_starts(num_frames: int, offset: int = 0) -> np.ndarray:
  """First mel frame of the window of video frames `offset .. offset + num_frames - 1`.

  `start(t) = floor(16 (t - 2) / 5)` (see module docstring); int64 `[num_frames]`.
  """
  t = np.arange(offset, offset + num_frames, dtype=np.int64)
  return (MEL_STEP * (t - 2)) // 5


def mel_windows(mel: np.ndarray, num_frames: int, offset: int = 0) -> np.ndarray:
  """Per-video-frame mel windows, centred: window t covers video frames t-2 .. t+2.

  Args:
    mel: `[M, 80]` log-mel from `log_mel` of the clip's audio (frame 0 of the video at sample 0).
    num_frames: T, number of video frames to make windows for.
    offset: index of the first video frame (windows for frames offset .. offset + T - 1).

  Returns:
    float32 `[T, 16, 80]`; mel indices outside [0, M) are clamped to the edge.

  Raises:
    ValueError: if `mel` is not `[M, 80]` with M >= 1.
  """
  mel = np.asarray(mel)
  if mel.ndim != 2 or mel.shape[0] < 1:
    raise ValueError(f"mel_windows expects mel [M, {NUM_MELS}], got shape {mel.shape}")
  starts = mel_window_starts(num_frames, offset)
  idx = np.clip(starts[:, None] + np.arange(MEL_STEP)[None, :], 0, mel.shape[0] - 1)
  return mel[idx].astype(np.float32)


def to_int16(wav: np.ndarray) -> np.ndarray:
  """float audio in [-1, 1] -> int16 PCM (rounded, clipped)."""
  return np.clip(np.round(np.asarray(wav, np.float64) * 32767.0), -32768, 32767).astype(np.int16)


def from_int16(pcm: np.ndarray) -> np.ndarray:
  """int16 PCM -> float32 in [-1, 1]."""
  return (np.asarray(pcm, np.float32) / 32767.0).clip(-1.0, 1.0)


class Wav2Vec2Features:
  """wav2vec 2.0 (Baevski et al. 2020) hidden states at 25 fps from a local checkpoint folder.

  PoseTalk conditions on wav2vec 2.0 features; this computes them once in preprocessing
  (`jaxtalk preprocess --wav2vec_path=DIR`), stored per clip as `wav2vec [T, C]`.

  The folder is what `jaxtalk.features.wav2vec.load_wav2vec` reads: `config.json` +
  `model.safetensors`
  (PyTorch names; wav2vec2-base and large/XLSR alike) or `flax_model.msgpack`. This is the one
  wav2vec feature path of jaxtalk (`jaxtalk.features.wav2vec`: `normalize_wav` -> `hidden_state` ->
  `to_video_frames`, whose docstring gives the 25 fps alignment rule: video frame t = mean of
  wav2vec frames 2t and 2t+1, clamped to the last valid frame), with length buckets: inputs are
  zero-padded to a multiple of `bucket_seconds` with a padding mask, so `jax.jit` compiles once
  per bucket rather than once per clip length; the valid frames equal those of the unpadded clip.

  Attributes:
    path: the checkpoint folder.
    model, params: `jaxtalk.models.wav2vec2.Wav2Vec2Model` and its float32 params.
    layer: hidden state used (-1: last_hidden_state; k: transformers' `hidden_states[k]`).
    dim: feature size C.
    normalize: zero-mean / unit-variance input (preprocessor_config.json's `do_normalize`).
  """

  def __init__(self, path: str, layer: int = -1, bucket_seconds: float = 2.0):
    import jax  # pylint: disable=g-import-not-at-top
    from jaxtalk.features import wav2vec  # pylint: disable=g-import-not-at-top
    self.model, self.params = wav2vec.load_wav2vec(path)
    self.normalize = wav2vec.read_do_normalize(path)
    self.path, self.layer = path, int(layer)
    if not -1 <= self.layer <= self.model.num_hidden_layers:
      raise ValueError(f"wav2vec layer must be -1 or in [0, {self.model.num_hidden_layers}], got "
                       f"{layer} ({path})")
    self.dim = int(self.model.hidden_size)
    self.bucket = max(1, int(bucket_seconds * SAMPLE_RATE))
    self._fn = jax.jit(functools.partial(wav2vec.hidden_state, self.model, layer=self.layer))

  def num_frames(self, num_samples: int) -> int:
    """wav2vec frames for `num_samples` (conv arithmetic; 400-sample field, stride 320)."""
    return int(self.model.num_frames(int(num_samples)))

  def __call__(self, wav: np.ndarray) -> np.ndarray:
    """float `[N]` 16 kHz mono -> float32 `[N // 640, C]` (one row per 25 fps video frame).

    Raises:
      ValueError: if the audio is not mono or shorter than one video frame.
    """
    from jaxtalk.features import wav2vec  # pylint: disable=g-import-not-at-top
    wav = np.asarray(wav, np.float32)
    t_len = wav.size // SAMPLES_PER_FRAME
    if wav.ndim != 1 or t_len < 1:
      raise ValueError(f"wav2vec features need mono audio of >= 640 samples, got {wav.shape}")
    x = wav2vec.normalize_wav(wav) if self.normalize else wav
    n = -(-wav.size // self.bucket) * self.bucket
    padded = np.zeros([1, n], np.float32)
    padded[0, :wav.size] = x
    mask = np.zeros([1, n], bool)
    mask[0, :wav.size] = True
    hidden = np.asarray(self._fn(self.params, padded, mask), np.float32)[0]
    return wav2vec.to_video_frames(hidden, t_len, self.num_frames(wav.size),
                                   self.model.samples_per_frame)
