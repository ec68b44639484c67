"""Tests for jaxtalk.serve.video_io: atomic mp4 writing with audio, robust portrait loading."""

import numpy as np
import pytest

from jaxtalk.serve import video_io


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
  """The real portraits load pixel for pixel as Pillow decodes them (RGB ones unchanged; the
  RGBA one composited over white where it is transparent, and unchanged where it is opaque)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for path in sorted((shared_data / "images").iterdir()):
    im = video_io.load_image(path)
    ref = Image.open(path)
    rgba = np.asarray(ref.convert("RGBA"))
    assert im.dtype == np.uint8 and im.shape == rgba.shape[:2] + (3,), path
    opaque = rgba[..., 3] == 255
    assert opaque.mean() > 0.5, path
    np.testing.assert_array_equal(im[opaque], rgba[..., :3][opaque], err_msg=str(path))


# ----------------------------------------------------------------------------------------------
# Every image mode Pillow opens, EXIF orientation, broken files (issue 14).
# ----------------------------------------------------------------------------------------------
def _variant(src, mode, path):
  """Writes `src` (a PIL RGB image) converted to `mode` to `path`; returns the array expected
  from `load_image` (what the mode can represent: grey for the grayscale modes)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rgb = np.asarray(src)
  grey = np.asarray(src.convert("L"))
  grey3 = np.repeat(grey[..., None], 3, -1)
  if mode == "I;16":  # 16-bit grayscale PNG, the full 0-65535 range.
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    return grey3
  if mode == "I;16B":  # big-endian 16-bit TIFF
    Image.fromarray(grey.astype(">u2") * 257, "I;16B").save(path)
    return grey3
  if mode == "I":  # 32-bit int TIFF holding 16-bit values
    Image.fromarray(grey.astype(np.int32) * 257, "I").save(path)
    return grey3
  if mode == "I8":  # 32-bit int TIFF holding 8-bit values (Pillow's L -> I)
    src.convert("L").convert("I").save(path)
    return grey3
  if mode == "F":  # 32-bit float TIFF in [0, 1]
    Image.fromarray(grey.astype(np.float32) / 255.0, "F").save(path)
    return grey3
  if mode == "F255":  # float TIFF in [0, 255] (Pillow's L -> F)
    src.convert("L").convert("F").save(path)
    return grey3
  if mode == "L":
    src.convert("L").save(path)
    return grey3
  if mode == "LA":  # opaque alpha
    src.convert("LA").save(path)
    return grey3
  if mode == "1":
    bw = src.convert("1")
    bw.save(path)
    return np.repeat(np.asarray(bw.convert("L"))[..., None], 3, -1)
  if mode == "P":
    p = src.quantize(256)
    p.save(path)
    return np.asarray(p.convert("RGB"))
  if mode == "P_transparent":  # palette with a transparent colour: composited over white
    p = src.quantize(255)
    idx = np.asarray(p).copy()
    idx[:16] = 255  # the top rows use the transparent entry
    q = Image.fromarray(idx, "P")
    q.putpalette(p.getpalette()[:255 * 3] + [0, 0, 0])
    q.info["transparency"] = 255
    q.save(path, transparency=255)
    want = np.asarray(q.convert("RGB")).copy()
    want[:16] = 255
    return want
  if mode == "RGBA":
    a = np.full(rgb.shape[:2], 255, np.uint8)
    a[:, :10] = 0  # the left columns transparent: white
    Image.fromarray(np.dstack([rgb, a]), "RGBA").save(path)
    want = rgb.copy()
    want[:, :10] = 255
    return want
  if mode == "CMYK":
    src.convert("CMYK").save(path, quality=95)
    return rgb
  if mode == "RGB16":  # 16-bit-per-channel RGB PNG (Pillow reads it as 8-bit RGB)
    return None
  raise AssertionError(mode)


IMAGE_MODES = {"I;16": "png", "I;16B": "tif", "I": "tif", "I8": "tif", "F": "tif", "F255": "tif",
               "L": "png", "LA": "png", "1": "png", "P": "png", "P_transparent": "png",
               "RGBA": "png", "CMYK": "jpg"}


@pytest.mark.needs_data
@pytest.mark.parametrize("mode", sorted(IMAGE_MODES))
def test_load_image_every_mode(mode, shared_data, tmp_path):
  """Each mode loads as uint8 [H, W, 3] close to the 8-bit picture (16-bit is scaled, not
  clipped: before, I;16 came out all white and generate said "no face found")."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  src = Image.open(shared_data / "images" / "HDTF_0.jpg").convert("RGB")
  path = tmp_path / f"portrait.{IMAGE_MODES[mode]}"
  want = _variant(src, mode, path)
  with Image.open(path) as im:
    assert im.mode == {"I8": "I", "F255": "F", "P_transparent": "P"}.get(mode, mode)
  got = video_io.load_image(path)
  assert got.dtype == np.uint8 and got.shape == (256, 256, 3)
  diff = np.abs(got.astype(int) - want.astype(int))
  tol = 4 if mode == "CMYK" else 1  # (CMYK: JPEG compression)
  assert diff.mean() < tol and np.percentile(diff, 99) <= 8 * tol, (mode, diff.mean())


def test_load_image_16bit_rgb_and_float_ranges(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import cv2  # pylint: disable=g-import-not-at-top
  ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
  rgb16 = np.dstack([ramp, 255 - ramp, np.full_like(ramp, 128)]).astype(np.uint16) * 257
  cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # 48-bit PNG (BGR order for cv2)
  got = video_io.load_image(tmp_path / "rgb16.png")
  assert np.abs(got.astype(int) - (rgb16 // 257)).max() <= 1
  # Float out of any standard range: stretched from min to max, NaN -> 0 (black).
  x = np.tile(np.linspace(-3.0, 5.0, 64, dtype=np.float32), (64, 1))
  x[0, 0] = np.nan
  Image.fromarray(x, "F").save(tmp_path / "f.tif")
  got = video_io.load_image(tmp_path / "f.tif")
  assert got[1, 0, 0] == 0 and got[1, -1, 0] == 255
  assert got[0, 0, 0] == round(3 / 8 * 255)  # NaN -> 0.0, which lies 3/8 of the way up


# EXIF orientation tag -> the transpose that turns the upright picture into what the file stores
# (the tag says how to undo it): 6 = stored rotated 90 degrees counter-clockwise, etc.
_STORED = {1: None, 2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
           6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


@pytest.mark.needs_data
@pytest.mark.parametrize("orientation", sorted(_STORED))
def test_load_image_applies_exif_orientation(orientation, shared_data, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  upright = Image.open(shared_data / "images" / "HDTF_0.jpg").convert("RGB").crop((0, 0, 256, 200))
  stored = upright if _STORED[orientation] is None else upright.transpose(
      getattr(Image.Transpose, _STORED[orientation]))
  exif = Image.Exif()
  exif[0x0112] = orientation
  path = tmp_path / "phone.jpg"
  stored.save(path, exif=exif, quality=95)
  got = video_io.load_image(path)
  assert got.shape == (200, 256, 3), got.shape
  assert np.abs(got.astype(int) - np.asarray(upright).astype(int)).mean() < 4


@pytest.mark.parametrize("case,match", [
    ("truncated_jpg", "truncated"), ("truncated_png", "not a readable"),
    ("text_as_png", "not a readable"), ("tiny", "need >= 32x32"), ("bomb", "too large")])
def test_load_image_broken_files_name_the_file(case, match, tmp_path, monkeypatch):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = tmp_path / ("portrait.jpg" if case.endswith("jpg") else "portrait.png")
  img = Image.fromarray((np.random.RandomState(0).rand(300, 400, 3) * 255).astype(np.uint8))
  if case in ("truncated_jpg", "truncated_png"):
    img.save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
  elif case == "text_as_png":
    path.write_text("this is not a picture\n")
  elif case == "tiny":
    img.resize((24, 20)).save(path)
  elif case == "bomb":  # Pillow refuses images over 2x MAX_IMAGE_PIXELS (a decompression bomb).
    img.save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 400 // 4)
  with pytest.raises(video_io.InputError, match=match) as e:
    video_io.load_image(path)
  assert str(path) in str(e.value)


def test_renamed_images_load_by_content(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  yy, xx = np.mgrid[0:40, 0:48]
  img = np.dstack([xx * 5, yy * 6, xx + yy]).astype(np.uint8)  # smooth: JPEG keeps it close
  Image.fromarray(img).save(tmp_path / "a.png")
  (tmp_path / "a.png").rename(tmp_path / "really_png.jpg")
  np.testing.assert_array_equal(video_io.load_image(tmp_path / "really_png.jpg"), img)
  Image.fromarray(img).save(tmp_path / "b.jpg", quality=95)
  (tmp_path / "b.jpg").rename(tmp_path / "really_jpg.png")
  assert np.abs(video_io.load_image(tmp_path / "really_jpg.png").astype(int) - img).mean() < 3
