"""Tests of jaxtalk/input_pipeline.py: synthetic source, state restore, global batches, real shards."""

import jax
import numpy as np
import pytest

from configs import common
from jaxtalk import input_pipeline
from jaxtalk import sharding

EXPECTED = {  # key: (shape without B, dtype) for T=6, H=W=32, Lt=32
  "frames": ((6, 32, 32, 3), np.float32),
  "source": ((32, 32, 3), np.float32),
  "source_pose": ((6,), np.float32),
  "pose": ((6, 6), np.float32),
  "gaze": ((6, 2), np.float32),
  "mel": ((6, 16, 80), np.float32),
  "mouth_box": ((6, 4), np.float32),
  "text_ids": ((32,), np.int32),
  "text_mask": ((32,), np.bool_),
  "emotion": ((), np.int32),
  "speaker": ((), np.int32),
  "mask": ((6,), np.bool_),
}


def _config(**input_overrides):
  c = common.base_config()
  c.batch_size = 8
  c.input.synthetic = True
  c.input.window = 6
  c.input.resolution = 32
  for k, v in input_overrides.items():
    c.input[k] = v
  return c


def test_synthetic_batch_layout():
  batch = next(input_pipeline.create_iterator(_config(), mesh=None))
  assert set(batch) == set(EXPECTED)
  for key, (shape, dtype) in EXPECTED.items():
    assert batch[key].shape == (8,) + shape, key
    assert batch[key].dtype == dtype, key
  assert batch["frames"].min() >= -1 and batch["frames"].max() <= 1
  assert batch["mouth_box"].min() >= 0 and batch["mouth_box"].max() <= 1
  assert np.all(batch["mouth_box"][..., 2] > batch["mouth_box"][..., 0])
  # text mask marks exactly the non-padding ids.
  np.testing.assert_array_equal(batch["text_mask"], batch["text_ids"] > 0)


def test_synthetic_is_deterministic_and_keys_are_honoured():
  a = next(input_pipeline.create_iterator(_config(), mesh=None))
  b = next(input_pipeline.create_iterator(_config(keys=("pose", "mel")), mesh=None))
  assert set(b) == {"pose", "mel"}
  np.testing.assert_array_equal(a["pose"], b["pose"])
  np.testing.assert_array_equal(a["mel"], b["mel"])
  c = next(input_pipeline.create_iterator(_config(shuffle_seed=1), mesh=None))
  assert not np.allclose(a["pose"], c["pose"])
  ev = next(input_pipeline.create_iterator(_config(), mesh=None, split="eval"))
  assert not np.allclose(a["pose"], ev["pose"])
  with pytest.raises(ValueError, match="unknown keys"):
    input_pipeline.create_iterator(_config(keys=("nope",)), mesh=None)


def test_synthetic_state_restore_gives_same_next_batch():
  it = input_pipeline.create_iterator(_config(), mesh=None)
  next(it)
  state = it.get_state()
  expected = next(it)
  fresh = input_pipeline.create_iterator(_config(), mesh=None)
  fresh.set_state(state)
  got = next(fresh)
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_to_global_shards_batch_over_data_axes():
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  batch = next(input_pipeline.create_iterator(_config(), mesh=mesh))
  g = input_pipeline.to_global(batch, mesh)
  assert g["frames"].shape == (8, 6, 32, 32, 3)
  assert len(g["frames"].addressable_shards) == jax.device_count()
  assert g["frames"].addressable_shards[0].data.shape[0] == 8 // 4
  np.testing.assert_array_equal(np.asarray(g["pose"]), batch["pose"])
