"""Tests of the BFM interface of jaxtalk/features/expression.py (`load_bfm`, kind "bfm68", the
68-point paths of `expression_mesh` / `landmarks_68` / `eye_features` / `landmark_basis`), on
synthetic BFM files (tests/features/bfm_files.py)."""

import numpy as np
import pytest

from jaxtalk.features import expression as ex
from tests.features import bfm_files


def _expected_mean():
  m = bfm_files.face68()
  return m - m.mean(0)


@pytest.mark.parametrize("write", [bfm_files.write_mat, bfm_files.write_npz])
def test_load_bfm_restricts_to_the_keypoints_in_jaxtalks_frame(tmp_path, write):
  path = write(tmp_path / ("bfm" + (".mat" if write is bfm_files.write_mat else ".npz")))
  basis = ex.load_bfm(path)
  assert basis.kind == ex.BFM68 and basis.num_points == 68 and basis.num_components == 64
  assert basis.mean.shape == (68, 3) and basis.components.shape == (64, 204)
  assert basis.mean.dtype == basis.components.dtype == np.float32
  # Unit IOD (outer eye corners 36-45), y down (chin below the brows), z flipped back, centred:
  # exactly the 68-point face the file was built from (1-based keypoints handled).
  a, b = ex.EYE_CORNERS_68
  assert np.linalg.norm(basis.mean[b] - basis.mean[a]) == pytest.approx(1.0, abs=1e-6)
  np.testing.assert_allclose(basis.mean, _expected_mean(), atol=1e-6)
  assert basis.mean[8, 1] > basis.mean[list(ex.BROWS_68), 1].max()
  # Components: exBase at the keypoints, flipped and in IOD per unit of e.
  raw = bfm_files.arrays()
  kp = raw["_keypoints0"]
  base = raw["exBase"].reshape(-1, 3, 64)[kp] * np.array([1.0, -1.0, -1.0])[:, None]
  np.testing.assert_allclose(basis.components.reshape(64, 68, 3),
                             np.transpose(base, (2, 0, 1)) / bfm_files.SCALE, rtol=1e-5,
                             atol=1e-9)
  np.testing.assert_array_equal(basis.std, np.ones(64, np.float32))
  norms = np.sum(basis.components.astype(np.float64) ** 2, -1)
  np.testing.assert_allclose(basis.explained_variance_ratio, norms / norms.sum(), rtol=1e-5)
  # The landmark functions take the 68-point mesh as it is.
  m68, c68 = ex.landmark_basis(basis)
  np.testing.assert_array_equal(m68, basis.mean)
  e = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
  mesh = ex.expression_mesh(basis, e)
  assert mesh.shape == (3, 68, 3)
  np.testing.assert_array_equal(ex.landmarks_68(mesh), mesh)
  np.testing.assert_allclose(mesh, m68 + np.einsum("tk,kpc->tpc", e, c68), atol=1e-6)


def test_eye_features_of_bfm_coefficients_hand_computed(tmp_path):
  basis = ex.load_bfm(bfm_files.write_mat(tmp_path / "bfm.mat"))
  f0 = ex.eye_features_from_coefficients(basis, np.zeros((2, 64), np.float32))
  assert f0.shape == (2, 21) and f0.dtype == np.float32
  np.testing.assert_allclose(f0[:, 0], 1.0, atol=1e-6)
  np.testing.assert_allclose(f0[:, 1:], 0.0, atol=1e-7)
  # BLINK moves the four upper lids 0.02 IOD down per unit; the lid gaps are 0.1 IOD: e = 2
  # closes 0.04 of 0.1 -> blink ratio 0.6, brows still.
  e = np.zeros((1, 64), np.float32)
  e[0, bfm_files.BLINK] = 2.0
  f = ex.eye_features_from_coefficients(basis, e)[0]
  assert f[0] == pytest.approx(1.0 - 2.0 * bfm_files.LID_DOWN / 0.1, abs=1e-5)
  np.testing.assert_allclose(f[1:], 0.0, atol=1e-6)
  # BROW moves every brow point (0.01, -0.03) IOD per unit (up is -y): e = 0.5 -> fr = 0.5 x that
  # for each of the ten points, x then y.
  e = np.zeros((1, 64), np.float32)
  e[0, bfm_files.BROW] = 0.5
  f = ex.eye_features_from_coefficients(basis, e)[0]
  assert f[0] == pytest.approx(1.0, abs=1e-6)
  np.testing.assert_allclose(f[1:], np.tile(0.5 * np.array(bfm_files.BROW_SHIFT), 10), atol=1e-6)


def test_jax_path_matches_numpy_on_a_bfm_basis(tmp_path):
  import jax
  import jax.numpy as jnp
  basis = ex.load_bfm(bfm_files.write_npz(tmp_path / "bfm.npz"))
  e = (0.5 * np.random.default_rng(1).normal(size=(2, 4, 64))).astype(np.float32)
  want = ex.eye_features_from_coefficients(basis, e)
  got = jax.jit(lambda x: ex.eye_features_from_coefficients(basis, x))(jnp.asarray(e))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
  m68, c68 = ex.landmark_basis(basis)
  l68 = m68 + np.einsum("...k,kpc->...pc", e, c68)
  np.testing.assert_allclose(np.asarray(ex.eye_features_68(jnp.asarray(l68), m68, xp=jnp)),
                             want, atol=1e-5)


def test_save_load_keeps_the_kind_and_old_files_still_load(tmp_path):
  basis = ex.with_statistics(ex.load_bfm(bfm_files.write_npz(tmp_path / "bfm.npz")),
                             np.random.default_rng(2).normal(size=(50, 64)) * 0.3)
  assert basis.std.shape == (64,) and 0.2 < float(basis.std.mean()) < 0.4
  assert basis.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-5)
  ex.save(basis, str(tmp_path / "b.npz"))
  got = ex.load(str(tmp_path / "b.npz"))
  assert got.kind == ex.BFM68 and ex.source_tag(got) == ex.source_tag(basis)
  assert ex.source_tag(got).startswith("bfm68:v1:")
  np.testing.assert_array_equal(got.std, basis.std)
  np.testing.assert_array_equal(got.components, basis.components)
  # A FaceMesh basis file written before `kind` existed loads as one, fingerprint unchanged.
  pca = ex.synthetic_basis(8)
  np.savez(tmp_path / "old.npz", version=np.int64(1), mean=pca.mean, components=pca.components,
           std=pca.std, explained_variance_ratio=pca.explained_variance_ratio)
  old = ex.load(str(tmp_path / "old.npz"))
  assert old.kind == ex.FACEMESH_PCA and ex.source_tag(old) == ex.source_tag(pca)
  assert ex.source_tag(old).startswith("facemesh_pca:v1:")
  with np.load(tmp_path / "b.npz") as z:
    data = dict(z)
  data["kind"] = np.str_("flame")
  np.savez(tmp_path / "odd.npz", **data)
  with pytest.raises(ValueError, match=r"odd\.npz: unknown expression basis kind 'flame'"):
    ex.load(str(tmp_path / "odd.npz"))
  data["kind"] = np.str_(ex.FACEMESH_PCA)  # 68-point arrays are not a FaceMesh basis.
  np.savez(tmp_path / "odd.npz", **data)
  with pytest.raises(ValueError, match=r"odd\.npz: inconsistent shapes for a facemesh_pca"):
    ex.load(str(tmp_path / "odd.npz"))
  with pytest.raises(ValueError, match="imported"):
    ex.coefficients(basis, np.zeros((3, ex.NUM_LANDMARKS, 3)))


def _bad_arrays(change):
  raw = {k: v for k, v in bfm_files.arrays().items() if not k.startswith("_")}
  n = bfm_files.NUM_VERTICES
  if change == "missing":
    del raw["keypoints"]
  elif change == "exbase":
    raw["exBase"] = raw["exBase"][:, :63]
  elif change == "meanshape":
    raw["meanshape"] = raw["meanshape"][:, :-1]
  elif change == "zero_based":
    raw["keypoints"] = raw["keypoints"] - 1  # a 0-based file: index 0 is out of range.
  elif change == "nan":
    raw["exBase"] = raw["exBase"].copy()
    raw["exBase"][:] = np.nan
  elif change == "y_down":
    raw["meanshape"] = (raw["meanshape"].reshape(n, 3) * np.array([1.0, -1.0, 1.0])).reshape(1, -1)
  return raw


@pytest.mark.parametrize("change, message", [
    ("missing", r"no \['keypoints'\] \(has \['exBase', 'meanshape'\]\)"),
    ("exbase", r"`exBase` should be \[3N, 64\] = \[450, 64\] .* got \[450, 63\]"),
    ("meanshape", r"`meanshape` should be \[1, 3N\]"),
    ("zero_based", r"`keypoints` should be 68 1-based vertex indices in \[1, 150\]"),
    ("nan", r"`exBase` has 13056 non-finite values at the keypoints"),
    ("y_down", r"the mean face is not in Deep3DFaceRecon's axes"),
])
@pytest.mark.parametrize("ext", [".mat", ".npz"])
def test_load_bfm_errors_name_the_file(tmp_path, change, message, ext):
  path = tmp_path / f"bad{ext}"
  raw = _bad_arrays(change)
  if ext == ".mat":
    import scipy.io  # pylint: disable=g-import-not-at-top
    scipy.io.savemat(str(path), raw)
  else:
    np.savez(str(path), **raw)
  with pytest.raises(ValueError, match=rf"{path}: {message}"):
    ex.load_bfm(str(path))


def test_load_bfm_refuses_missing_and_other_files(tmp_path):
  with pytest.raises(ValueError, match=r"none\.mat: BFM file not found"):
    ex.load_bfm(str(tmp_path / "none.mat"))
  (tmp_path / "bfm.h5").write_bytes(b"x")
  with pytest.raises(ValueError, match=r"bfm\.h5: unknown BFM file format '\.h5'"):
    ex.load_bfm(str(tmp_path / "bfm.h5"))
  (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
  with pytest.raises(ValueError, match=r"junk\.mat: not a readable BFM file"):
    ex.load_bfm(str(tmp_path / "junk.mat"))
  basis = ex.load_bfm(bfm_files.write_npz(tmp_path / "bfm.npz"))
  with pytest.raises(ValueError, match=r"P = 478 or 68"):
    ex.eye_features(np.zeros((2, ex.NUM_LANDMARKS, 3)), basis.mean)
