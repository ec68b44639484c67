"""Tests of jaxtalk/features/expression.py: rigid alignment, the PCA expression basis (GoHD eq. 10
substitute), the eye-motion features (GoHD Fig. 4), basis files and `jaxtalk expression-basis`."""

import json
import shutil

import numpy as np
import pytest

from data_pipelines import expression_pass
from data_pipelines import schema
from jaxtalk import cli
from jaxtalk.features import expression as ex
from jaxtalk.features import face

HELD_OUT = "hdtf_WRA_RoyBlunt_000_c001"


def random_rotation(rng) -> np.ndarray:
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q


def random_shape(rng) -> np.ndarray:
  return rng.normal(size=(face.NUM_LANDMARKS, 3))


def pose(shapes, rng):
  """Each [478, 3] frame under its own random similarity; returns frames and the transforms."""
  out, params = [], []
  for s in shapes:
    rot, scale, trans = random_rotation(rng), rng.uniform(0.2, 5.0), rng.normal(size=3) * 10
    out.append(scale * s @ rot.T + trans)
    params.append((scale, rot, trans))
  return np.stack(out), params


# ----------------------------------------------------------------------------------------------
# Alignment and the canonical face.
# ----------------------------------------------------------------------------------------------
def test_align_undoes_a_random_similarity_transform():
  rng = np.random.default_rng(0)
  ref = random_shape(rng)
  posed, params = pose([ref] * 5, rng)
  np.testing.assert_allclose(ex.align(posed, ref), np.broadcast_to(ref, posed.shape), atol=1e-5)
  # The fit itself: the inverse transform, a proper rotation (never a reflection).
  scale, rot, _ = ex.similarity_fit(posed[:, list(ex.RIGID_POINTS)], ref[list(ex.RIGID_POINTS)])
  for t, (s, r, _) in enumerate(params):
    np.testing.assert_allclose(scale[t], 1.0 / s, rtol=1e-9)
    np.testing.assert_allclose(rot[t], r.T, atol=1e-9)
    assert np.linalg.det(rot[t]) == pytest.approx(1.0)


def test_align_fits_only_rigid_points():
  # Moving non-rigid points (an open mouth) must not move the rigid fit.
  rng = np.random.default_rng(1)
  ref = random_shape(rng)
  moved = ref.copy()
  moved[list(face.LIPS)] += rng.normal(size=(len(face.LIPS), 3))
  posed, _ = pose([moved], rng)
  np.testing.assert_allclose(ex.align(posed, ref)[0], moved, atol=1e-5)


def test_canonical_shape_is_pose_invariant_and_in_the_face_frame():
  rng = np.random.default_rng(2)
  shape = random_shape(rng)
  clips = [pose([shape] * 3, rng)[0] for _ in range(2)]
  mean = ex.canonical_shape(clips)
  np.testing.assert_allclose(mean, ex.face_frame(shape), atol=1e-5)
  np.testing.assert_allclose(mean[263] - mean[33], [1.0, 0.0, 0.0], atol=1e-6)
  down = mean[152] - mean[10]
  assert abs(down[2]) < 1e-6 and down[1] > 0  # forehead -> chin spans the x-y plane, y down.
  np.testing.assert_allclose(mean[list(ex.RIGID_POINTS)].mean(0), 0.0, atol=1e-6)


def test_identity_shape_is_robust_to_a_few_extreme_frames():
  rng = np.random.default_rng(3)
  base = random_shape(rng)
  frames = np.stack([base] * 9)
  frames[:3, list(face.LIPS)] += 5.0  # three frames with a wide-open mouth.
  np.testing.assert_allclose(ex.identity_shape(frames), base, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# PCA basis, eq. 10.
# ----------------------------------------------------------------------------------------------
def test_fit_basis_recovers_a_low_rank_subspace():
  rng = np.random.default_rng(4)
  d, r, n = face.NUM_LANDMARKS * 3, 5, 400
  q = np.linalg.qr(rng.normal(size=(d, r)))[0].T  # [r, d] orthonormal rows.
  # Uncorrelated coefficients (orthogonal columns) with root mean squares 5, 4, 3, 2, 1.
  sigma = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
  coeff = np.linalg.qr(rng.normal(size=(n, r)))[0] * np.sqrt(n) * sigma
  x = coeff @ q + 1e-4 * rng.normal(size=(n, d))
  basis = ex.fit_basis(x.reshape(n, face.NUM_LANDMARKS, 3), random_shape(rng), k=r)
  b = basis.components.astype(np.float64)
  np.testing.assert_allclose(b @ b.T, np.eye(r), atol=1e-5)
  # Same subspace: the principal angles between span(b) and span(q) are ~0.
  cosines = np.linalg.svd(b @ q.T, compute_uv=False)
  np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
  assert basis.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-5)
  assert np.all(np.diff(basis.explained_variance_ratio) <= 0)
  np.testing.assert_allclose(basis.std, sigma, rtol=1e-3)
  # With more components than the rank the extra ones explain nothing.
  more = ex.fit_basis(x, basis.mean, k=r + 3)
  assert more.explained_variance_ratio[r:].sum() < 1e-6


def _basis_off_rigid_points(rng, k=6):
  """A basis whose components leave RIGID_POINTS still (so alignment is exact)."""
  mask = np.ones((face.NUM_LANDMARKS, 3))
  mask[list(ex.RIGID_POINTS)] = 0.0
  raw = rng.normal(size=(face.NUM_LANDMARKS * 3, k)) * mask.reshape(-1, 1)
  comps = np.linalg.qr(raw)[0].T
  return ex.ExpressionBasis(mean=ex.face_frame(random_shape(rng)).astype(np.float32),
                            components=comps.astype(np.float32),
                            std=np.ones(k, np.float32),
                            explained_variance_ratio=np.full(k, 1.0 / k, np.float32))


def test_coefficients_invert_eq10_under_pose():
  rng = np.random.default_rng(5)
  basis = _basis_off_rigid_points(rng)
  e = rng.normal(size=(7, basis.num_components)).astype(np.float32) * 0.1
  mesh = ex.expression_mesh(basis, e)
  assert mesh.shape == (7, face.NUM_LANDMARKS, 3) and mesh.dtype == np.float32
  np.testing.assert_allclose(ex.expression_mesh(basis, np.zeros(basis.num_components)),
                             basis.mean)
  posed, _ = pose(mesh, rng)
  got = ex.coefficients(basis, posed, identity=basis.mean)
  assert got.shape == (7, basis.num_components) and got.dtype == np.float32
  np.testing.assert_allclose(got, e, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Eye-motion features, GoHD Fig. 4.
# ----------------------------------------------------------------------------------------------
def test_eye_features_match_a_hand_computed_mesh():
  rng = np.random.default_rng(6)
  ref = random_shape(rng).astype(np.float32) * 0.1
  # Reference lid heights (2-D) 0.10, 0.12, 0.08, 0.10 -> he_r = 0.10.
  heights = (0.10, 0.12, 0.08, 0.10)
  for (up, low), h in zip(ex.LID_PAIRS, heights):
    ref[low] = ref[up] + np.array([0.0, h, 0.3], np.float32)  # z never counts.
  mesh = ref.copy()
  # Half-closed eyes: every lid gap halved (he_t = 0.05 -> bl = 0.5) plus a depth change.
  for (up, low), h in zip(ex.LID_PAIRS, heights):
    mesh[low] = mesh[up] + np.array([0.0, h / 2, -0.7], np.float32)
  # Raise brow point 19 (FaceMesh 105) and push brow point 24 (334) outwards.
  mesh[105] += np.array([0.01, -0.03, 0.2], np.float32)
  mesh[334] += np.array([0.02, 0.0, 0.0], np.float32)
  expected = np.zeros(ex.NUM_EYE_FEATURES, np.float32)
  expected[0] = 0.5
  expected[1 + 2 * 2: 1 + 2 * 2 + 2] = (0.01, -0.03)    # point 19 is the 3rd brow point.
  expected[1 + 2 * 7: 1 + 2 * 7 + 2] = (0.02, 0.0)      # point 24 is the 8th.
  got = ex.eye_features(mesh, ref)
  assert got.shape == (21,) and got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-6)
  # Batched, and the reference itself gives (1, 0, ..., 0).
  both = ex.eye_features(np.stack([ref, mesh]), ref)
  np.testing.assert_allclose(both[0], np.eye(21)[0], atol=1e-6)
  np.testing.assert_allclose(both[1], expected, atol=1e-6)


def test_eye_feature_points_are_the_68_brow_and_lid_points():
  assert ex.BROWS == (71, 63, 105, 66, 107, 336, 296, 334, 293, 301)
  assert ex.LID_PAIRS == ((160, 144), (158, 153), (385, 380), (387, 373))


def test_eye_features_from_coefficients_hand_computed():
  # A 2-component basis on a hand-made mean: e0 raises lower lids (closing the eyes), e1 moves
  # brow point 19 (FaceMesh 105) down.
  rng = np.random.default_rng(11)
  mean = random_shape(rng).astype(np.float32) * 0.1
  for (up, low), h in zip(ex.LID_PAIRS, (0.10, 0.12, 0.08, 0.10)):  # he_r = 0.10.
    mean[low] = mean[up] + np.array([0.0, h, 0.0], np.float32)
  comps = np.zeros((2, face.NUM_LANDMARKS, 3), np.float32)
  for _, low in ex.LID_PAIRS:
    comps[0, low, 1] = -0.5                 # unit norm: 4 entries of 0.5.
  comps[1, 105, 1] = 1.0
  basis = ex.ExpressionBasis(mean=mean, components=comps.reshape(2, -1),
                             std=np.ones(2, np.float32),
                             explained_variance_ratio=np.full(2, 0.5, np.float32))
  # e0 = 0.1 moves each lower lid up by 0.05: lid gaps 0.05, 0.07, 0.03, 0.05 -> bl = 0.5.
  f = ex.eye_features_from_coefficients(basis, np.array([[0.1, 0.0], [0.0, 0.02]]))
  expected = np.zeros((2, 21), np.float32)
  expected[0, 0] = 0.5
  expected[1, 0] = 1.0
  expected[1, 1 + 2 * 2 + 1] = 0.02         # brow point 19's y.
  np.testing.assert_allclose(f, expected, atol=1e-6)


def test_eye_features_from_zero_coefficients_is_the_reference():
  basis = _basis_off_rigid_points(np.random.default_rng(7))
  f = ex.eye_features_from_coefficients(basis, np.zeros((2, 3, basis.num_components)))
  assert f.shape == (2, 3, 21)
  np.testing.assert_allclose(f, np.broadcast_to(np.eye(21)[0], f.shape), atol=1e-6)


def test_landmark_basis_and_jnp_eye_features_match_the_mesh_path():
  import jax
  import jax.numpy as jnp
  basis = _basis_off_rigid_points(np.random.default_rng(8))
  e = np.random.default_rng(9).normal(size=(2, 5, basis.num_components)).astype(np.float32) * 0.1
  mean68, comps68 = ex.landmark_basis(basis)
  assert mean68.shape == (68, 3) and comps68.shape == (basis.num_components, 68, 3)

  @jax.jit
  def f_of_e(e):
    l68 = mean68 + jnp.einsum("...k,kpc->...pc", e, comps68)
    return l68, ex.eye_features_68(l68, jnp.asarray(mean68), xp=jnp)

  l68, f = f_of_e(jnp.asarray(e))
  np.testing.assert_allclose(l68, ex.landmarks_68(ex.expression_mesh(basis, e)), atol=1e-5)
  np.testing.assert_allclose(f, ex.eye_features_from_coefficients(basis, e), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Files and errors.
# ----------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
  basis = _basis_off_rigid_points(np.random.default_rng(8))
  path = str(tmp_path / "b.npz")
  ex.save(basis, path)
  got = ex.load(path)
  assert got.version == ex.VERSION
  for name in ("mean", "components", "std", "explained_variance_ratio"):
    np.testing.assert_array_equal(getattr(got, name), getattr(basis, name))
  assert not list(tmp_path.glob("*.tmp"))


def test_load_refuses_other_versions_and_missing_files(tmp_path):
  basis = _basis_off_rigid_points(np.random.default_rng(9))
  path = str(tmp_path / "old.npz")
  ex.save(basis, path)
  with np.load(path) as z:
    data = dict(z)
  data["version"] = np.int64(ex.VERSION + 1)
  np.savez(path, **data)
  with pytest.raises(ValueError, match=r"old\.npz.*version"):
    ex.load(path)
  with pytest.raises(ValueError, match=r"nothere\.npz: not found"):
    ex.load(str(tmp_path / "nothere.npz"))
  del data["components"]
  np.savez(path, **data)
  with pytest.raises(ValueError, match="missing"):
    ex.load(path)


def test_bad_inputs_raise():
  rng = np.random.default_rng(10)
  ref = random_shape(rng)
  with pytest.raises(ValueError, match=r"\[T, 478, 3\]"):
    ex.align(np.zeros((4, 68, 3)), ref)
  bad = np.stack([ref, ref])
  bad[1, 0, 0] = np.nan
  with pytest.raises(ValueError, match="non-finite"):
    ex.align(bad, ref)
  with pytest.raises(ValueError, match="k=65"):
    ex.fit_basis(np.zeros((10, 478 * 3)), ref, k=65)
  basis = _basis_off_rigid_points(rng)
  with pytest.raises(ValueError, match=r"\[\.\.\., 6\]"):
    ex.expression_mesh(basis, np.zeros((3, 64)))
  closed = ref.copy()
  for up, low in ex.LID_PAIRS:
    closed[low] = closed[up]
  with pytest.raises(ValueError, match="eyes closed"):
    ex.eye_features(ref, closed)


def test_command_names_a_missing_dataset_info(tmp_path, capsys):
  assert cli.main(["jaxtalk", "expression-basis", "--data_dir", str(tmp_path)]) == 2
  assert f"{tmp_path}/dataset_info.json: not found" in capsys.readouterr().err


def test_command_refuses_old_shards(tmp_path, capsys):
  info = {"schema_version": 0, "shards": [], "clips": [{"clip_id": "a_c000", "video_id": "a",
                                                         "speaker": "a"}]}
  (tmp_path / "dataset_info.json").write_text(json.dumps(info))
  assert cli.main(["jaxtalk", "expression-basis", "--data_dir", str(tmp_path),
                   "--eval_fraction", "0"]) == 2
  assert "dataset_info.json: schema_version 0" in capsys.readouterr().err


def test_command_names_a_missing_shard(tmp_path, capsys):
  info = {"schema_version": schema.SCHEMA_VERSION,
          "shards": ["clips-00000-of-00001.array_record"],
          "clips": [{"clip_id": "a_c000", "video_id": "a", "speaker": "a"},
                    {"clip_id": "b_c000", "video_id": "b", "speaker": "b"}]}
  (tmp_path / "dataset_info.json").write_text(json.dumps(info))
  assert cli.main(["jaxtalk", "expression-basis", "--data_dir", str(tmp_path),
                   "--holdout", "b_c000"]) == 2
  assert "clips-00000-of-00001.array_record: shard listed in" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Real clips.
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(real_shards, tmp_path_factory):
  """`jaxtalk expression-basis` on a copy of real_shards (the fixture is shared: never write to
  it), holding out HELD_OUT."""
  out = tmp_path_factory.mktemp("expression") / "shards"
  shutil.copytree(real_shards, out)
  rc = cli.main(["jaxtalk", "expression-basis", "--data_dir", str(out), "--holdout", HELD_OUT])
  assert rc == 0
  return out


@pytest.mark.needs_data
def test_command_writes_the_basis_and_dataset_info(fitted):
  info = json.loads((fitted / "dataset_info.json").read_text())
  entry = info[ex.INFO_KEY]
  assert entry["file"] == ex.BASIS_FILE and entry["version"] == ex.VERSION
  assert entry["components"] == 64 and HELD_OUT not in entry["train_clips"]
  assert len(entry["train_clips"]) == info["num_clips"] - 1
  assert 0.9 < entry["explained_variance"] <= 1.0
  basis = ex.load(str(fitted / entry["file"]))
  assert basis.components.shape == (64, 478 * 3)
  np.testing.assert_allclose(basis.explained_variance_ratio.sum(), entry["explained_variance"],
                             rtol=1e-5)
  assert not list(fitted.glob("*.tmp"))
  assert info["clips"] and info["shards"]  # the rest of dataset_info is kept.


def _lip_height(lm, a, b):
  """Lip distance a-b over the outer-eye-corner distance, from raw landmarks [T, 478, 3]."""
  iod = np.linalg.norm(lm[:, 263] - lm[:, 33], axis=-1)
  return np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) / iod


@pytest.mark.needs_data
def test_basis_generalises_to_a_held_out_clip(fitted):
  basis = ex.load(str(fitted / ex.BASIS_FILE))
  clips = expression_pass.read_landmarks(str(fitted))
  train = {k: v for k, v in clips.items() if k != HELD_OUT}
  held = clips[HELD_OUT]

  # Reconstruction of the held-out clip's expression residuals (about its own median face) from
  # k coefficients; the fraction of their variance (about the clip's mean residual) explained.
  r = ex.residuals(held, basis.mean).reshape(len(held), -1).astype(np.float64)
  e = r @ basis.components.T
  var = np.sum((r - r.mean(0)) ** 2)
  fve = {k: 1 - np.sum((r - e[:, :k] @ basis.components[:k]) ** 2) / var for k in (8, 16, 32, 64)}
  rand = np.linalg.qr(np.random.default_rng(0).normal(size=(r.shape[1], 64)))[0]
  fve_random = 1 - np.sum((r - r @ rand @ rand.T) ** 2) / var
  print(f"held-out {HELD_OUT} ({len(held)} frames): fraction of expression variance explained "
        + ", ".join(f"k={k}: {v:.4f}" for k, v in fve.items())
        + f"; a random 64-dim basis: {fve_random:.4f}")
  # Measured 0.988 (k=64) on ../shared/data; 64 random directions explain ~0.05.
  assert fve[64] > 0.95
  assert fve[16] > 0.8  # measured 0.89.

  # The mouth-opening component: the one most correlated with the outer-lip height (0-17) over
  # the TRAINING clips, then checked on the held-out clip.
  e_train = np.concatenate([ex.coefficients(basis, v) for v in train.values()])
  h_train = np.concatenate([_lip_height(v, 0, 17) for v in train.values()])
  r_train = [np.corrcoef(e_train[:, j], h_train)[0, 1] for j in range(64)]
  j = int(np.argmax(np.abs(r_train)))
  e_held = ex.coefficients(basis, held)
  r_outer = np.corrcoef(e_held[:, j], _lip_height(held, 0, 17))[0, 1]
  r_inner = np.corrcoef(e_held[:, j], _lip_height(held, 13, 14))[0, 1]
  print(f"mouth-opening component {j}: r with outer-lip height 0-17 {r_train[j]:.3f} (train), "
        f"{r_outer:.3f} (held out); with inner-lip 13-14 {r_inner:.3f} (held out)")
  # Issue 16's bar. Measured 0.813 on the held-out clip: the margin is thin, because the
  # first PCA component mixes the jaw's opening with other lower-face motion (its correlation
  # on the training clips, one by one, ranges 0.62-0.93).
  assert abs(r_outer) > 0.8

  # f from e on real clips: blinks (bl well below 1) appear; brows move by small fractions of
  # the IOD.
  f = ex.eye_features_from_coefficients(basis, e_held)
  print(f"held-out blink ratio range {f[:, 0].min():.3f}-{f[:, 0].max():.3f}, "
        f"max |brow displacement| {np.abs(f[:, 1:]).max():.4f} IOD")
  assert f.shape == (len(held), 21) and np.all(np.isfinite(f))
  assert f[:, 0].min() < 0.6 and 0.8 < np.median(f[:, 0]) < 1.2
  assert np.abs(f[:, 1:]).max() < 0.2


@pytest.mark.needs_data
def test_command_writes_e_and_f_into_the_real_shards_and_batches_carry_them(fitted):
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from tests.data_pipelines import expression_clips  # pylint: disable=g-import-not-at-top
  basis = ex.basis_for_config(_input_config(fitted, ()))
  info = json.loads((fitted / "dataset_info.json").read_text())
  assert {"expression", "eye_features"} <= set(info["optional_features"])
  assert info["optional_feature_dims"]["expression"] == 64
  recs = expression_clips.read_records(fitted)
  assert HELD_OUT in recs and len(recs) == info["num_clips"]
  for r in recs.values():
    assert r["expression"].shape == (r["num_frames"], 64)
    assert r["eye_features"].shape == (r["num_frames"], 21)
    assert r["expression_source"] == ex.source_tag(basis)
  np.testing.assert_array_equal(recs[HELD_OUT]["expression"],
                                ex.coefficients(basis, recs[HELD_OUT]["landmarks"]))
  keys = ("expression", "eye_features", "source_expression", "source_eye_features", "mel")
  batch = next(input_pipeline.create_iterator(_input_config(fitted, keys), split="eval"))
  assert batch["expression"].shape == (2, 25, 64) and batch["eye_features"].shape == (2, 25, 21)
  assert batch["source_expression"].shape == (2, 64)
  assert batch["source_eye_features"].shape == (2, 21)
  np.testing.assert_array_equal(batch["expression"][0], recs[HELD_OUT]["expression"][:25])


def _input_config(data_dir, keys):
  from configs import common  # pylint: disable=g-import-not-at-top
  c = common.base_config()
  c.batch_size = 2
  c.input.data_dir = str(data_dir)
  c.input.window = 25
  c.input.resolution = 64
  c.input.keys = tuple(keys)
  c.input.holdout = (HELD_OUT,)
  return c
