"""Synthetic Deep3DFaceRecon-like BFM files (`BFM_model_front.mat` / .npz: meanshape [1, 3N],
exBase [3N, 64], keypoints [1, 68] 1-based) for tests of `expression.load_bfm` and of
`jaxtalk expression-basis --bfm`: no BFM download exists in tests.

The 68 keypoints' mean face is the synthetic basis' 68 landmarks (`expression.synthetic_basis`:
unit IOD, x right, y down, z away, eyes open 0.1 IOD with vertical lid pairs) scaled by `SCALE`
into Deep3DFaceRecon's axes (y up, z towards the camera) and shifted by `OFFSET`; the other
vertices are random. exBase: random small directions, except component `BLINK` (moves only the
four upper-lid keypoints, `LID_DOWN` IOD down per unit) and `BROW` (moves only the ten brow
keypoints by `BROW_SHIFT` IOD (x right, y down) per unit).
"""

import numpy as np
import scipy.io

from jaxtalk.features import expression as ex

SCALE = 0.09                       # BFM units per IOD (any positive number).
OFFSET = np.array([0.01, 0.2, 0.5])
NUM_VERTICES = 150
BLINK, BROW = 0, 1
LID_DOWN = 0.02                    # IOD per unit of e[BLINK].
BROW_SHIFT = (0.01, -0.03)         # IOD per unit of e[BROW]: right and up.
UPPER_LIDS_68 = (37, 38, 43, 44)


def face68() -> np.ndarray:
  """`[68, 3]` float64 mean face in jaxtalk's frame (IOD, y down)."""
  return ex.landmark_basis(ex.synthetic_basis())[0].astype(np.float64)


def to_bfm(points: np.ndarray) -> np.ndarray:
  """jaxtalk frame (IOD, y down, z away) -> Deep3DFaceRecon's (BFM units, y up, z to camera)."""
  return points * SCALE * np.array([1.0, -1.0, -1.0])


def arrays(seed: int = 0) -> dict:
  """{"meanshape" [1, 3N], "exBase" [3N, 64], "keypoints" [1, 68] (float, 1-based)} and
  "_keypoints0" (the 0-based indices, for the test's own checks)."""
  rng = np.random.default_rng(seed)
  n = NUM_VERTICES
  kp = rng.choice(n, 68, replace=False)
  mean = rng.normal(size=(n, 3)) * SCALE
  mean[kp] = to_bfm(face68()) + OFFSET
  base = rng.normal(size=(n, 3, ex.NUM_COMPONENTS)) * 1e-3 * SCALE
  base[kp, :, BLINK] = 0.0
  base[kp, :, BROW] = 0.0
  for p in UPPER_LIDS_68:
    base[kp[p], :, BLINK] = to_bfm(np.array([0.0, LID_DOWN, 0.0]))
  for p in ex.BROWS_68:
    base[kp[p], :, BROW] = to_bfm(np.array([BROW_SHIFT[0], BROW_SHIFT[1], 0.0]))
  return dict(meanshape=mean.reshape(1, -1), exBase=base.reshape(3 * n, ex.NUM_COMPONENTS),
              keypoints=(kp + 1).astype(np.float64)[None], _keypoints0=kp)


def write_mat(path, seed: int = 0, **override) -> str:
  """Writes a synthetic BFM_model_front.mat (plus an unused `idBase`, as the real file has)."""
  data = {k: v for k, v in arrays(seed).items() if not k.startswith("_")}
  data.update(override)
  data = {k: v for k, v in data.items() if v is not None}
  data.setdefault("idBase", np.zeros((data["meanshape"].size, 2)))
  scipy.io.savemat(str(path), data)
  return str(path)


def write_npz(path, seed: int = 0, **override) -> str:
  data = {k: v for k, v in arrays(seed).items() if not k.startswith("_")}
  data.update(override)
  np.savez(str(path), **{k: v for k, v in data.items() if v is not None})
  return str(path)
