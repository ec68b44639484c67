"""Tests of data_pipelines/expression_pass.py (`jaxtalk expression-basis` writing GoHD's e and f
into the shards) and of the input pipeline's expression keys on those shards, on synthetic clips
(tests/data_pipelines/expression_clips.py)."""

import contextlib
import io
import json
import os
import shutil

import numpy as np
import pytest

from configs import common
from data_pipelines import expression_pass
from data_pipelines import pipeline
from data_pipelines import schema
from jaxtalk import cli
from jaxtalk.core import input_pipeline
from jaxtalk.features import expression as ex
from tests.data_pipelines import expression_clips

CLIPS = ("aa_c000", "ab_c000", "ba_c000", "bb_c000", "ca_c000")
HELD_OUT = "ca_c000"
EXPRESSION_KEYS = ("expression", "eye_features", "source_expression", "source_eye_features")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  """Clean synthetic shards (never written to: tests copy them)."""
  out = tmp_path_factory.mktemp("expr") / "clean"
  rng = np.random.default_rng(0)
  expression_clips.write_shards(out, [expression_clips.record(c, 60 + 5 * i, rng)
                                      for i, c in enumerate(CLIPS)])
  return out


def _run(data_dir):
  return cli.main(["jaxtalk", "expression-basis", "--data_dir", str(data_dir), "--holdout",
                   HELD_OUT, "--components", "16"])


@pytest.fixture(scope="module")
def fitted(shards, tmp_path_factory):
  """A copy of `shards` after `jaxtalk expression-basis` (never written to: tests copy it), and
  the command's output."""
  out = tmp_path_factory.mktemp("expr") / "fitted"
  shutil.copytree(shards, out)
  with contextlib.redirect_stdout(io.StringIO()) as stdout:
    assert _run(out) == 0
  return out, stdout.getvalue()


def _copy(src, tmp_path):
  dst = tmp_path / "shards"
  shutil.copytree(src, dst)
  return dst


def _shard_bytes(data_dir):
  return {p.name: p.read_bytes() for p in sorted(data_dir.glob("*.array_record"))}


def _config(data_dir, keys, window=12):
  c = common.base_config()
  c.batch_size = 2
  c.input.data_dir = str(data_dir)
  c.input.window = window
  c.input.resolution = 8
  c.input.keys = tuple(keys)
  c.input.holdout = (HELD_OUT,)
  return c


def test_command_writes_e_and_f_into_every_record_and_the_batches_carry_them(shards, fitted):
  data_dir, stdout = fitted
  before = expression_clips.read_records(shards)
  assert "5 clips written (2 shards rewritten)" in stdout
  info = json.loads((data_dir / "dataset_info.json").read_text())
  basis = ex.load(str(data_dir / ex.BASIS_FILE))
  assert basis.num_components == 16 and HELD_OUT not in info[ex.INFO_KEY]["train_clips"]
  assert info[ex.INFO_KEY]["fingerprint"] == ex.fingerprint(basis)
  tag = ex.source_tag(basis)
  assert tag.startswith("facemesh_pca:v1:")
  after = expression_clips.read_records(data_dir)
  assert set(after) == set(CLIPS)  # held-out clip included.
  for cid, rec in after.items():
    t = rec["num_frames"]
    assert rec["expression"].shape == (t, 16) and rec["expression"].dtype == np.float32
    assert rec["eye_features"].shape == (t, 21) and rec["eye_features"].dtype == np.float32
    assert rec["expression_source"] == tag
    np.testing.assert_array_equal(rec["expression"], ex.coefficients(basis, rec["landmarks"]))
    np.testing.assert_array_equal(rec["eye_features"],
                                  ex.eye_features_from_coefficients(basis, rec["expression"]))
    for k, v in before[cid].items():  # everything else is kept as it was.
      if isinstance(v, np.ndarray):
        np.testing.assert_array_equal(rec[k], v)
      elif k != "frames":
        assert rec[k] == v, k
    assert rec["frames"] == before[cid]["frames"]
  assert {"expression", "eye_features"} <= set(info["optional_features"])
  assert info["optional_feature_dims"] == {"expression": 16, "eye_features": 21}
  for clip in info["clips"]:
    assert {"expression", "eye_features"} <= set(clip["features"])
    assert clip["expression_source"] == tag
  assert not list(data_dir.glob("*.tmp"))
  assert ex.fingerprint(ex.basis_for_config(_config(data_dir, ()))) == ex.fingerprint(basis)

  # Eval batches (deterministic: the held-out clip's windows at 0, 12, ...).
  it = input_pipeline.create_iterator(_config(data_dir, EXPRESSION_KEYS + ("pose",)),
                                      split="eval")
  batch = next(it)
  assert batch["expression"].shape == (2, 12, 16) and batch["eye_features"].shape == (2, 12, 21)
  assert batch["source_expression"].shape == (2, 16)
  assert batch["source_eye_features"].shape == (2, 21)
  assert all(batch[k].dtype == np.float32 for k in EXPRESSION_KEYS)
  held = after[HELD_OUT]
  np.testing.assert_array_equal(batch["expression"][0], held["expression"][:12])
  np.testing.assert_array_equal(batch["eye_features"][1], held["eye_features"][12:24])
  # The source frame's values are rows of the clip (raw units: not normalised).
  assert any(np.array_equal(batch["source_expression"][0], row) for row in held["expression"])
  train = next(input_pipeline.create_iterator(_config(data_dir, EXPRESSION_KEYS)))
  assert train["expression"].shape == (2, 12, 16)


def test_rerunning_is_idempotent(fitted, tmp_path, capsys):
  data_dir = _copy(fitted[0], tmp_path)
  first = _shard_bytes(data_dir)
  info = (data_dir / "dataset_info.json").read_text()
  mtimes = {p.name: p.stat().st_mtime_ns for p in data_dir.glob("*.array_record")}
  capsys.readouterr()
  assert _run(data_dir) == 0
  assert "0 clips written (0 shards rewritten), 5 already up to date" in capsys.readouterr().out
  assert _shard_bytes(data_dir) == first
  assert {p.name: p.stat().st_mtime_ns for p in data_dir.glob("*.array_record")} == mtimes
  assert (data_dir / "dataset_info.json").read_text() == info


def test_a_failure_mid_rewrite_leaves_the_old_shard_intact(shards, fitted, tmp_path,
                                                           monkeypatch):
  data_dir = _copy(shards, tmp_path)
  basis = ex.load(str(fitted[0] / ex.BASIS_FILE))
  old = _shard_bytes(data_dir)
  calls = []
  real_encode = schema.encode_record

  def crash_on_second(rec, **kw):
    calls.append(rec["clip_id"])
    if len(calls) == 2:
      raise KeyboardInterrupt("simulated crash while writing a shard")
    return real_encode(rec, **kw)

  monkeypatch.setattr(schema, "encode_record", crash_on_second)
  with pytest.raises(KeyboardInterrupt):
    expression_pass.write_expression(str(data_dir), basis, log=lambda _: None)
  assert len(calls) == 2
  # The shard being written when it crashed is unchanged, no temporary file is left, and no
  # record of any shard has half an update.
  assert not list(data_dir.glob("*.tmp"))
  now = _shard_bytes(data_dir)
  assert sum(now[k] == old[k] for k in old) >= 1
  for rec in expression_clips.read_records(data_dir).values():
    assert ("expression" in rec) == ("eye_features" in rec) == ("expression_source" in rec)
  monkeypatch.setattr(schema, "encode_record", real_encode)
  # Re-running finishes the job.
  counts = expression_pass.write_expression(str(data_dir), basis, log=lambda _: None)
  assert counts["updated"] >= 1 and counts["updated"] + counts["unchanged"] == len(CLIPS)
  assert all("expression" in r for r in expression_clips.read_records(data_dir).values())


def test_write_shard_is_atomic(tmp_path):
  path = str(tmp_path / "s.array_record")
  pipeline.write_shard(path, [b"old0", b"old1"])
  before = open(path, "rb").read()

  def payloads():
    yield b"new0"
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    pipeline.write_shard(path, payloads())
  assert open(path, "rb").read() == before
  assert sorted(os.listdir(tmp_path)) == ["s.array_record"]
  assert pipeline.write_shard(path, iter([b"a", b"b", b"c"])) == 3


def test_a_bad_record_is_reported_and_left_as_is(shards, tmp_path, capsys):
  data_dir = _copy(shards, tmp_path)
  info = json.loads((data_dir / "dataset_info.json").read_text())
  # Replace clip ab_c000's record by one whose landmarks are NaN (valid otherwise).
  recs = expression_clips.read_records(data_dir)
  bad = dict(recs["ab_c000"], landmarks=np.full_like(recs["ab_c000"]["landmarks"], np.nan))
  shard = next(c["shard"] for c in info["clips"] if c["clip_id"] == "ab_c000")
  ids = sorted(c["clip_id"] for c in info["clips"] if c["shard"] == shard)
  pipeline.write_shard(str(data_dir / shard), [schema.encode_record(bad if i == "ab_c000"
                                                                    else recs[i]) for i in ids])
  bad_bytes = schema.encode_record(bad)
  assert _run(data_dir) == 0
  out = capsys.readouterr()
  assert "4 clips written" in out.out and "1 bad records left as they were" in out.out
  assert f"{shard}: record {ids.index('ab_c000')}: ab_c000: no coefficients" in out.err
  assert "non-finite" in out.err
  after = expression_clips.read_records(data_dir)
  assert "expression" not in after["ab_c000"] and all(
      "expression" in r for c, r in after.items() if c != "ab_c000")
  assert schema.encode_record(after["ab_c000"]) == bad_bytes
  # Not every clip has e now: a stage asking for it is told which command adds it.
  info = json.loads((data_dir / "dataset_info.json").read_text())
  assert "expression" not in info["optional_features"]
  with pytest.raises(ValueError, match=r"1 of 5 clips lack them, e.g. \['ab_c000'\]"):
    input_pipeline.create_iterator(_config(data_dir, ("expression",)))


def test_shards_without_expression_name_the_command(shards):
  for keys in (("expression",), ("source_eye_features",)):
    with pytest.raises(ValueError, match=rf"jaxtalk expression-basis --data_dir {shards}"):
      input_pipeline.create_iterator(_config(shards, keys))
  with pytest.raises(ValueError, match=r"expression_basis.npz: not found; run `jaxtalk "
                                       rf"expression-basis --data_dir {shards}`"):
    ex.basis_for_config(_config(shards, ()))


def test_mixed_or_stale_expression_sources_are_refused(fitted, tmp_path):
  data_dir = _copy(fitted[0], tmp_path)
  info = json.loads((data_dir / "dataset_info.json").read_text())
  info["clips"][0]["expression_source"] = "facemesh_pca:v1:000000000000"
  (data_dir / "dataset_info.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match="come from different sources"):
    input_pipeline.create_iterator(_config(data_dir, ("expression",)))
  with pytest.raises(ValueError, match="written with an older fit"):
    ex.basis_for_config(_config(data_dir, ()))
  info["clips"][0]["expression_source"] = schema.DEEP3DFACERECON
  (data_dir / "dataset_info.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match="imported Deep3DFaceRecon"):
    input_pipeline.create_iterator(_config(data_dir, ("expression",)))
  with pytest.raises(ValueError, match="does not describe"):
    ex.basis_for_config(_config(data_dir, ()))


def test_version_1_shards_are_refused_with_the_fix(tmp_path, capsys):
  rng = np.random.default_rng(1)
  old = tmp_path / "v1"
  expression_clips.write_shards(old, [expression_clips.record(c, 30, rng, version=1)
                                      for c in CLIPS[:2]], validate=False)
  fix = r"schema_version 1, this code reads 2 .*re-run `jaxtalk preprocess`"
  with pytest.raises(ValueError, match=fix):
    input_pipeline.create_iterator(_config(old, ("pose",)))
  assert _run(old) == 2
  assert "dataset_info.json: schema_version 1, this code reads 2" in capsys.readouterr().err
  name = json.loads((old / "dataset_info.json").read_text())["shards"][0]
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  reader = array_record_module.ArrayRecordReader(str(old / name))
  with pytest.raises(ValueError, match=fix):
    schema.decode_record(reader.read())
  reader.close()
