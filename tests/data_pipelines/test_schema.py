"""Clip record schema version 2 (data_pipelines/schema.py): the GoHD expression fields, their
validation, and the refusal of version-1 records and shards by every reader."""

import json

import numpy as np
import pytest

from data_pipelines import schema
from tests.data_pipelines import expression_clips


def _v2(rng, t=20, **extra):
  fields = dict(expression=rng.normal(size=(t, 64)).astype(np.float32),
                eye_features=rng.normal(size=(t, 21)).astype(np.float32),
                pose_3dmm=rng.normal(size=(t, 6)).astype(np.float32),
                expression_source=schema.DEEP3DFACERECON)
  fields.update(extra)
  return expression_clips.record("v_c000", t, rng, **{k: v for k, v in fields.items()
                                                      if v is not None})


def test_version_2_round_trip_with_the_expression_fields():
  rng = np.random.default_rng(0)
  rec = _v2(rng)
  assert rec["schema_version"] == schema.SCHEMA_VERSION == 2
  back = schema.decode_record(schema.encode_record(rec))
  for k in ("expression", "eye_features", "pose_3dmm"):
    np.testing.assert_array_equal(back[k], rec[k])
    assert back[k].dtype == np.float32
  assert back["expression_source"] == schema.DEEP3DFACERECON
  only = schema.decode_record(schema.encode_record(rec), keys=["expression"])
  assert set(only) == {"expression", "schema_version", "clip_id"}
  # The fields stay optional: a record without them is a valid version-2 record.
  plain = expression_clips.record("w_c000", 5, rng)
  assert "expression" not in schema.decode_record(schema.encode_record(plain))


@pytest.mark.parametrize("change, message", [
  (dict(eye_features=np.zeros((20, 20), np.float32)), r"eye_features should be \[20, 21\]"),
  (dict(expression=np.zeros((19, 64), np.float32)), "expression has 19 rows, expected 20"),
  (dict(expression=np.zeros((20, 64), np.float16)), "expression should be float32 of rank 2"),
  (dict(pose_3dmm=np.zeros((20, 3), np.float32)), r"pose_3dmm should be \[20, 6\]"),
  (dict(expression_source=3), "expression_source should be str, got int"),
  (dict(expression_source=None), "expression and expression_source go together"),
  (dict(expression=None, eye_features=None, pose_3dmm=None), "go together"),
  (dict(expression=None, expression_source=None), "eye_features without expression"),
])
def test_malformed_expression_fields_are_rejected(change, message):
  rec = _v2(np.random.default_rng(1), **change)
  with pytest.raises(ValueError, match=message):
    schema.encode_record(rec)


def test_version_1_records_are_refused_naming_the_fix():
  rec = expression_clips.record("v_c000", 4, np.random.default_rng(2), version=1)
  data = schema.encode_record(rec, validate=False)
  fix = (r"clip record v_c000: schema_version 1, this code reads 2 .*rebuild the shards: re-run "
         r"`jaxtalk preprocess` \(then `jaxtalk expression-basis")
  with pytest.raises(ValueError, match=fix):
    schema.decode_record(data)
  with pytest.raises(ValueError, match=fix):
    schema.validate_record(rec)
  with pytest.raises(ValueError, match=r"schema_version 3, this code reads 2 \(written by "):
    schema.decode_record(schema.encode_record(dict(rec, schema_version=3), validate=False))


def test_tfds_source_refuses_version_1_shards(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  from data_pipelines import tfds_source  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  expression_clips.write_shards(tmp_path / "v1", [expression_clips.record(c, 10, rng, version=1)
                                                  for c in ("a_c000", "b_c000")], validate=False)
  assert json.loads((tmp_path / "v1" / "dataset_info.json").read_text())["schema_version"] == 1
  with pytest.raises(ValueError, match=r"dataset_info.json: schema_version 1, this code reads 2"
                                       r".*re-run `jaxtalk preprocess`"):
    tfds_source.data_source(str(tmp_path / "v1"), str(tmp_path / "tfds"))
