"""Video decoding with PyAV, resampled to 25 fps by timestamps (streaming, constant memory).

Output frame k shows the source frame whose presentation time is nearest to t0 + k / 25, where
t0 is the time of the first decoded frame. A video of duration D seconds (first frame time to the
end of the last frame) gives floor(D * 25 + 1e-3) frames: a 30 fps clip drops every sixth frame, a
lower-rate clip repeats frames.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Optional

import numpy as np

from jaxtalk.features.audio import FPS  # pylint: disable=g-importing-member


class DecodeError(ValueError):
  """A video that cannot be read (unopenable, no video stream, corrupt or truncated)."""


@dataclasses.dataclass
class VideoInfo:
  """Attributes:
    path: the file.
    width, height: frame size in pixels.
    fps: the stream's average frame rate.
    start_time: seconds, time of the first frame.
    duration: seconds from the first frame to the end of the last frame (by timestamps).
    num_frames: frames at 25 fps (floor(duration * 25)).
    has_audio: whether the container has an audio stream.
  """
  path: str
  width: int
  height: int
  fps: float
  start_time: float
  duration: float
  num_frames: int
  has_audio: bool


def _open(path: str):
  import av  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise DecodeError(f"{path}: no such file")
  try:
    container = av.open(path)
  except Exception as e:  # pylint: disable=broad-except  # av raises many error types.
    raise DecodeError(f"{path}: cannot open ({type(e).__name__}: {e})") from e
  if not container.streams.video:
    container.close()
    raise DecodeError(f"{path}: has no video stream")
  return container


def _frame_times(path: str) -> tuple[list[float], float, tuple[int, int], bool]:
  """Presentation times (s) of every video packet, the nominal fps, (W, H), has_audio."""
  import av  # pylint: disable=g-import-not-at-top
  container = _open(path)
  try:
    stream = container.streams.video[0]
    has_audio = bool(container.streams.audio)
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    times = []
    size = (stream.codec_context.width, stream.codec_context.height)
    try:
      # Packet timestamps only (no decoding): corrupt payloads are caught by `iter_frames`.
      for packet in container.demux(stream):
        if packet.size == 0:
          continue
        if packet.pts is None:
          raise DecodeError(f"{path}: video packets without timestamps")
        times.append(float(packet.pts * packet.time_base))
    except av.error.FFmpegError as e:
      raise DecodeError(f"{path}: corrupt video stream after {len(times)} frames "
                        f"({type(e).__name__}: {e})") from e
    declared = None
    if stream.duration is not None and stream.time_base is not None:
      declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
      declared = container.duration / 1e6
  finally:
    container.close()
  if not times:
    raise DecodeError(f"{path}: no decodable video frames")
  times.sort()
  step = 1.0 / fps if fps > 0 else (np.median(np.diff(times)) if len(times) > 1 else 1 / FPS)
  duration = times[-1] - times[0] + step
  if declared is not None and declared > 0 and duration < 0.9 * declared - 2 * step:
    raise DecodeError(f"{path}: truncated: decoded {duration:.2f} s of video, the container "
                      f"declares {declared:.2f} s")
  return times, fps, size, has_audio


def probe(path: str) -> VideoInfo:
  """Reads every video packet's timestamp (demuxing only, no decoding) to get exact timings.

  Raises:
    DecodeError: if the file cannot be opened, has no video stream, or is corrupt/truncated.
  """
  times, fps, (w, h), has_audio = _frame_times(path)
  step = 1.0 / fps if fps > 0 else 1 / FPS
  duration = times[-1] - times[0] + step
  return VideoInfo(path=path, width=w, height=h, fps=fps, start_time=times[0],
                   duration=duration, num_frames=int(math.floor(duration * FPS + 1e-3)),
                   has_audio=has_audio)


def iter_frames(path: str, info: Optional[VideoInfo] = None, start: int = 0,
                stop: Optional[int] = None) -> Iterator[tuple[int, np.ndarray]]:
  """Yields (k, uint8 RGB [H, W, 3]) for 25 fps output frames k in [start, stop).

  Args:
    path: the video.
    info: `probe(path)` (computed if None).
    start, stop: output frame range (default: all `info.num_frames`).

  Raises:
    DecodeError: on decoding errors.
  """
  import av  # pylint: disable=g-import-not-at-top
  info = info or probe(path)
  stop = info.num_frames if stop is None else min(stop, info.num_frames)
  if start >= stop:
    return
  container = _open(path)
  try:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    k = start
    prev, prev_t = None, None
    try:
      for frame in container.decode(stream):
        t = float(frame.pts * frame.time_base) - info.start_time if frame.pts is not None else (
            (prev_t or 0.0) + 1 / (info.fps or FPS))
        if prev is not None:
          # Output times closer to prev than to this frame get prev.
          while k < stop and k / FPS < (prev_t + t) / 2:
            yield k, prev.to_ndarray(format="rgb24")
            k += 1
          if k >= stop:
            return
        prev, prev_t = frame, t
    except av.error.FFmpegError as e:
      raise DecodeError(f"{path}: corrupt video stream ({type(e).__name__}: {e})") from e
    while prev is not None and k < stop:
      yield k, prev.to_ndarray(format="rgb24")
      k += 1
  finally:
    container.close()
