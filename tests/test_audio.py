"""Tests of jaxtalk/audio.py: loading, Wav2Lip log-mel, frame-aligned mel windows."""

import numpy as np
import pytest

from jaxtalk import audio


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
