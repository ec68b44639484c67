"""Overlapping-window generation joins windows without seams."""

import numpy as np
import pytest

from jaxtalk.motion import windows


@pytest.mark.parametrize("total,window,overlap", [(750, 100, 20), (100, 100, 20), (37, 100, 10),
                                                  (101, 50, 10), (1500, 80, 16)])
def test_windows_cover_everything(total, window, overlap):
  starts = windows.window_starts(total, window, overlap)
  covered = np.zeros(total, bool)
  for s in starts:
    covered[s:s + window] = True
    assert s + min(window, total) <= total
  assert covered.all()
  for a, b in zip(starts, starts[1:]):
    assert a + window - b >= overlap


def test_identical_windows_reproduce_signal_exactly():
  x = np.random.RandomState(0).randn(333, 4).astype(np.float32)
  y = windows.run_windowed(lambda s, e: x[s:e], 333, 64, 16)
  np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5)


def test_crossfade_removes_jumps_between_offset_windows():
  # Each window adds its own constant offset: a hard cut would jump by the offset difference.
  total, window, overlap = 400, 100, 30
  starts = windows.window_starts(total, window, overlap)
  offsets = {s: float(i % 2) for i, s in enumerate(starts)}
  y = windows.run_windowed(lambda s, e: np.full((e - s, 1), offsets[s]), total, window, overlap)
  assert np.abs(np.diff(y[:, 0])).max() <= 1.0 / overlap + 1e-6


def test_bad_arguments():
  with pytest.raises(ValueError, match="overlap"):
    windows.window_starts(10, 5, 5)
  with pytest.raises(ValueError, match="positive"):
    windows.window_starts(0, 5, 1)


def test_continue_sequence_cross_fades_only_the_frames_already_there():
  out = np.zeros((10, 2), np.float32)
  out[:4] = 1.0
  done = windows.continue_sequence(out, np.full((6, 2), 3.0), start=2, done=4)
  assert done == 8
  np.testing.assert_allclose(out[:2], 1.0)                  # before the window: untouched
  np.testing.assert_allclose(out[2:4, 0], [1 + 2 / 3, 1 + 4 / 3])  # ramp 1/3, 2/3 towards 3
  np.testing.assert_allclose(out[4:8], 3.0)                 # new frames copied
  np.testing.assert_allclose(out[8:], 0.0)
  # The first window (nothing there yet) is copied as is.
  first = np.zeros((5, 1), np.float32)
  assert windows.continue_sequence(first, np.arange(5.0)[:, None], 0, 0) == 5
  np.testing.assert_array_equal(first[:, 0], np.arange(5.0))
