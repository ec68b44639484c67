"""Long sequences in overlapping windows, joined without seams.

Models are trained on windows of T frames; generation handles audio of any length by running
overlapping windows and cross-fading the overlaps with linear weights (a partition of unity), so
every output frame is a convex combination of window outputs and there is no jump at a border.
Used by `jaxtalk.serve.generate` for the renderer; PLD sampling (`jaxtalk.generators.pld`)
additionally
conditions each window on the previous one's overlap.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def window_starts(total: int, window: int, overlap: int) -> list[int]:
  """Start indices of windows of length `window` covering `[0, total)` with >= `overlap` overlap.

  The last window is aligned to the end, so every window is full length when `total >= window`
  (a single window when `total <= window`).

  Raises:
    ValueError: if `overlap >= window` or sizes are not positive.
  """
  if window <= 0 or total <= 0:
    raise ValueError(f"window ({window}) and total ({total}) must be positive")
  if not 0 <= overlap < window:
    raise ValueError(f"overlap must be in [0, window): got overlap={overlap}, window={window}")
  if total <= window:
    return [0]
  stride = window - overlap
  starts = list(range(0, total - window, stride))
  starts.append(total - window)
  return starts


def run_windowed(fn: Callable[[int, int], np.ndarray], total: int, window: int,
                 overlap: int) -> np.ndarray:
  """Calls `fn(start, stop)` on overlapping windows and cross-fades the results.

  Args:
    fn: returns an array `[stop - start, ...]` (frames of that window).
    total: number of output frames.
    window: window length (the model's training window).
    overlap: frames shared by consecutive windows (cross-faded linearly).

  Returns:
    float32 array `[total, ...]`. Weights are normalised per frame, so where windows overlap the
    output is a convex combination of their outputs.
  """
  starts = window_starts(total, window, overlap)
  out = None
  norm = np.zeros(total, np.float32)
  for i, s in enumerate(starts):
    e = min(total, s + window)
    y = np.asarray(fn(s, e), np.float32)
    if y.shape[0] != e - s:
      raise ValueError(f"window [{s}, {e}) returned {y.shape[0]} frames")
    # Overlap with the previous window may be larger than `overlap` for the end-aligned last one.
    ov_prev = 0 if i == 0 else starts[i - 1] + window - s
    w = np.ones(e - s, np.float32)
    if ov_prev > 0:
      w[:ov_prev] = (np.arange(ov_prev, dtype=np.float32) + 1) / (ov_prev + 1)
    if i + 1 < len(starts):
      ov_next = s + window - starts[i + 1]
      w[-ov_next:] = np.minimum(w[-ov_next:],
                                ((np.arange(ov_next, dtype=np.float32) + 1) / (ov_next + 1))[::-1])
    if out is None:
      out = np.zeros((total,) + y.shape[1:], np.float32)
    out[s:e] += w.reshape((-1,) + (1,) * (y.ndim - 1)) * y
    norm[s:e] += w
  return out / norm.reshape((-1,) + (1,) * (out.ndim - 1))


def continue_sequence(out: np.ndarray, window_out: np.ndarray, start: int, done: int) -> int:
  """Writes a window sampled after `[0, done)` into `out[start:start + W]`, in place.

  Frames of the window that `out` already has (`start <= t < done`, the overlap the window was
  conditioned on) are cross-faded linearly from `out`'s values to the window's; the rest are
  copied. Returns the new `done` (`start + W`). Used by the sequential diffusion samplers
  (`jaxtalk.generators.pld`, `jaxtalk.generators.gohd`).
  """
  y = np.array(window_out, np.float32)
  n_ov = max(0, done - start)
  if n_ov:
    ramp = (np.arange(n_ov, dtype=np.float32) + 1) / (n_ov + 1)
    ramp = ramp.reshape((-1,) + (1,) * (y.ndim - 1))
    y[:n_ov] = (1 - ramp) * out[start:start + n_ov] + ramp * y[:n_ov]
  out[start:start + y.shape[0]] = y
  return start + y.shape[0]
