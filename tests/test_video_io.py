"""Tests for jaxtalk.video_io: atomic mp4 writing with audio, robust portrait loading."""

import numpy as np
import pytest

from jaxtalk import video_io


def _tone(seconds, sr=16000):
  t = np.arange(int(seconds * sr)) / sr
  return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_write_video_with_audio_roundtrip(tmp_path):
  frames = (np.random.RandomState(0).rand(50, 64, 64, 3) * 255).astype(np.uint8)
  out = video_io.write_video(tmp_path / "a.mp4", iter(frames), audio=_tone(2.0))
  info = video_io.probe(out)
  assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
  assert info["video_frames"] == 50 and info["fps"] == 25
  # AAC adds at most one codec frame (1024 samples) of priming/padding.
  assert abs(info["audio_duration"] - 2.0) < 0.07
  assert list(tmp_path.iterdir()) == [out]


def test_odd_frame_size_is_padded(tmp_path):
  frames = np.zeros((3, 31, 33, 3), np.uint8)
  info = video_io.probe(video_io.write_video(tmp_path / "o.mp4", frames))
  assert (info["width"], info["height"]) == (34, 32)


def test_failed_write_leaves_nothing(tmp_path):
  def frames():
    yield np.zeros((32, 32, 3), np.uint8)
    raise RuntimeError("renderer failed")
  with pytest.raises(RuntimeError):
    video_io.write_video(tmp_path / "x.mp4", frames())
  assert not list(tmp_path.iterdir())
  with pytest.raises(ValueError, match="uint8"):
    video_io.write_video(tmp_path / "y.mp4", [np.zeros((32, 32, 3), np.float32)])
  assert not list(tmp_path.iterdir())


def test_load_image_modes(tmp_path):
  from PIL import Image
  rgba = np.zeros((40, 50, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[:20, :, 3] = 255  # top half opaque red, bottom half transparent -> white
  Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
  im = video_io.load_image(tmp_path / "a.png")
  assert im.shape == (40, 50, 3) and im.dtype == np.uint8
  np.testing.assert_array_equal(im[0, 0], [200, 0, 0])
  np.testing.assert_array_equal(im[-1, 0], [255, 255, 255])
  Image.fromarray(np.full((64, 64), 77, np.uint8), "L").save(tmp_path / "g.webp")
  assert video_io.load_image(tmp_path / "g.webp").shape == (64, 64, 3)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"not an image", "not a readable"),
                                           (None, "not found")])
def test_load_image_errors_name_the_file(tmp_path, content, match):
  path = tmp_path / "portrait.jpg"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(video_io.InputError, match=match) as e:
    video_io.load_image(path)
  assert "portrait.jpg" in str(e.value)


@pytest.mark.needs_data
def test_load_real_portraits(shared_data):
  for path in sorted((shared_data / "images").iterdir()):
    im = video_io.load_image(path)
    assert im.ndim == 3 and im.shape[-1] == 3, path
