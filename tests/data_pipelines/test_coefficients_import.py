"""Tests of the Deep3DFaceRecon coefficient importer (data_pipelines/pipeline.py
`load_coefficients`, the manifest's `coefficients`, and the records' `expression` from it), on
synthetic .mat / .npy / .npz files written here."""

import json

import numpy as np
import pytest
import scipy.io

from data_pipelines import decode
from data_pipelines import pipeline
from data_pipelines import readers
from data_pipelines import schema
from tests import media


def _coeffs(n, rng):
  """exp [n, 64] whose column 0 is the row index (to check which source frame a row is from)."""
  exp = rng.normal(size=(n, 64)).astype(np.float32)
  exp[:, 0] = np.arange(n)
  return exp, rng.normal(size=(n, 3)), rng.normal(size=(n, 3))


def test_load_coefficients_reads_mat_npz_and_npy(tmp_path):
  rng = np.random.default_rng(0)
  exp, angle, trans = _coeffs(7, rng)
  scipy.io.savemat(tmp_path / "v.mat", dict(exp=exp, angle=angle, trans=trans, id=np.ones((7, 80))))
  got = pipeline.load_coefficients(str(tmp_path / "v.mat"))
  assert set(got) == {"exp", "angle", "trans"}
  np.testing.assert_array_equal(got["exp"], exp)
  np.testing.assert_allclose(got["angle"], angle, rtol=1e-6)
  assert all(v.dtype == np.float32 for v in got.values())
  np.savez(tmp_path / "v.npz", exp=exp)
  assert set(pipeline.load_coefficients(str(tmp_path / "v.npz"))) == {"exp"}
  np.save(tmp_path / "e.npy", exp)
  np.testing.assert_array_equal(pipeline.load_coefficients(str(tmp_path / "e.npy"))["exp"], exp)
  # The whole 257-d Deep3DFaceRecon vector (id 80, exp 64, tex 80, angle 3, gamma 27, trans 3).
  full = np.concatenate([np.zeros((7, 80)), exp, np.zeros((7, 80)), angle, np.zeros((7, 27)),
                         trans], 1)
  np.save(tmp_path / "full.npy", full)
  got = pipeline.load_coefficients(str(tmp_path / "full.npy"))
  np.testing.assert_array_equal(got["exp"], exp)
  np.testing.assert_allclose(got["trans"], trans, rtol=1e-6)


@pytest.mark.parametrize("arrays, message", [
  (dict(angle=np.zeros((5, 3))), r"no `exp` array \(has \['angle'\]\)"),
  (dict(exp=np.zeros((5, 63))), r"`exp` should be a number array \[N, 64\].*\[5, 63\]"),
  (dict(exp=np.zeros((5, 64)), angle=np.zeros((4, 3))), r"arrays of different lengths"),
  (dict(exp=np.full((5, 64), np.nan)), r"`exp` has 320 non-finite values"),
])
def test_load_coefficients_errors_name_the_file(tmp_path, arrays, message):
  path = tmp_path / "bad.mat"
  scipy.io.savemat(path, arrays)
  with pytest.raises(ValueError, match=rf"{path}: {message}"):
    pipeline.load_coefficients(str(path))


def test_load_coefficients_refuses_other_files(tmp_path):
  with pytest.raises(ValueError, match="coefficients file not found"):
    pipeline.load_coefficients(str(tmp_path / "none.mat"))
  np.save(tmp_path / "obj.npy", np.array([{"exp": 1}], dtype=object))
  with pytest.raises(ValueError, match=r"obj.npy: Object arrays cannot be loaded"):  # no pickle.
    pipeline.load_coefficients(str(tmp_path / "obj.npy"))
  np.save(tmp_path / "odd.npy", np.zeros((4, 70)))
  with pytest.raises(ValueError, match=r"odd.npy: a .npy of coefficients is \[N, 64\]"):
    pipeline.load_coefficients(str(tmp_path / "odd.npy"))
  (tmp_path / "c.txt").write_text("1 2 3")
  with pytest.raises(ValueError, match=r"c.txt: unknown coefficients format '.txt'"):
    pipeline.load_coefficients(str(tmp_path / "c.txt"))
  (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
  with pytest.raises(ValueError, match=r"junk.mat: "):
    pipeline.load_coefficients(str(tmp_path / "junk.mat"))


def test_manifest_coefficients_paths(tmp_path):
  (tmp_path / "m.jsonl").write_text(
      json.dumps(dict(video="a.mp4", coefficients="coeffs/a.mat")) + "\n"
      + json.dumps(dict(video="b.mp4")) + "\n")
  a, b = readers.read_items(str(tmp_path / "m.jsonl"))
  assert a.coefficients == str(tmp_path / "coeffs" / "a.mat") and b.coefficients == ""
  (tmp_path / "m.csv").write_text("video,coefficients\na.mp4,/abs/a.npy\n")
  (c,) = readers.read_items(str(tmp_path / "m.csv"))
  assert c.coefficients == "/abs/a.npy"
  assert readers.VideoItem(**a.to_json()) == a  # what the Beam stage rebuilds items from.


def _index_video(path, frames, fps):
  """A video whose source frame j is a flat grey of level 8 * j (j < 30)."""
  imgs = [np.full((32, 32, 3), 8 * j + 4, np.uint8) for j in range(frames)]
  return media.write_mp4(path, imgs, fps)


def test_imported_coefficients_follow_the_frames_the_decoder_shows(tmp_path):
  # 30 fps source: the 25 fps frames drop every sixth frame; the rows must be those frames'.
  video = str(_index_video(tmp_path / "v.mp4", 30, 30))
  info = decode.probe(video)
  shown = [int(round((img.mean() - 4) / 8)) for _, img in decode.iter_frames(video, info)]
  rng = np.random.default_rng(1)
  exp, angle, trans = _coeffs(30, rng)
  scipy.io.savemat(tmp_path / "v.mat", dict(exp=exp, angle=angle, trans=trans))
  item = readers.VideoItem(id="v", video=video, coefficients=str(tmp_path / "v.mat"))
  warnings = []
  imported = pipeline._imported_coefficients  # pylint: disable=protected-access
  got = imported(item, info, warnings, None)
  assert got["exp"].shape == (info.num_frames, 64) and got["pose"].shape == (info.num_frames, 6)
  assert len(shown) == 25 and np.all(np.diff(shown) >= 1) and len(set(shown)) == 25
  np.testing.assert_array_equal(got["exp"][:, 0], shown)
  np.testing.assert_array_equal(got["exp"], exp[shown])
  np.testing.assert_allclose(got["pose"], np.concatenate([angle, trans], 1)[shown], rtol=1e-6)
  assert not warnings
  # One row short: the last frame takes the last row, with a warning; far off: the video fails.
  np.save(tmp_path / "short.npy", exp[:29])
  item = readers.VideoItem(id="v", video=video, coefficients=str(tmp_path / "short.npy"))
  got = imported(item, info, warnings, None)
  assert "29 rows for 30 source frames" in warnings[0] and "pose" not in got
  np.save(tmp_path / "other.npy", exp[:20])
  item = readers.VideoItem(id="v", video=video, coefficients=str(tmp_path / "other.npy"))
  with pytest.raises(pipeline.StageError, match=r"other.npy: 20 rows, but .*v.mp4 has 30 frames"):
    imported(item, info, warnings, None)


@pytest.mark.needs_data
def test_preprocess_stores_imported_coefficients_and_dead_letters_bad_files(shared_data,
                                                                             tmp_path):
  video = str(shared_data / "videos" / "wild_4_30fps.mp4")
  n_src = len(decode._frame_times(video)[0])  # pylint: disable=protected-access
  exp, angle, trans = _coeffs(n_src, np.random.default_rng(2))
  scipy.io.savemat(tmp_path / "good.mat", dict(exp=exp, angle=angle, trans=trans))
  scipy.io.savemat(tmp_path / "bad.mat", dict(exp=exp[:, :50]))
  (tmp_path / "m.jsonl").write_text(
      json.dumps(dict(video=video, id="good", coefficients="good.mat")) + "\n"
      + json.dumps(dict(video=video, id="bad", coefficients="bad.mat")) + "\n")
  out = tmp_path / "out"
  info = pipeline.preprocess(str(tmp_path / "m.jsonl"), str(out), resolution=32,
                             sync_audio=False)
  (dead,) = [json.loads(line) for line in (out / "dead_letter.jsonl").read_text().splitlines()]
  assert dead["id"] == "bad" and dead["stage"] == "coefficients"
  assert f"{tmp_path / 'bad.mat'}: `exp` should be a number array [N, 64]" in dead["reason"]
  from tests.data_pipelines import expression_clips  # pylint: disable=g-import-not-at-top
  recs = expression_clips.read_records(out)
  assert recs and all(r["video_id"] == "good" for r in recs.values())
  source_frames = pipeline._source_frames  # pylint: disable=protected-access
  mapping, _ = source_frames(video, decode.probe(video).num_frames)
  for r in recs.values():
    schema.validate_record(r)
    t, s = r["num_frames"], int(round(r["start_time"] * 25))
    assert r["expression"].shape == (t, 64) and r["expression"].dtype == np.float32
    assert r["expression_source"] == schema.DEEP3DFACERECON and "eye_features" not in r
    np.testing.assert_array_equal(r["expression"], exp[mapping[s:s + t]])
    assert r["pose_3dmm"].shape == (t, 6)
  clip = info["clips"][0]
  assert clip["expression_source"] == schema.DEEP3DFACERECON
  assert "expression" in info["optional_features"] and "eye_features" not in info[
      "optional_features"]
  assert info["optional_feature_dims"]["expression"] == 64
