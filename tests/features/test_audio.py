"""Tests of jaxtalk/features/audio.py: loading, Wav2Lip log-mel, frame-aligned mel windows."""

import numpy as np
import pytest

from jaxtalk.features import audio


def test_log_mel_shape_range_and_frequency():
  sr = audio.SAMPLE_RATE
  t = np.arange(sr) / sr
  low = 0.5 * np.sin(2 * np.pi * 200 * t)
  high = 0.5 * np.sin(2 * np.pi * 4000 * t)
  m_low, m_high = audio.log_mel(low), audio.log_mel(high)
  assert m_low.shape == (1 + sr // 200, 80) and m_low.dtype == np.float32
  assert m_low.min() >= -4 and m_low.max() <= 4
  # The energy sits in the matching mel bands.
  assert m_low.mean(0).argmax() < 15
  assert m_high.mean(0).argmax() > 50
  assert m_low.mean(0)[m_low.mean(0).argmax()] > -1.0
  # Silence is the floor of the normalisation.
  np.testing.assert_allclose(audio.log_mel(np.zeros(sr))[5:-5], -4.0)


def test_mel_windows_are_centred_on_video_frames():
  # A click at the start of video frame 10 (sample 6400) appears in the window of frames 8..12
  # (covering frames t-2..t+2) and in no other window.
  wav = np.zeros(40 * audio.SAMPLES_PER_FRAME)
  wav[10 * 640 + 320] = 1.0  # middle of frame 10
  mel = audio.log_mel(wav)
  windows = audio.mel_windows(mel, 40)
  assert windows.shape == (40, 16, 80)
  # (The 800-sample STFT window also leaks a weaker tail into the next mel frames.)
  loud = windows.max(axis=(1, 2)) > 0.0
  assert list(np.nonzero(loud)[0]) == [8, 9, 10, 11, 12]
  # Offset windows equal the corresponding slice.
  np.testing.assert_array_equal(audio.mel_windows(mel, 5, offset=7), windows[7:12])
  # Edges clamp.
  np.testing.assert_array_equal(windows[0, 0], mel[0])


def test_mel_windows_rejects_bad_shape():
  with pytest.raises(ValueError, match="mel"):
    audio.mel_windows(np.zeros([10]), 3)


def test_int16_round_trip():
  x = np.linspace(-1, 1, 101).astype(np.float32)
  np.testing.assert_allclose(audio.from_int16(audio.to_int16(x)), x, atol=1 / 32767)


@pytest.mark.needs_data
def test_load_audio_from_wav_mp3_and_video(shared_data):
  wav = audio.load_audio(str(shared_data / "audio" / "chinese_news.wav"))  # 48 kHz stereo
  assert wav.dtype == np.float32 and wav.ndim == 1
  assert abs(wav.size / 16000 - 8.0) < 0.05
  mp3 = audio.load_audio(str(shared_data / "audio" / "china1.mp3"))
  assert abs(mp3.size / 16000 - 8.4) < 0.1
  vid = audio.load_audio(str(shared_data / "videos" / "hdtf_WRA_RoyBlunt_000.mp4"))  # 44.1k AAC
  assert abs(vid.size / 16000 - 15.0) < 0.1
  assert 0.01 < np.abs(vid).max() <= 1.0


@pytest.mark.needs_data
def test_load_audio_errors_name_the_file(shared_data, tmp_path):
  with pytest.raises(ValueError, match="HDTF_0.jpg"):
    audio.load_audio(str(shared_data / "images" / "HDTF_0.jpg"))
  bad = tmp_path / "garbage.wav"
  bad.write_bytes(b"not audio at all" * 10)
  with pytest.raises(ValueError, match="garbage.wav"):
    audio.load_audio(str(bad))


# ----------------------------------------------------------------------------------------------
# Odd but valid inputs: channel counts, sample rates, bit depths, containers (issue 14).
# ----------------------------------------------------------------------------------------------
def _speechlike(seconds=1.0, sr=16000):
  """A deterministic speech-like signal: harmonics of a gliding pitch under a syllable envelope."""
  t = np.arange(int(seconds * sr)) / sr
  f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
  phase = 2 * np.pi * np.cumsum(f0) / sr
  x = sum(np.sin(k * phase) / k for k in range(1, 12))
  return (0.5 * x / np.abs(x).max() * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))).astype(
      np.float32)


@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_channels_are_averaged_not_summed(channels, tmp_path):
  """FFmpeg's mono downmix made identical stereo 1.41x louder and 6-8 channels 2.4x (clipped);
  load_audio averages the channels as documented."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  x = _speechlike()
  sf.write(tmp_path / "c.wav", np.repeat(x[:, None], channels, 1), 16000)
  y = audio.load_audio(str(tmp_path / "c.wav"))
  assert y.shape == x.shape
  np.testing.assert_allclose(y, x, atol=1e-4)
  if channels > 1:  # one channel of speech, the rest silent: 1/channels of it.
    z = np.zeros([x.size, channels], np.float32)
    z[:, 0] = x
    sf.write(tmp_path / "one.wav", z, 16000)
    np.testing.assert_allclose(audio.load_audio(str(tmp_path / "one.wav")), x / channels,
                               atol=1e-4)


@pytest.mark.parametrize("name,rate,subtype,fmt", [
    ("sr8000.wav", 8000, "PCM_16", "WAV"), ("sr22050.wav", 22050, "PCM_16", "WAV"),
    ("sr44100.wav", 44100, "PCM_16", "WAV"), ("sr48000.wav", 48000, "PCM_16", "WAV"),
    ("sr96000.wav", 96000, "PCM_16", "WAV"), ("u8.wav", 16000, "PCM_U8", "WAV"),
    ("s24.wav", 16000, "PCM_24", "WAV"), ("s32.wav", 16000, "PCM_32", "WAV"),
    ("f32.wav", 16000, "FLOAT", "WAV"), ("f64.wav", 16000, "DOUBLE", "WAV"),
    ("a.flac", 44100, "PCM_16", "FLAC"), ("a.ogg", 48000, "VORBIS", "OGG"),
    ("a.mp3", 44100, "MPEG_LAYER_III", "MP3"), ("wav_named.mp3", 16000, "PCM_16", "WAV"),
    ("mp3_named.wav", 16000, "MPEG_LAYER_III", "MP3")])
def test_rates_depths_and_containers_decode_to_16k(name, rate, subtype, fmt, tmp_path):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  x = _speechlike(1.0)
  t = np.arange(int(rate * 1.0)) / rate
  src = np.interp(t, np.arange(x.size) / 16000, x)  # the same signal at `rate`
  sf.write(tmp_path / name, src, rate, subtype=subtype, format=fmt)
  y = audio.load_audio(str(tmp_path / name))
  assert y.dtype == np.float32 and y.ndim == 1
  assert abs(y.size - x.size) <= 16, y.size  # 1 ms (mp3/vorbis decoders trim their padding)
  n = min(x.size, y.size)
  lag = int(np.argmax([np.dot(np.roll(y[:n], k), x[:n]) for k in range(-40, 41)])) - 40
  assert abs(lag) <= 2, lag  # no shift
  corr = np.corrcoef(np.roll(y[:n], lag), x[:n])[0, 1]
  assert corr > (0.97 if fmt in ("MP3", "OGG") or rate == 8000 else 0.995), corr
  assert abs(np.sqrt(np.mean(y ** 2)) / np.sqrt(np.mean(x ** 2)) - 1) < 0.06  # same level


def test_truncated_and_broken_audio(tmp_path):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  x = _speechlike(1.0)
  sf.write(tmp_path / "full.wav", x, 16000, subtype="PCM_16")
  data = (tmp_path / "full.wav").read_bytes()
  (tmp_path / "cut.wav").write_bytes(data[:44 + 2 * 8000])  # the header still says 1 s
  y = audio.load_audio(str(tmp_path / "cut.wav"))  # what is there is kept
  assert y.size == 8000
  np.testing.assert_allclose(y, x[:8000], atol=1e-4)
  (tmp_path / "header.wav").write_bytes(data[:44])
  with pytest.raises(ValueError, match="header.wav: audio stream has no samples"):
    audio.load_audio(str(tmp_path / "header.wav"))
  (tmp_path / "notes.wav").write_text("meeting notes, not a recording\n" * 20)
  with pytest.raises(ValueError, match="notes.wav: cannot open as audio"):
    audio.load_audio(str(tmp_path / "notes.wav"))


@pytest.mark.parametrize("rate", [16000, 44100])
def test_aac_in_mp4_is_as_long_as_what_was_encoded(rate, tmp_path):
  """The AAC decoder's last 1024-sample frame carries the encoder's padding (0.6 s came back as
  0.64 s at 16 kHz, so a video passed as --audio got one frame too many); it is cut to the
  length the mp4 header gives."""
  import av  # pylint: disable=g-import-not-at-top
  x = _speechlike(0.6, rate)
  path = tmp_path / "speech.m4a"
  with av.open(str(path), "w", format="mp4") as out:
    s = out.add_stream("aac", rate=rate, layout="mono")
    for i in range(0, x.size, 1024):
      fr = av.AudioFrame.from_ndarray(x[None, i:i + 1024], format="fltp", layout="mono")
      fr.sample_rate, fr.pts = rate, i
      for p in s.encode(fr):
        out.mux(p)
    for p in s.encode():
      out.mux(p)
  y = audio.load_audio(str(path))
  assert y.size == int(0.6 * 16000), y.size
  ref = audio.load_audio(str(_wav(tmp_path, x, rate)))
  assert np.corrcoef(y[2000:8000], ref[2000:8000])[0, 1] > 0.95  # same signal, no shift


def _wav(tmp_path, x, rate):
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  sf.write(tmp_path / "ref.wav", x, rate)
  return tmp_path / "ref.wav"
