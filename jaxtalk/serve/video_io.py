"""Image and video file IO for generation: portraits in, H.264 + AAC mp4 out.

Reading and writing go through well-kept libraries (Pillow for images, PyAV, which bundles
libx264 and the native AAC encoder, for video); jaxtalk only adds validation with clear errors and
atomic writes (a temporary name in the same folder, renamed on success), so a failed run never
leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import os
import pathlib
import tempfile
from typing import Iterable, Iterator, Optional

import numpy as np

from jaxtalk.features.audio import FPS, SAMPLE_RATE  # pylint: disable=g-importing-member
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class InputError(ValueError):
  """Bad user input (unreadable, empty or unsuitable file). The message names the file."""


def load_image(path) -> np.ndarray:
  """Loads a portrait as 8-bit RGB, whatever the file's image mode.

  Args:
    path: any image Pillow opens (JPEG, PNG, WebP, BMP, TIFF, GIF, ...), whatever its suffix. The
      EXIF orientation is applied (a phone photo comes out upright). Modes:
      * RGB, RGBX, YCbCr, CMYK, LAB, HSV: converted to RGB by Pillow;
      * with alpha (RGBA, LA, PA, La, RGBa, or P / L / RGB with a transparent colour): composited
        over white;
      * L, 1 (bilevel), P (palette): expanded to RGB;
      * I;16 / I;16B / I;16L (16-bit grayscale PNG/TIFF): scaled to 8 bits (v / 257, so 65535 ->
        255); Pillow's own conversion clips these at 255, which turns a 16-bit portrait white;
      * I (32-bit int): values within 0-255 are used as they are (Pillow's convention for I),
        within 0-65535 scaled as 16-bit, otherwise stretched from the image's min to its max;
      * F (32-bit float): within 0-1 scaled by 255, within 0-255 used as they are, otherwise
        stretched from min to max (NaN and inf -> 0).
      Animated or multi-page files: the first frame.

  Returns:
    uint8 `[H, W, 3]` RGB array.

  Raises:
    InputError: if the file is missing, empty, not an image, truncated or corrupt, too large to
      decode safely (Pillow's decompression-bomb limit, about 179 megapixels), or smaller than
      32x32 pixels. The message names the file.
  """
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: portrait file not found")
  if path.stat().st_size == 0:
    raise InputError(f"{path}: portrait file is empty")
  try:
    with Image.open(path) as im:
      im.load()
      try:
        im = ImageOps.exif_transpose(im)
      except Exception as e:  # pylint: disable=broad-except  # malformed EXIF: many error types.
        logging.warning("%s: cannot read the EXIF orientation (%s: %s); using the image as "
                        "stored", path, type(e).__name__, e)
      image = _to_rgb8(im)
  except Image.DecompressionBombError as e:
    raise InputError(f"{path}: image too large to decode safely ({e})") from e
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
    # Pillow raises OSError for truncated/corrupt data, SyntaxError for some broken headers.
    raise InputError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
  if min(image.shape[:2]) < 32:
    raise InputError(f"{path}: image is {image.shape[1]}x{image.shape[0]} pixels; need >= 32x32")
  return image


def _to_rgb8(im) -> np.ndarray:
  """uint8 `[H, W, 3]` RGB of a loaded PIL image of any mode (see `load_image`)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  mode = im.mode
  if mode.startswith("I") or mode == "F":  # I, I;16, I;16B, I;16L, I;16N, F.
    x = np.asarray(im).astype(np.float64)
    x[~np.isfinite(x)] = 0.0
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if mode.startswith("I;16"):
      x = x / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1.0:
      x = x * 255.0
    elif lo >= 0 and hi <= 255.0:
      pass
    elif mode == "I" and lo >= 0 and hi <= 65535.0:
      x = x / 257.0
    else:
      x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
    gray = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)
  if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    im = Image.alpha_composite(background, rgba)
  return np.asarray(im.convert("RGB"), dtype=np.uint8)


@contextlib.contextmanager
def atomic_output(path) -> Iterator[pathlib.Path]:
  """Yields a temporary path next to `path`; renames it to `path` only if the block succeeds.

  On any exception the temporary file is removed, so no partial output is left behind.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
    # mkstemp creates 0600 files; give the output the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_video(path, frames: Iterable[np.ndarray], *, fps: int = FPS,
                audio: Optional[np.ndarray] = None, sample_rate: int = SAMPLE_RATE,
                crf: int = 18) -> pathlib.Path:
  """Writes an H.264 mp4 (yuv420p) with optional AAC audio, atomically.

  Args:
    path: output `.mp4` path. Written to a temporary name first and renamed on success.
    frames: iterable of uint8 `[H, W, 3]` RGB frames (H and W even; odd sizes are padded by one
      edge pixel, as libx264 with yuv420p requires even sizes). May be a generator, so long videos
      are encoded as they are produced.
    fps: frames per second (25 in jaxtalk).
    audio: optional float32 `[N]` mono samples in [-1, 1] at `sample_rate`; muxed as AAC. Audio
      is not trimmed: callers produce `round(N / sample_rate * fps)` frames so both end together.
    sample_rate: audio sample rate in Hz.
    crf: x264 constant rate factor (lower = better quality).

  Returns:
    The output path.

  Raises:
    ValueError: if a frame has the wrong shape/dtype or no frame is given.
  """
  import av  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  with atomic_output(path) as tmp:
    with av.open(str(tmp), mode="w", format="mp4") as container:
      vstream = None
      astream = None
      if audio is not None:
        astream = container.add_stream("aac", rate=sample_rate, layout="mono")
        astream.bit_rate = 128000
      count = 0
      for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
          raise ValueError(f"{path}: frame {count} must be uint8 [H, W, 3], got "
                           f"{frame.dtype} {frame.shape}")
        if frame.shape[0] % 2 or frame.shape[1] % 2:
          frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)),
                         mode="edge")
        if vstream is None:
          vstream = container.add_stream("libx264", rate=fps)
          vstream.width, vstream.height = frame.shape[1], frame.shape[0]
          vstream.pix_fmt = "yuv420p"
          vstream.options = {"crf": str(crf), "preset": "veryfast"}
        for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
          container.mux(packet)
        count += 1
      if vstream is None:
        raise ValueError(f"{path}: no frames to write")
      for packet in vstream.encode():
        container.mux(packet)
      if astream is not None:
        _encode_audio(container, astream, np.asarray(audio, np.float32), sample_rate)
  return path


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
  import av  # pylint: disable=g-import-not-at-top
  audio = np.clip(audio.reshape(-1), -1.0, 1.0).astype(np.float32)
  frame_size = stream.codec_context.frame_size or 1024
  pts = 0
  for start in range(0, len(audio), frame_size):
    chunk = audio[start:start + frame_size]
    frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, sample_rate)
    pts += len(chunk)
    for packet in stream.encode(frame):
      container.mux(packet)
  for packet in stream.encode(None):
    container.mux(packet)


def probe(path) -> dict:
  """Returns `{"duration": s, "video_frames": n, "fps": f, "width", "height", "audio_duration",
  "audio_decoded_duration", "video_codec", "audio_codec"}` of a media file, decoding the streams
  (exact frame counts; `audio_duration` is the audio stream's declared duration, which AAC
  decoders exceed by up to one 1024-sample frame of padding)."""
  import av  # pylint: disable=g-import-not-at-top
  out = {"video_frames": 0, "audio_samples": 0}
  with av.open(str(path)) as container:
    v = container.streams.video[0] if container.streams.video else None
    a = container.streams.audio[0] if container.streams.audio else None
    out["video_codec"] = v.codec_context.name if v else None
    out["audio_codec"] = a.codec_context.name if a else None
    if v is not None:
      out["fps"] = float(v.average_rate) if v.average_rate else None
      out["width"], out["height"] = v.codec_context.width, v.codec_context.height
      for _ in container.decode(video=0):
        out["video_frames"] += 1
  if a is not None:
    with av.open(str(path)) as container:
      stream = container.streams.audio[0]
      rate = stream.codec_context.sample_rate
      for frame in container.decode(audio=0):
        out["audio_samples"] += frame.samples
      # Decoders return whole AAC frames (1024 samples) including the encoder's padding; the
      # stream's duration (what players play) is the exact length that was encoded.
      out["audio_decoded_duration"] = out["audio_samples"] / rate
      out["audio_duration"] = (float(stream.duration * stream.time_base) if stream.duration
                               else out["audio_decoded_duration"])
  if v is not None and out.get("fps"):
    out["duration"] = out["video_frames"] / out["fps"]
  return out
