"""A linear expression basis over FaceMesh landmarks: the substitute for GoHD's 3DMM expression
coefficients e (64) and the eye-motion features f (21) computed from them.

GoHD (../shared/papers/gohd.txt) describes a face by a 3DMM (supplementary A, eq. 10):
S = S̄ + i·B_id + e·B_exp, with e in R^64 from Deep3DFaceRecon + BFM, and derives its handcrafted
eye-motion features f in R^21 (section 3.2, Fig. 4) from the 68 landmarks of the expression-only
mesh (identity and pose set to zero). BFM cannot be bundled or downloaded, so jaxtalk learns an
expression basis from the FaceMesh landmarks preprocessing already stores
(`data_pipelines/schema.py`: `landmarks [T, 478, 3]` in crop coordinates):

1. Rigid alignment (`align`): every frame's 478 landmarks are mapped by a similarity transform
   (rotation, isotropic scale, translation; Umeyama's closed-form least squares) onto the
   canonical face, fitted on the `RIGID_POINTS` only (forehead, nose bridge and tip, eye
   corners, temples: points that expressions barely move), so an open mouth does not tilt the
   fit. The stored `pose` is a six-point PnP against a generic model (`face.head_pose`) that has
   no 478-point shape, so it cannot serve as this fit; the alignment here is its own.
2. Canonical face S̄ (`canonical_shape`): the generalised-Procrustes mean of the TRAINING clips'
   frames (the basis' `mean`), expressed in a face frame: origin at the centroid of
   `RIGID_POINTS`, x from the subject's right outer eye corner (33) to the left one (263), y from
   the forehead (10) towards the chin (152) orthogonalised against x (y down, as in the image),
   z = x × y (away from the camera); unit = the 3-D outer-eye-corner distance (inter-ocular
   distance, IOD), so S̄[263] - S̄[33] = (1, 0, 0). A zero-pose mesh in this frame is frontal,
   and its (x, y) is the image-plane projection GoHD's 2-D landmarks come from.
3. Identity shape (`identity_shape`): per clip, the per-landmark, per-coordinate median of its
   aligned frames (robust to blinks and to the mouth's excursions; for a talking clip it is the
   speaker's typical, slightly open, face). It plays the role of S̄ + i·B_id.
4. Expression residual = aligned frame - identity shape; the basis B_exp (`fit_basis`) is the
   top-k principal directions of the training frames' residuals, uncentred (about the identity
   shape, not about the residuals' mean), so e = 0 is the clip's own median face and, in eq. 10,
   S̄ + e·B_exp with e = 0 is the "mean expression" reference mesh of section 3.2.
   e_t = B_exp (residual_t) (`coefficients`): B_exp has orthonormal rows, units IOD.
5. Eye-motion features (`eye_features`), GoHD Fig. 4, on the 68 landmarks of the expression-only
   mesh l_t = LANDMARKS_68 of S̄ + e_t·B_exp and of the reference l_r = LANDMARKS_68 of S̄:
   bl_t = he_t / he_r (blink ratio), he = mean eye height = mean of the four lid distances
   |l37 - l41|, |l38 - l40|, |l43 - l47|, |l44 - l46| (0-based iBUG indices: the two upper-lid
   points of each eye over the lower-lid points facing them); fr_t = flat(l_t^{17:26} - l_r^{17:26})
   (the ten brow points' (x, y) displacements, flattened point-major: x17, y17, x18, ...);
   f_t = bl_t ⊕ fr_t. Distances and displacements are 2-D, in the canonical image plane (x, y),
   as GoHD's landmarks are 2-D projections of a zero-pose mesh. The mesh points are
   `face.LANDMARKS_68` (an approximate mediapipe -> iBUG map): brows 71, 63, 105, 66, 107 (68-pt
   17-21) and 336, 296, 334, 293, 301 (22-26); lids 160 / 144 and 158 / 153 (37/41, 38/40: the
   subject's right eye), 385 / 380 and 387 / 373 (43/47, 44/46: the left eye).
   Units differ from the paper's (fr in IOD, not pixels of a 224 px render), so losses on f
   compare like with like only within jaxtalk.

The basis is versioned (`VERSION`; `load` refuses other versions) and saved as .npz
(`save`/`load`). `jaxtalk expression-basis --data_dir SHARDS` (`data_pipelines/expression_pass.py`)
fits it over the training clips of a shard directory, records it in dataset_info.json under
`expression_basis`, and writes e_t and f_t of every clip into the records (`expression`,
`eye_features`, `expression_source` = `source_tag(basis)`: data_pipelines/schema.py). Stages get
the basis their batches' e belongs to from `basis_for_config(config)` (the shards' file, or
`synthetic_basis()` for `config.input.synthetic`, whose e and f the synthetic input source draws
with `synthetic_coefficients`).

`expression_mesh`, `landmarks_68`, `eye_features` and `eye_features_from_coefficients` take numpy
arrays (and return float32 numpy) or jax arrays (and then compute with jax.numpy: differentiable,
usable inside jit), so the same functions serve preprocessing, evaluation and training losses.

Note: the 10 iris points (468-477) are part of the 478 points, so eye-in-head gaze shows up in
e as well (GoHD keeps gaze g separate); `RIGID_POINTS` never include them.

6. The BFM interface (`load_bfm`, basis kind "bfm68"): for shards whose e are imported
   Deep3DFaceRecon coefficients (`pipeline.load_coefficients`, `expression_source`
   "deep3dfacerecon"), the user's own `BFM_model_front.mat` (the file Deep3DFaceRecon fitted them
   with; jaxtalk cannot ship it) gives the paper's S̄ and B_exp exactly, restricted to its 68
   keypoints: mean `[68, 3]`, components `[64, 68 * 3]` (not orthonormal: BFM's scaled PCA
   directions; e in Deep3DFaceRecon's units). Converted to the conventions above: the axes of
   Deep3DFaceRecon's model space (x right in the image, y up, z towards the camera:
   `models/bfm.py`, whose projected landmarks' "y direction is opposite to v") become x right,
   y DOWN, z away from the camera (y and z negated: a 180° rotation about x, still right-handed);
   origin at the 68 keypoints' centroid; unit = the 3-D distance of the outer eye corners
   (68-pt 36 and 45, the points `EYE_CORNERS` 33 / 263 map to), so as in item 2 the mean's
   outer-corner distance is 1 (BFM's mean face is frontal: S̄[45] - S̄[36] is along x up to
   its own asymmetry; no rotation is applied, the zero-pose projection stays the paper's, only
   orthographic instead of Deep3DFaceRecon's 1015 px perspective). The functions of item 5 take
   68-point meshes as they are, so f and the landmark losses are GoHD's on BFM's 68 landmarks.
   `std` / `explained_variance_ratio`: no PCA statistics come with the file: `load_bfm` gives
   std = 1 and the share of each unit coefficient's 68-landmark motion (|B_k|² / Σ|B_k|²);
   `jaxtalk expression-basis --bfm` replaces them with the training clips' root mean square of
   the imported e and the shares std_k² |B_k|² / Σ (`with_statistics`; approximate, the
   components are not orthogonal). Only synthetic-data code and the pass' report read them.

Files: version 1; the `kind` field ("facemesh_pca", "bfm68") was added within version 1 (a file
without it is a FaceMesh basis), so earlier `expression_basis.npz` files still load and keep
their fingerprints and tags.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from jaxtalk.features import face

VERSION = 1
NUM_LANDMARKS = face.NUM_LANDMARKS
NUM_COMPONENTS = 64          # GoHD's e in R^64.
NUM_EYE_FEATURES = 21        # GoHD's f in R^21: blink ratio + 10 brow points x (x, y).
BASIS_FILE = "expression_basis.npz"
INFO_KEY = "expression_basis"
# Basis kinds (`ExpressionBasis.kind`, the first field of `source_tag`).
FACEMESH_PCA = "facemesh_pca"  # data_pipelines/schema.py FACEMESH_PCA.
BFM68 = "bfm68"
KIND_POINTS = {FACEMESH_PCA: NUM_LANDMARKS, BFM68: 68}
# Deep3DFaceRecon's BFM_model_front.mat arrays `load_bfm` reads.
BFM_KEYS = ("meanshape", "exBase", "keypoints")
BFM_FLIP = (1.0, -1.0, -1.0)  # its (x right, y up, z to the camera) -> (x right, y down, z away).

# Points for the rigid fit: forehead, nose bridge and tip, outer / inner eye corners, temples
# and upper cheeks near the ears (mediapipe FaceMesh indices). No lip, jaw, lid, brow or iris
# point.
RIGID_POINTS = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 109, 338, 67, 297, 33, 133, 362, 263,
                127, 356, 234, 454, 93, 323, 98, 327)

# Canonical frame: x from the subject's right outer eye corner to the left one, y from the
# forehead towards the chin.
EYE_CORNERS = (33, 263)
FOREHEAD, CHIN = 10, 152

# GoHD Fig. 4 on the 68 iBUG landmarks (0-based): brows 17-26, lid pairs (upper, lower).
BROWS_68 = tuple(range(17, 27))
LID_PAIRS_68 = ((37, 41), (38, 40), (43, 47), (44, 46))
EYE_CORNERS_68 = (36, 45)  # outer eye corners: face.LANDMARKS_68 maps them to EYE_CORNERS.
CHIN_68 = 8
BROWS = tuple(face.LANDMARKS_68[i] for i in BROWS_68)
LID_PAIRS = tuple((face.LANDMARKS_68[a], face.LANDMARKS_68[b]) for a, b in LID_PAIRS_68)


# ----------------------------------------------------------------------------------------------
# Rigid alignment and the canonical face.
# ----------------------------------------------------------------------------------------------
def _check_landmarks(landmarks, name: str = "landmarks") -> np.ndarray:
  x = np.asarray(landmarks)
  if x.ndim == 2:
    x = x[None]
  if x.ndim != 3 or x.shape[1:] != (NUM_LANDMARKS, 3):
    raise ValueError(f"{name}: expected [T, {NUM_LANDMARKS}, 3], got {x.shape}")
  if x.shape[0] == 0:
    raise ValueError(f"{name}: no frames")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name}: {int(np.sum(~np.isfinite(x)))} non-finite values")
  return x


def similarity_fit(src: np.ndarray, dst: np.ndarray):
  """Least-squares similarity transforms taking each `src` point set onto `dst` (Umeyama 1991).

  Args:
    src: `[T, P, 3]` point sets.
    dst: `[P, 3]` target points.

  Returns:
    (scale `[T]`, rotation `[T, 3, 3]` proper (det +1), translation `[T, 3]`) float64 with
    dst ≈ scale * src @ rotation.T + translation.

  Raises:
    ValueError: on mismatched shapes or a degenerate (zero-spread) source.
  """
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  if src.ndim != 3 or dst.ndim != 2 or src.shape[1:] != dst.shape or dst.shape[1] != 3:
    raise ValueError(f"similarity_fit: expected src [T, P, 3] and dst [P, 3], got {src.shape} "
                     f"and {dst.shape}")
  mu_s, mu_d = src.mean(1), dst.mean(0)
  sc, dc = src - mu_s[:, None], dst - mu_d
  var_s = np.mean(np.sum(sc ** 2, -1), -1)
  if np.any(var_s <= 1e-12):
    raise ValueError("similarity_fit: a source point set has no spread (all points equal)")
  cov = np.einsum("pi,tpj->tij", dc, sc) / src.shape[1]
  u, s, vt = np.linalg.svd(cov)
  d = np.ones_like(s)
  d[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
  d[d[:, 2] == 0, 2] = 1.0
  rot = np.einsum("tij,tj,tjk->tik", u, d, vt)
  scale = np.sum(s * d, -1) / var_s
  trans = mu_d - scale[:, None] * np.einsum("tij,tj->ti", rot, mu_s)
  return scale, rot, trans


def align(landmarks: np.ndarray, reference: np.ndarray,
          points: Sequence[int] = RIGID_POINTS) -> np.ndarray:
  """Maps each frame onto `reference` by the similarity transform fitted on `points`.

  Args:
    landmarks: `[T, 478, 3]` (or one `[478, 3]` frame) FaceMesh landmarks, any consistent unit
      (crop coordinates as stored).
    reference: `[478, 3]` the canonical face (`ExpressionBasis.mean`).
    points: landmark indices the transform is fitted on (default `RIGID_POINTS`).

  Returns:
    `[T, 478, 3]` float32 landmarks in the reference's frame and unit (IOD for the canonical
    face).

  Raises:
    ValueError: on wrong shapes or non-finite values.
  """
  x = _check_landmarks(landmarks)
  ref = _check_landmarks(reference, "reference")[0]
  idx = np.asarray(points)
  scale, rot, trans = similarity_fit(x[:, idx], ref[idx])
  out = scale[:, None, None] * np.einsum("tpj,tij->tpi", x, rot) + trans[:, None]
  return out.astype(np.float32)


def face_frame(shape: np.ndarray) -> np.ndarray:
  """`shape` `[478, 3]` expressed in the canonical face frame (module docstring, item 2).

  Returns float64 `[478, 3]`: origin at the centroid of `RIGID_POINTS`, x along 33 -> 263,
  y along forehead 10 -> chin 152 orthogonalised against x, z = x × y, unit = |263 - 33|.
  """
  s = _check_landmarks(shape, "shape")[0]
  x = s[EYE_CORNERS[1]] - s[EYE_CORNERS[0]]
  iod = np.linalg.norm(x)
  x = x / iod
  y = s[CHIN] - s[FOREHEAD]
  y = y - np.dot(y, x) * x
  y = y / np.linalg.norm(y)
  axes = np.stack([x, y, np.cross(x, y)])  # rows: the new axes in the old frame.
  return (s - s[list(RIGID_POINTS)].mean(0)) @ axes.T / iod


def canonical_shape(clips: Sequence[np.ndarray], iterations: int = 4) -> np.ndarray:
  """Generalised-Procrustes mean of all frames of `clips`, in the canonical face frame.

  Starts from the first clip's per-landmark median and alternates: align every frame to the
  current mean (`align`), average, re-express in the face frame (`face_frame`).

  Args:
    clips: list of `[T_i, 478, 3]` landmarks (the training clips).
    iterations: alignment/averaging rounds (the mean moves < 1e-4 IOD after 3 on real clips).

  Returns:
    `[478, 3]` float32, unit IOD (S̄ of eq. 10).

  Raises:
    ValueError: on no clips or a clip of the wrong shape.
  """
  if not clips:
    raise ValueError("canonical_shape: no clips")
  clips = [_check_landmarks(c, f"clip {i}") for i, c in enumerate(clips)]
  ref = face_frame(np.median(clips[0], 0))
  for _ in range(iterations):
    total = np.zeros_like(ref)
    n = 0
    for c in clips:
      total += align(c, ref).astype(np.float64).sum(0)
      n += len(c)
    ref = face_frame(total / n)
  return ref.astype(np.float32)


def identity_shape(aligned: np.ndarray) -> np.ndarray:
  """The clip's identity shape: per-landmark, per-coordinate median of its aligned frames.

  Args:
    aligned: `[T, 478, 3]` frames of one clip after `align`.

  Returns:
    `[478, 3]` float32 (same unit as `aligned`).
  """
  return np.median(_check_landmarks(aligned, "aligned"), 0).astype(np.float32)


def residuals(landmarks: np.ndarray, reference: np.ndarray,
              identity: Optional[np.ndarray] = None) -> np.ndarray:
  """Expression residuals of one clip: aligned frames minus the clip's identity shape.

  Args:
    landmarks: `[T, 478, 3]` landmarks of ONE clip (one identity).
    reference: `[478, 3]` canonical face.
    identity: `[478, 3]` identity shape in the canonical frame; default `identity_shape` of
      these frames (needs the clip's frames, not a few of them: a median of 1-2 frames is the
      frames themselves and leaves no expression).

  Returns:
    `[T, 478, 3]` float32, unit IOD.
  """
  a = align(landmarks, reference)
  ident = identity_shape(a) if identity is None else _check_landmarks(identity, "identity")[0]
  return (a - ident).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The basis (PCA) and eq. 10.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExpressionBasis:
  """An expression basis: eq. 10's S̄ and B_exp (the FaceMesh substitute, or BFM's 68 keypoints).

  Attributes:
    mean: `[P, 3]` float32 canonical face S̄, unit IOD, x right, y down (module docstring, items
      2 and 6); P = 478 (kind "facemesh_pca") or 68 (kind "bfm68").
    components: `[k, P * 3]` float32 B_exp (flattened point-major: x0, y0, z0, x1, ...).
      facemesh_pca: orthonormal rows, sign fixed so each row's largest-magnitude entry is
      positive. bfm68: BFM's exBase at the keypoints, IOD per unit of Deep3DFaceRecon's e.
    std: `[k]` float32 root mean square of each coefficient over the training frames (e's
      units); bfm68: see the module docstring, item 6.
    explained_variance_ratio: `[k]` float32 fraction of the training residuals' total second
      moment (about the identity shapes) each component carries, decreasing; bfm68: item 6.
    version: the format version (`VERSION`).
    kind: `FACEMESH_PCA` or `BFM68` (`KIND_POINTS`).
  """
  mean: np.ndarray
  components: np.ndarray
  std: np.ndarray
  explained_variance_ratio: np.ndarray
  version: int = VERSION
  kind: str = FACEMESH_PCA

  @property
  def num_components(self) -> int:
    return int(self.components.shape[0])

  @property
  def num_points(self) -> int:
    return int(self.mean.shape[0])


def fit_basis(aligned_residuals: np.ndarray, mean: np.ndarray,
              k: int = NUM_COMPONENTS) -> ExpressionBasis:
  """PCA of expression residuals -> `ExpressionBasis` (uncentred: e = 0 is the identity shape).

  Args:
    aligned_residuals: `[N, 478, 3]` or `[N, 1434]` residuals of the training frames
      (`residuals`), pooled over clips, unit IOD.
    mean: `[478, 3]` the canonical face S̄ stored with the basis.
    k: number of components (GoHD: 64).

  Returns:
    the basis; its `explained_variance_ratio` sums to the fraction of the residuals' second
    moment that k components keep.

  Raises:
    ValueError: on wrong shapes, non-finite values, or k not in [1, min(N, 1434)].
  """
  d = NUM_LANDMARKS * 3
  x = np.asarray(aligned_residuals, np.float64)
  x = x.reshape(x.shape[0], -1) if x.ndim == 3 else x
  if x.ndim != 2 or x.shape[1] != d:
    raise ValueError(f"fit_basis: expected residuals [N, {NUM_LANDMARKS}, 3] or [N, {d}], got "
                     f"{np.shape(aligned_residuals)}")
  if not np.all(np.isfinite(x)):
    raise ValueError("fit_basis: non-finite residuals")
  if not 1 <= k <= min(x.shape):
    raise ValueError(f"fit_basis: k={k} components need 1 <= k <= min(frames, {d}) "
                     f"(got {x.shape[0]} frames)")
  mean = _check_landmarks(mean, "mean")[0]
  gram = x.T @ x  # [d, d] second moment (uncentred).
  evals, evecs = np.linalg.eigh(gram)
  order = np.argsort(evals)[::-1][:k]
  comps = evecs[:, order].T  # [k, d]
  evals = np.maximum(evals[order], 0.0)
  flip = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), 1)])
  comps = comps * flip[:, None]
  total = float(np.trace(gram))
  return ExpressionBasis(
      mean=mean.astype(np.float32), components=comps.astype(np.float32),
      std=np.sqrt(evals / x.shape[0]).astype(np.float32),
      explained_variance_ratio=(evals / max(total, 1e-30)).astype(np.float32))


def coefficients(basis: ExpressionBasis, landmarks: np.ndarray,
                 identity: Optional[np.ndarray] = None) -> np.ndarray:
  """Expression coefficients e of a clip's frames (GoHD's e_t, for the FaceMesh basis).

  Args:
    basis: the fitted basis.
    landmarks: `[T, 478, 3]` landmarks of ONE clip as stored (crop coordinates), or aligned.
    identity: `[478, 3]` the clip's identity shape in the canonical frame (default: the median
      of these frames, `identity_shape`; pass it when `landmarks` is only part of a clip).

  Returns:
    `[T, k]` float32 e, unit IOD (the residual's projection on each orthonormal component;
    typical magnitude `basis.std`).

  Raises:
    ValueError: on wrong shapes or non-finite values, or a "bfm68" basis (its e are imported
      Deep3DFaceRecon coefficients, not projections of FaceMesh landmarks).
  """
  if basis.kind != FACEMESH_PCA:
    raise ValueError(f"coefficients: a {basis.kind} basis' e are imported (Deep3DFaceRecon), "
                     "not projected from FaceMesh landmarks")
  r = residuals(landmarks, basis.mean, identity)
  return (r.reshape(len(r), -1) @ basis.components.T).astype(np.float32)


def _array_module(*xs):
  """`jax.numpy` if any of `xs` is a jax array (a tracer inside jit included), else numpy."""
  jax = sys.modules.get("jax")
  if jax is not None and any(isinstance(x, jax.Array) for x in xs):
    return jax.numpy
  return np


def expression_mesh(basis: ExpressionBasis, e):
  """The expression-only mesh of eq. 10 with identity and pose zero: S̄ + e·B_exp.

  Args:
    basis: the fitted basis.
    e: `[..., k]` coefficients: a numpy array, or a jax array (then computed with jax.numpy,
      differentiable and traceable under jit).

  Returns:
    `[..., P, 3]` float32 in the canonical frame (unit IOD), of e's array kind: P = 478 for a
    FaceMesh basis, 68 for a BFM-68 one (`basis.num_points`).

  Raises:
    ValueError: if e's last dimension is not the basis' k.
  """
  xp = _array_module(e)
  e = xp.asarray(e, xp.float32)
  if e.ndim < 1 or e.shape[-1] != basis.num_components:
    raise ValueError(f"expression_mesh: expected e [..., {basis.num_components}], got {e.shape}")
  delta = (e @ xp.asarray(basis.components)).reshape(e.shape[:-1] + (basis.num_points, 3))
  return xp.asarray(basis.mean) + delta


def landmarks_68(mesh):
  """`[..., 478, 3]` FaceMesh mesh -> `[..., 68, 3]` iBUG-68-like landmarks
  (`face.LANDMARKS_68`); a `[..., 68, 3]` mesh (a BFM-68 basis') is returned as it is. numpy or
  jax arrays (indexing only, differentiable). ValueError for other shapes."""
  mesh = _array_module(mesh).asarray(mesh)
  if mesh.shape[-2:] == (68, 3):
    return mesh
  if mesh.shape[-2:] != (NUM_LANDMARKS, 3):
    raise ValueError(f"landmarks_68: expected [..., {NUM_LANDMARKS}, 3] or [..., 68, 3], got "
                     f"{mesh.shape}")
  return mesh[..., list(face.LANDMARKS_68), :]


def _eye_height(l68, xp=np):
  # sqrt(|d|² + 1e-12): the same value to ~1e-6 IOD, and a finite gradient when the lids touch.
  d = [xp.sqrt(xp.sum((l68[..., a, :2] - l68[..., b, :2]) ** 2, axis=-1) + 1e-12)
       for a, b in LID_PAIRS_68]
  return sum(d) / len(d)


def eye_features_68(l68, l68_ref, xp=np):
  """GoHD Fig. 4 on 68 landmarks: f = bl ⊕ fr (see `eye_features`).

  Args:
    l68: `[..., 68, 3]` (or `[..., 68, 2]`) landmarks of expression-only meshes.
    l68_ref: `[68, 3]` (or 2) landmarks of the neutral mesh (e = 0).
    xp: the array module (`numpy`, or `jax.numpy` inside jit: the function is differentiable).

  Returns:
    `[..., 21]` (xp's float): [0] blink ratio, [1:21] brow displacements (x, y), point-major.
  """
  bl = _eye_height(l68, xp) / _eye_height(l68_ref, xp)
  fr = l68[..., list(BROWS_68), :2] - l68_ref[list(BROWS_68), :2]
  fr = fr.reshape(fr.shape[:-2] + (2 * len(BROWS_68),))
  return xp.concatenate([bl[..., None], fr], -1)


def eye_features(mesh, reference):
  """GoHD's eye-motion feature f_t = bl_t ⊕ fr_t (Fig. 4) of expression-only meshes.

  bl_t = he_t / he_r, he = mean of the 2-D lid distances |l37-l41|, |l38-l40|, |l43-l47|,
  |l44-l46| of the 68 landmarks; fr_t = flat(l_t^{17:26} - l_r^{17:26}) over (x, y), point-major.
  See the module docstring (item 5) for the FaceMesh points.

  Args:
    mesh: `[..., P, 3]` expression-only meshes (`expression_mesh`), canonical frame, P = 478
      (FaceMesh) or 68 (BFM-68, used as they are); numpy, or jax (then computed with jax.numpy,
      differentiable).
    reference: `[P, 3]` the neutral mesh, e = 0 (`basis.mean`), same P as `mesh`.

  Returns:
    `[..., 21]` float32: [0] blink ratio (1 = the reference opening, 0 = lids touching; > 1
    wider open), [1:21] brow displacements in the mesh's unit (IOD), x right, y down; a jax
    array when either input is one.

  Raises:
    ValueError: on wrong shapes, or a (numpy) reference whose eyes are closed (he_r = 0).
  """
  xp, ref_xp = _array_module(mesh, reference), _array_module(reference)
  mesh = xp.asarray(mesh, xp.float32)
  ref = ref_xp.asarray(reference, ref_xp.float32)
  if ref.shape not in ((NUM_LANDMARKS, 3), (68, 3)) or mesh.shape[-2:] != ref.shape:
    raise ValueError(f"eye_features: expected mesh [..., P, 3] and reference [P, 3] with P = "
                     f"{NUM_LANDMARKS} or 68, got {mesh.shape} and {ref.shape}")
  lt, lr = landmarks_68(mesh), landmarks_68(ref)
  if ref_xp is np:
    he_r = _eye_height(lr)
    if not he_r > 1e-5:
      raise ValueError(f"eye_features: the reference's mean eye height is {he_r} (eyes closed)")
  return eye_features_68(lt, lr, xp).astype(xp.float32)


def landmark_basis(basis: ExpressionBasis) -> tuple[np.ndarray, np.ndarray]:
  """The basis restricted to the 68 landmarks: `(mean68 [68, 3], comps68 [k, 68, 3])` float32,
  so that `landmarks_68(expression_mesh(basis, e)) == mean68 + einsum("...k,kpc->...pc", e,
  comps68)`: a linear map losses can use inside jit (GoHD eqs. 20-22). A BFM-68 basis is
  already restricted: its mean and components, reshaped."""
  comps = basis.components.reshape(basis.num_components, basis.num_points, 3)
  if basis.num_points == 68:
    return basis.mean.astype(np.float32), comps.astype(np.float32)
  idx = list(face.LANDMARKS_68)
  return basis.mean[idx].astype(np.float32), comps[:, idx].astype(np.float32)


def eye_features_from_coefficients(basis: ExpressionBasis, e):
  """f of coefficients e `[..., k]` -> `[..., 21]`: `eye_features(expression_mesh(basis, e),
  basis.mean)` (GoHD section 3.2: f computed from e); numpy or jax e (differentiable)."""
  return eye_features(expression_mesh(basis, e), basis.mean)


# ----------------------------------------------------------------------------------------------
# Files.
# ----------------------------------------------------------------------------------------------
def save(basis: ExpressionBasis, path: str) -> None:
  """Writes `basis` to `path` (.npz with its `kind`; temporary name, then rename)."""
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.savez(f, version=np.int64(basis.version), kind=np.str_(basis.kind), mean=basis.mean,
             components=basis.components, std=basis.std,
             explained_variance_ratio=basis.explained_variance_ratio)
  os.replace(tmp, path)


def load(path: str) -> ExpressionBasis:
  """Reads a basis written by `save` (a file without `kind`, written before it existed, is a
  FaceMesh basis).

  Raises:
    ValueError: naming the file when it is missing, not an .npz, lacks a field, has another
      `version` than `VERSION` or an unknown `kind`, or has inconsistent shapes.
  """
  try:
    with np.load(path, allow_pickle=False) as z:
      data = {k: z[k] for k in z.files}
  except FileNotFoundError as e:
    raise ValueError(f"{path}: not found; run `jaxtalk expression-basis` first") from e
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not an expression basis .npz ({e})") from e
  need = ("version", "mean", "components", "std", "explained_variance_ratio")
  missing = [k for k in need if k not in data]
  if missing:
    raise ValueError(f"{path}: not an expression basis (missing {missing})")
  version = int(data["version"])
  if version != VERSION:
    raise ValueError(f"{path}: expression basis version {version}, this code reads {VERSION}; "
                     "re-run `jaxtalk expression-basis`")
  kind = str(data["kind"]) if "kind" in data else FACEMESH_PCA
  if kind not in KIND_POINTS:
    raise ValueError(f"{path}: unknown expression basis kind {kind!r} (this code reads "
                     f"{sorted(KIND_POINTS)}); re-run `jaxtalk expression-basis`")
  k, p = data["components"].shape[0], KIND_POINTS[kind]
  if (data["mean"].shape != (p, 3)
      or data["components"].shape != (k, p * 3)
      or data["std"].shape != (k,) or data["explained_variance_ratio"].shape != (k,)):
    raise ValueError(f"{path}: inconsistent shapes for a {kind} basis of {p} points "
                     f"{ {n: data[n].shape for n in need[1:]} }")
  return ExpressionBasis(
      mean=data["mean"].astype(np.float32), components=data["components"].astype(np.float32),
      std=data["std"].astype(np.float32),
      explained_variance_ratio=data["explained_variance_ratio"].astype(np.float32),
      version=version, kind=kind)


def _bfm_arrays(path: str) -> dict:
  """{`BFM_KEYS` name: array} of a .mat (scipy) or .npz file; ValueError naming the file."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in (".mat", ".npz"):
    raise ValueError(f"{path}: unknown BFM file format {ext!r}; expected Deep3DFaceRecon's "
                     "BFM_model_front.mat (or an .npz with the same arrays)")
  if not os.path.isfile(path):
    raise ValueError(f"{path}: BFM file not found (Deep3DFaceRecon's BFM/BFM_model_front.mat)")
  try:
    if ext == ".npz":
      with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k in BFM_KEYS}
    import scipy.io  # pylint: disable=g-import-not-at-top
    return {k: v for k, v in scipy.io.loadmat(path, variable_names=list(BFM_KEYS)).items()
            if k in BFM_KEYS}
  except Exception as e:  # pylint: disable=broad-except  # scipy / numpy raise many types.
    raise ValueError(f"{path}: not a readable BFM file ({type(e).__name__}: {e})") from e


def _bfm_keypoint_arrays(path: str):
  """(mean `[68, 3]`, exBase `[68, 3, 64]`) float64 at the 68 keypoints, Deep3DFaceRecon's axes
  and units; ValueError naming the file for missing arrays, wrong shapes or bad values."""
  raw = _bfm_arrays(path)
  missing = [k for k in BFM_KEYS if k not in raw]
  if missing:
    raise ValueError(f"{path}: no {missing} (has {sorted(raw)}); expected Deep3DFaceRecon's "
                     "BFM_model_front.mat with meanshape [1, 3N], exBase [3N, 64], keypoints "
                     "[1, 68]")
  arrs = {k: np.asarray(raw[k]) for k in BFM_KEYS}
  for k, a in arrs.items():
    if a.dtype.kind not in "fiu" or not a.size:
      raise ValueError(f"{path}: `{k}` should be a number array, got {a.dtype} {list(a.shape)}")
  mean, base, kp = arrs["meanshape"].reshape(-1), arrs["exBase"], arrs["keypoints"].reshape(-1)
  n = mean.size // 3
  shape = arrs["meanshape"].shape
  if mean.size % 3 or len(shape) > 2 or (len(shape) == 2 and 1 not in shape):
    raise ValueError(f"{path}: `meanshape` should be [1, 3N] (x, y, z per vertex), got "
                     f"{list(arrs['meanshape'].shape)}")
  if base.shape != (3 * n, NUM_COMPONENTS):
    raise ValueError(f"{path}: `exBase` should be [3N, {NUM_COMPONENTS}] = [{3 * n}, "
                     f"{NUM_COMPONENTS}] for meanshape's N = {n} vertices, got {list(base.shape)}")
  if kp.size != 68 or np.any(kp != np.round(kp)) or kp.min() < 1 or kp.max() > n:
    raise ValueError(f"{path}: `keypoints` should be 68 1-based vertex indices in [1, {n}], got "
                     f"{list(arrs['keypoints'].shape)} in [{kp.min()}, {kp.max()}]")
  idx = kp.astype(np.int64) - 1
  mean68 = mean.reshape(n, 3)[idx].astype(np.float64)
  base68 = base.reshape(n, 3, NUM_COMPONENTS)[idx].astype(np.float64)
  for k, a in (("meanshape", mean68), ("exBase", base68)):
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{path}: `{k}` has {int(np.sum(~np.isfinite(a)))} non-finite values "
                       "at the keypoints")
  return mean68, base68


def load_bfm(path: str) -> ExpressionBasis:
  """The BFM-68 basis (kind "bfm68") of a Deep3DFaceRecon `BFM_model_front.mat` (module
  docstring, item 6): S̄ and B_exp of eq. 10 at BFM's 68 keypoints, in jaxtalk's frame.

  Reads `meanshape [1, 3N]` (x, y, z per vertex, point-major), `exBase [3N, 64]` (same rows)
  and `keypoints [1, 68]` (1-based vertex indices of the iBUG-68 landmarks), as
  Deep3DFaceRecon_pytorch's `models/bfm.py` does; only those three arrays are loaded. An `.npz`
  with the same arrays is read without scipy.

  Args:
    path: the `.mat` or `.npz` file.

  Returns:
    basis: mean `[68, 3]` float32 (centred on the keypoints, unit = outer-eye-corner distance,
    x right, y down, z away from the camera), components `[64, 204]` float32 (IOD per unit of
    Deep3DFaceRecon's e), std ones, explained_variance_ratio |B_k|² / Σ|B_k|².

  Raises:
    ValueError: naming the file when it is missing or unreadable, lacks an array, has wrong
      shapes, keypoints out of range, non-finite values at the keypoints, coincident eye
      corners, or a face not in Deep3DFaceRecon's axes (y up: chin below the brows).
  """
  mean68, base68 = _bfm_keypoint_arrays(path)
  flip = np.asarray(BFM_FLIP)
  mean68 = mean68 * flip
  base68 = base68 * flip[None, :, None]
  a, b = EYE_CORNERS_68
  iod = float(np.linalg.norm(mean68[b] - mean68[a]))
  if not iod > 1e-9:
    raise ValueError(f"{path}: the outer eye corners (keypoints 37 and 46, 1-based) coincide")
  if not (mean68[b, 0] > mean68[a, 0]
          and mean68[CHIN_68, 1] > mean68[list(BROWS_68), 1].mean()):
    raise ValueError(f"{path}: the mean face is not in Deep3DFaceRecon's axes (x right, y up: "
                     "the subject's left eye at larger x, the chin below the brows)")
  mean = (mean68 - mean68.mean(0)) / iod
  comps = np.transpose(base68, (2, 0, 1)).reshape(NUM_COMPONENTS, -1) / iod
  norms = np.sum(comps ** 2, -1)
  return ExpressionBasis(mean=mean.astype(np.float32), components=comps.astype(np.float32),
                         std=np.ones(NUM_COMPONENTS, np.float32),
                         explained_variance_ratio=(norms / norms.sum()).astype(np.float32),
                         kind=BFM68)


def with_statistics(basis: ExpressionBasis, e) -> ExpressionBasis:
  """`basis` with `std` = the root mean square of coefficients `e [N, k]` (e.g. a dataset's
  imported training frames) and `explained_variance_ratio` = std_k² |B_k|² / Σ_j std_j² |B_j|²
  (each component's share of the landmark motion if the coefficients were independent; exact
  for orthonormal components). Mean, components and so `fingerprint` are unchanged.

  Raises:
    ValueError: e is not `[N, k]` with N >= 1, or has non-finite values.
  """
  e = np.asarray(e, np.float64)
  if e.ndim != 2 or e.shape[1] != basis.num_components or not e.shape[0]:
    raise ValueError(f"with_statistics: expected e [N, {basis.num_components}], got {e.shape}")
  if not np.all(np.isfinite(e)):
    raise ValueError("with_statistics: non-finite coefficients")
  std = np.sqrt(np.mean(e ** 2, 0))
  share = std ** 2 * np.sum(np.asarray(basis.components, np.float64) ** 2, -1)
  return dataclasses.replace(basis, std=std.astype(np.float32),
                             explained_variance_ratio=(share / max(share.sum(), 1e-30)).astype(
                                 np.float32))


def fit_clips(clips: Mapping[str, np.ndarray] | Sequence[np.ndarray],
              k: int = NUM_COMPONENTS) -> ExpressionBasis:
  """The whole fit over training clips: canonical face, per-clip identities, PCA.

  Args:
    clips: `[T_i, 478, 3]` landmarks per clip (a dict by clip id or a list), one identity each.
    k: components.
  """
  clips = list(clips.values()) if isinstance(clips, Mapping) else list(clips)
  mean = canonical_shape(clips)
  res = np.concatenate([residuals(c, mean) for c in clips])
  return fit_basis(res, mean, k)


def fingerprint(basis: ExpressionBasis) -> str:
  """12 hex digits of the sha256 of the basis' version (and kind, other than "facemesh_pca",
  whose fingerprints predate it), mean and components (float32 bytes): which basis a record's
  coefficients / eye features were computed with (`source_tag`)."""
  head = f"v{basis.version}" if basis.kind == FACEMESH_PCA else f"{basis.kind}:v{basis.version}"
  h = hashlib.sha256(head.encode())
  for arr in (basis.mean, basis.components):
    h.update(np.ascontiguousarray(arr, np.float32).tobytes())
  return h.hexdigest()[:12]


def source_tag(basis: ExpressionBasis) -> str:
  """"<kind>:v<version>:<fingerprint>": the records' `expression_source` for coefficients of a
  FaceMesh basis ("facemesh_pca:v1:...", data_pipelines/schema.py); for a BFM-68 basis
  ("bfm68:v1:...") the clips' `eye_features_source` in dataset_info.json (their e stay
  "deep3dfacerecon")."""
  return f"{basis.kind}:v{basis.version}:{fingerprint(basis)}"


# ----------------------------------------------------------------------------------------------
# The basis of a stage's data.
# ----------------------------------------------------------------------------------------------
def _cfg_get(cfg, name, default):
  try:
    value = cfg.get(name, default)
  except AttributeError:
    value = getattr(cfg, name, default)
  return default if value is None else value


def _check_sources(info: Mapping[str, Any], basis: ExpressionBasis, data_dir: str) -> None:
  """Raises unless the clips' coefficients (dataset_info.json `expression_source`) belong to
  `basis`: all this FaceMesh basis' tag, or all imported Deep3DFaceRecon ones with a BFM-68
  basis whose tag is every clip's `eye_features_source`. Messages name the fix."""
  from data_pipelines import schema  # pylint: disable=g-import-not-at-top
  clips = info.get("clips", [])
  sources = {c.get("expression_source") for c in clips}
  path = os.path.join(data_dir, BASIS_FILE)
  fix = f"run `jaxtalk expression-basis --data_dir {data_dir}`"
  bfm_fix = (f"run `jaxtalk expression-basis --data_dir {data_dir} --bfm BFM_model_front.mat` "
             "(the Deep3DFaceRecon BFM file the coefficients were fitted with: it writes the "
             "BFM-68 basis and the eye features of the imported e)")
  tag = source_tag(basis)
  if sources == {None}:
    raise ValueError(f"{data_dir}: the shards have no expression coefficients; {fix}")
  if schema.DEEP3DFACERECON in sources:
    if len(sources) > 1:
      n = sum(c.get("expression_source") == schema.DEEP3DFACERECON for c in clips)
      raise ValueError(
          f"{data_dir}: {n} of {len(clips)} clips carry imported Deep3DFaceRecon (BFM) "
          f"coefficients, the others {sorted(str(s) for s in sources - {schema.DEEP3DFACERECON})}"
          f": one basis ({path}) does not describe both; give every video a manifest "
          f"`coefficients` file (re-run `jaxtalk preprocess`) and {bfm_fix}, or drop the "
          f"`coefficients` (re-run `jaxtalk preprocess`) and {fix}")
    if basis.kind != BFM68:
      raise ValueError(f"{data_dir}: clips carry imported Deep3DFaceRecon (BFM) coefficients, "
                       f"which the {basis.kind} basis {path} does not describe; {bfm_fix}")
    stale = sorted(c.get("clip_id") for c in clips if c.get("eye_features_source") != tag)
    if stale:
      raise ValueError(f"{data_dir}: the eye features of {len(stale)} of {len(clips)} clips "
                       f"(e.g. {stale[:3]}) were not computed with {path} ({tag}: missing, or "
                       f"written with another BFM file); {bfm_fix}")
    return
  if basis.kind == BFM68:
    raise ValueError(f"{data_dir}: {path} is a BFM-68 basis ({tag}) for imported Deep3DFaceRecon "
                     f"coefficients, but the clips' come from {sorted(str(s) for s in sources)}; "
                     f"{fix} (without --bfm)")
  other = sorted(str(s) for s in sources if s != tag)
  if other:
    raise ValueError(f"{data_dir}: clips' expression coefficients come from {other}, not from "
                     f"{path} ({tag}; missing on some clips, or written with an older fit); {fix}")


def basis_for_config(config) -> ExpressionBasis:
  """The expression basis that the batches' `expression` of `config` belongs to.

  Turns a stage's e into meshes and landmarks (`expression_mesh`, `landmarks_68`, `eye_features`).

  Args:
    config: a stage config; reads `config.input.synthetic` and `config.input.data_dir`.

  Returns:
    synthetic data: `synthetic_basis()` (the input pipeline's synthetic e and f come from it);
    real data: `<data_dir>/expression_basis.npz` (`load`): the FaceMesh basis, or for shards of
    imported Deep3DFaceRecon coefficients the BFM-68 basis `jaxtalk expression-basis --bfm`
    stored (`load_bfm`).

  Raises:
    ValueError: no data_dir; the basis file is missing (names `jaxtalk expression-basis`); or
      the shards' coefficients are not this basis' (another fit, missing on some clips,
      imported Deep3DFaceRecon coefficients without the BFM-68 basis and eye features of
      `--bfm`, or a mix of imported and FaceMesh coefficients), each naming the fix.
  """
  from jaxtalk.core import files  # pylint: disable=g-import-not-at-top
  inp = config.input
  if _cfg_get(inp, "synthetic", False):
    return synthetic_basis()
  data_dir = _cfg_get(inp, "data_dir", "")
  if not data_dir:
    raise ValueError("config.input.data_dir is empty (set it, or config.input.synthetic=True)")
  path = os.path.join(data_dir, BASIS_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"{path}: not found; run `jaxtalk expression-basis --data_dir {data_dir}` "
                     "(fits the basis and writes e and f into the shards)")
  basis = load(path)
  info = files.read_json(os.path.join(data_dir, "dataset_info.json"),
                         hint="; run `jaxtalk preprocess` first")
  _check_sources(info, basis, data_dir)
  return basis


# ----------------------------------------------------------------------------------------------
# Synthetic basis and coefficients (`config.input.synthetic`).
# ----------------------------------------------------------------------------------------------
# Designed components of `synthetic_basis` (the rest are random directions on other points).
SYNTHETIC_MOUTH, SYNTHETIC_BLINK, SYNTHETIC_BROW, SYNTHETIC_FROWN, SYNTHETIC_SMILE = range(5)
_UPPER_LIPS = (39, 37, 0, 267, 269, 82, 13, 312)
_LOWER_LIPS = (405, 314, 17, 84, 181, 317, 14, 87)
_JAW = ((152, 1.0), (148, 1.0), (377, 1.0), (149, 0.9), (378, 0.9), (136, 0.6), (365, 0.6),
        (172, 0.3), (397, 0.3), (58, 0.2), (288, 0.2))
_UPPER_LIDS = (160, 158, 159, 385, 387, 386)
_LOWER_LIDS = (144, 153, 145, 380, 373, 374)


def _synthetic_mean() -> np.ndarray:
  """A fixed face-like `[478, 3]` mesh: a random cloud with the points f, the mouth and the face
  frame use placed (eyes 0.1 IOD open, brows, lips, jaw, forehead, chin), in the face frame."""
  rng = np.random.default_rng(20240516)
  mesh = np.stack([rng.uniform(-0.7, 0.7, NUM_LANDMARKS), rng.uniform(-0.9, 1.0, NUM_LANDMARKS),
                   rng.uniform(-0.3, 0.3, NUM_LANDMARKS)], -1)
  # Eye corners, then the lid pairs (upper 0.05 above, lower 0.05 below the corners' line).
  for k, x in ((33, -0.5), (133, -0.15), (362, 0.15), (263, 0.5)):
    mesh[k] = (x, 0.0, 0.0)
  for (up, low), x in zip(LID_PAIRS + ((159, 145), (386, 374)), (-0.4, -0.25, 0.25, 0.4, -0.33,
                                                                  0.33)):
    mesh[up], mesh[low] = (x, -0.05, 0.0), (x, 0.05, 0.0)
  for i, k in enumerate(BROWS):
    x = (-0.6, -0.48, -0.36, -0.24, -0.12, 0.12, 0.24, 0.36, 0.48, 0.6)[i]
    mesh[k] = (x, -0.3 + 0.05 * abs(abs(x) - 0.36) / 0.24, 0.0)
  mesh[10], mesh[152] = (0.0, -0.9, 0.0), (0.0, 1.1, 0.0)
  mesh[61], mesh[291], mesh[78], mesh[308] = (-0.3, 0.75, 0), (0.3, 0.75, 0), (-0.25, 0.76, 0), (
      0.25, 0.76, 0)
  for k, x in zip(_UPPER_LIPS, (-0.2, -0.1, 0.0, 0.1, 0.2, -0.1, 0.0, 0.1)):
    mesh[k] = (x, 0.68 if k in (39, 37, 0, 267, 269) else 0.74, 0.0)
  for k, x in zip(_LOWER_LIPS, (0.2, 0.1, 0.0, -0.1, -0.2, 0.1, 0.0, -0.1)):
    mesh[k] = (x, 0.85 if k in (405, 314, 17, 84, 181) else 0.78, 0.0)
  return face_frame(mesh)


def _synthetic_directions(k: int) -> np.ndarray:
  """`[k, 478 * 3]` un-normalised: mouth opening (lower lips and jaw down, upper lips up), eye
  closing (upper lids down), brow lowering, frown, smile; then random directions on points none
  of those, nor `RIGID_POINTS`, move."""
  d = np.zeros((max(k, 5), NUM_LANDMARKS, 3))
  for p in _LOWER_LIPS + (61, 291, 78, 308):
    d[SYNTHETIC_MOUTH, p, 1] = 1.0 if p in _LOWER_LIPS else 0.4
  for p in _UPPER_LIPS:
    d[SYNTHETIC_MOUTH, p, 1] = -0.25
  for p, w in _JAW:
    d[SYNTHETIC_MOUTH, p, 1] = w
  d[SYNTHETIC_BLINK, list(_UPPER_LIDS), 1] = 1.0
  d[SYNTHETIC_BLINK, list(_LOWER_LIDS), 1] = -0.2
  d[SYNTHETIC_BROW, list(BROWS), 1] = 1.0
  for p, sign in zip((107, 66, 336, 296), (1.0, 1.0, -1.0, -1.0)):  # inner brows together.
    d[SYNTHETIC_FROWN, p] = (sign, 0.5, 0.0)
  d[SYNTHETIC_SMILE, 61], d[SYNTHETIC_SMILE, 291] = (-1.0, -0.5, 0.0), (1.0, -0.5, 0.0)
  used = set(RIGID_POINTS) | set(np.flatnonzero(np.abs(d[:5]).sum((0, 2))))
  free = [p for p in range(NUM_LANDMARKS) if p not in used]
  rng = np.random.default_rng(7)
  d[5:, free] = rng.normal(size=(max(k, 5) - 5, len(free), 3))
  return d[:k].reshape(k, -1)


@functools.lru_cache(maxsize=4)
def synthetic_basis(k: int = NUM_COMPONENTS) -> ExpressionBasis:
  """The fixed basis of the synthetic input source (`config.input.synthetic`).

  S̄ = `_synthetic_mean` (eyes open 0.1 IOD, unit IOD, face frame); orthonormal components
  (Gram-Schmidt of `_synthetic_directions`, in that order, so each designed one keeps its
  meaning): 0 mouth opening, 1 eye closing (e_1 > 0 lowers the upper lids: blink ratio
  1 - e_1 / `synthetic_blink_full(basis)`), 2 brow lowering, 3 frown, 4 smile, 5.. random
  directions on points f and the mouth do not use. None moves a `RIGID_POINTS` point, so
  `coefficients` inverts `expression_mesh` exactly under any pose. `std` is the approximate
  root mean square of `synthetic_coefficients`' e. Deterministic; the arrays are read-only.

  Raises:
    ValueError: for k < 5.
  """
  if k < 5:
    raise ValueError(f"synthetic_basis: k={k}, needs at least the 5 designed components")
  d = _synthetic_directions(k)
  q, r = np.linalg.qr(d.T)
  comps = (q * np.sign(np.diag(r))).T * (np.abs(d).sum(0) > 0)  # exact zeros off the support.
  comps = comps.astype(np.float32)
  std = np.array([0.125, 0.03, 0.014, 0.006, 0.011]
                 + [0.0035 / (1 + j / 8) for j in range(k - 5)], np.float32)
  basis = ExpressionBasis(mean=_synthetic_mean().astype(np.float32), components=comps, std=std,
                          explained_variance_ratio=(std ** 2 / np.sum(std ** 2)).astype(
                              np.float32))
  for arr in (basis.mean, basis.components, basis.std, basis.explained_variance_ratio):
    arr.flags.writeable = False
  return basis


def synthetic_blink_full(basis: ExpressionBasis) -> float:
  """e_1 (`SYNTHETIC_BLINK`) at which the synthetic mesh's lids touch (blink ratio 0)."""
  m68, c68 = landmark_basis(basis)
  gap = np.mean([m68[b, 1] - m68[a, 1] for a, b in LID_PAIRS_68])
  rate = np.mean([c68[SYNTHETIC_BLINK, a, 1] - c68[SYNTHETIC_BLINK, b, 1] for a, b in LID_PAIRS_68])
  return float(gap / rate)


def synthetic_coefficients(rng: np.random.Generator, opening: np.ndarray,
                           basis: Optional[ExpressionBasis] = None) -> np.ndarray:
  """e of one synthetic clip (the synthetic input source, `jaxtalk/core/input_pipeline.py`).

  e_0 (mouth) = 0.25 * opening: the frames' mouth opening, itself the speech energy of the mel,
  so audio -> e_0 is learnable; e_1 (eyes) = a blink process: blinks start at a Poisson rate of
  0.3 / s, each a raised-cosine closure of 0.2-0.35 s and depth 0.8-0.95 of
  `synthetic_blink_full`; e_2 (brows) and e_4 (smile): slow sinusoids (0.1-0.4 Hz); e_3 and
  e_5..: small sinusoids (amplitudes `basis.std`-like, decreasing).

  Args:
    rng: the clip's generator (all of e's randomness).
    opening: `[n]` mouth opening per 25 fps frame, in [0, 1].
    basis: `synthetic_basis()` (default) or one of another k.

  Returns:
    `[n, k]` float32 e, basis units (IOD).
  """
  basis = basis or synthetic_basis()
  opening = np.asarray(opening, np.float64)
  n, k = opening.shape[0], basis.num_components
  t = np.arange(n) / 25.0
  e = np.zeros((n, k))
  e[:, SYNTHETIC_MOUTH] = 0.25 * opening
  closure = np.zeros(n)
  for _ in range(rng.poisson(0.3 * (n / 25.0 + 0.4))):
    t0, dur = rng.uniform(-0.4, n / 25.0), rng.uniform(0.2, 0.35)
    inside = (t >= t0) & (t <= t0 + dur)
    closure[inside] += rng.uniform(0.8, 0.95) * np.sin(np.pi * (t[inside] - t0) / dur) ** 2
  e[:, SYNTHETIC_BLINK] = np.minimum(closure, 0.95) * synthetic_blink_full(basis)
  amp = np.array([0.0, 0.0, 0.02, 0.008, 0.015] + [0.005 / (1 + j / 8) for j in range(k - 5)])
  freq = rng.uniform(0.1, 0.4, k)
  phase = rng.uniform(0.0, 2 * np.pi, k)
  e += amp[None, :k] * np.sin(2 * np.pi * freq[None] * t[:, None] + phase[None])
  return e.astype(np.float32)
