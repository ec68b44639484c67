"""What the app accepts from a request: files checked by content, limits, and one temp folder.

Every file a request names must lie inside the app's temporary folder (where gradio stores
uploads: the app sets `GRADIO_TEMP_DIR` to it); anything else is refused before it is opened.
An accepted file is checked by what it holds, not by its name: Pillow must identify an image,
PyAV must find an audio stream in speech and a video stream in a reference video, and the file
is copied under a name the app chooses (`portrait.png`, `speech.wav`, ...) into the request's
own work folder, so no name from the request reaches the filesystem. Size, duration and pixel
limits are checked before any model runs.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
from typing import Optional

from jaxtalk.serve.video_io import InputError

KINDS = ("image", "audio", "video")


@dataclasses.dataclass(frozen=True)
class Limits:
  """Serving limits of one app.

  Attributes:
    max_upload_mb: largest upload (MiB); gradio refuses bigger uploads, and `checked_copy`
      checks again.
    max_seconds: longest speech or reference video (seconds).
    max_pixels: largest portrait (width x height).
  """
  max_upload_mb: float = 50.0
  max_seconds: float = 60.0
  max_pixels: int = 40_000_000


def inside(path, root) -> bool:
  """Whether `path` (after resolving links and `..`) is `root` or lies under it."""
  try:
    return pathlib.Path(path).resolve().is_relative_to(pathlib.Path(root).resolve())
  except (OSError, ValueError):
    return False


def sniff(path) -> tuple[Optional[str], dict]:
  """What a file holds, by its content: `(kind, info)`.

  kind: "image" (a still or animated picture Pillow identifies; info: width, height, frames,
  format), "video" (PyAV finds a video stream; info: seconds, has_audio), "audio" (an audio
  stream and no video; info: seconds), or None (neither; info: {}).
  """
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      info = {"width": im.width, "height": im.height, "format": im.format,
              "frames": int(getattr(im, "n_frames", 1) or 1)}
    if info["frames"] == 1:
      return "image", info
  except Image.DecompressionBombError:
    return "image", {"width": 1 << 16, "height": 1 << 16, "format": "huge", "frames": 1}
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
    pass
  import av  # pylint: disable=g-import-not-at-top
  try:  # From a nameless reader: FFmpeg then probes the content only, not the file name.
    with open(path, "rb") as f, av.open(_Nameless(f)) as container:
      seconds = _seconds(container)
      if container.streams.video:
        return "video", {"seconds": seconds, "has_audio": bool(container.streams.audio)}
      if container.streams.audio:
        return "audio", {"seconds": seconds}
  except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError):
    pass
  return None, {}


class _Nameless:
  """A binary file without a `name`, so PyAV cannot guess the format from the suffix (a text
  file named .jpg is otherwise opened as a JPEG stream)."""

  def __init__(self, f):
    self._f = f

  def read(self, n: int = -1) -> bytes:
    return self._f.read(n)

  def seek(self, offset: int, whence: int = 0) -> int:
    return self._f.seek(offset, whence)

  def tell(self) -> int:
    return self._f.tell()


def _seconds(container) -> float:
  """Duration (s) a container declares, else its longest stream's."""
  if container.duration:
    return container.duration / 1e6
  streams = [s for s in container.streams if s.duration and s.time_base]
  return max((float(s.duration * s.time_base) for s in streams), default=0.0)


_SUFFIX = {"image": ".img", "audio": ".audio", "video": ".video"}


def checked_copy(path, *, kind: str, what: str, root, workdir, limits: Limits) -> pathlib.Path:
  """Checks an uploaded file and copies it into the request's work folder.

  Args:
    path: the file a request names (a gradio upload).
    kind: what it must hold: "image" (portrait), "audio" (speech: an audio stream, also a
      video's soundtrack) or "video" (reference video with a video stream).
    what: how messages name it ("the portrait", "the speech", ...).
    root: the app's temporary folder; `path` must lie inside it.
    workdir: the request's work folder (inside root), where the copy goes.
    limits: size, duration and pixel limits.

  Returns:
    The copy: `<workdir>/<what, as a word>.<img|audio|video>` (a name the app chose).

  Raises:
    InputError: outside root, missing, too big, too long or too many pixels, or not of `kind`
      by content (the message names `what`, the upload's own file name and what it holds).
  """
  if kind not in KINDS:
    raise ValueError(f"kind {kind!r}: expected one of {KINDS}")
  path = pathlib.Path(os.fspath(path))
  name = path.name
  if not inside(path, root) or not path.is_file():
    raise InputError(f"{what}: not an upload of this server (upload the file again)")
  size_mb = path.stat().st_size / 2**20
  if size_mb > limits.max_upload_mb:
    raise InputError(f"{what} ({name}) is {size_mb:.1f} MB; the limit is "
                     f"{limits.max_upload_mb:g} MB")
  found, info = sniff(path)
  ok = found == kind or (kind == "audio" and found == "video" and info.get("has_audio"))
  if not ok:
    held = {"image": "an image", "audio": "audio only", "video": "a video",
            None: "no image, audio or video this server can read"}[found]
    need = {"image": "an image (JPEG, PNG, WebP, ...)", "audio": "speech (wav, mp3, flac, m4a, "
            "or a video with sound)", "video": "a video with a face"}[kind]
    raise InputError(f"{what} ({name}) holds {held}; need {need}")
  if kind == "image" and info["width"] * info["height"] > limits.max_pixels:
    raise InputError(f"{what} ({name}) is {info['width']}x{info['height']} pixels; the limit "
                     f"is {limits.max_pixels / 1e6:g} megapixels")
  if kind != "image" and info.get("seconds", 0.0) > limits.max_seconds:
    raise InputError(f"{what} ({name}) is {info['seconds']:.1f} s long; the limit is "
                     f"{limits.max_seconds:g} s")
  out = pathlib.Path(workdir) / (re.sub(r"\W+", "_", what).strip("_") + _SUFFIX[kind])
  shutil.copyfile(path, out)
  return out
