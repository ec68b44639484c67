"""Tests of jaxtalk/core/checkpointing.py: params-only save/load and the train-state manager."""

import os

from flax import linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from jaxtalk.core import checkpointing
from jaxtalk.core import sharding


def _mesh8():
  return sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))


def test_params_roundtrip_sharded_boxed_and_bf16(tmp_path):
  mesh = _mesh8()
  w = jax.device_put(jnp.arange(64.0).reshape(8, 8), NamedSharding(mesh, P("fsdp", "tensor")))
  params = {"params": {"enc": {"kernel": w, "bias": np.arange(3, dtype=np.float32)},
                       "boxed": nn.LogicallyPartitioned(np.ones((4, 2), np.float32),
                                                        ("embed", "mlp")),
                       "count": np.array(7, np.int32)}}
  path = checkpointing.save_params(tmp_path / "p", params)
  assert os.path.isabs(path)
  out = checkpointing.load_params(tmp_path / "p")
  assert isinstance(out["params"]["enc"]["kernel"], np.ndarray)
  np.testing.assert_array_equal(out["params"]["enc"]["kernel"], np.arange(64.0).reshape(8, 8))
  np.testing.assert_array_equal(out["params"]["boxed"], np.ones((4, 2)))
  assert out["params"]["count"].dtype == np.int32 and int(out["params"]["count"]) == 7
  # bf16 export: floats cast, ints untouched; overwrite in place.
  checkpointing.save_params(tmp_path / "p", params, dtype=jnp.bfloat16)
  out = checkpointing.load_params(tmp_path / "p")
  assert out["params"]["enc"]["kernel"].dtype == jnp.bfloat16
  assert out["params"]["count"].dtype == np.int32
  with pytest.raises(ValueError, match="exists"):
    checkpointing.save_params(tmp_path / "p", params, overwrite=False)


def test_load_params_errors_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    checkpointing.load_params(tmp_path / "nowhere")
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "junk.txt").write_text("not a checkpoint")
  with pytest.raises(ValueError, match="bad"):
    checkpointing.load_params(bad)


def test_train_state_keeps_n_and_restores_onto_another_mesh(tmp_path):
  mesh = _mesh8()
  sh = NamedSharding(mesh, P("fsdp", "tensor"))
  state = {"step": jnp.int32(0), "w": jax.device_put(jnp.arange(32.0).reshape(4, 8), sh)}
  with checkpointing.make_manager(tmp_path / "ck", keep=2) as mngr:
    for step in (1, 2, 3):
      state = {"step": jnp.int32(step), "w": state["w"] + 1}
      checkpointing.save_train_state(mngr, step, state)
    mngr.wait_until_finished()
    assert mngr.all_steps() == [2, 3]
  one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(one, P())),
              "w": jax.ShapeDtypeStruct((4, 8), jnp.float32, sharding=NamedSharding(one, P()))}
  with checkpointing.make_manager(tmp_path / "ck") as mngr:
    restored = checkpointing.restore_train_state(mngr, mngr.latest_step(), abstract)
  assert int(restored["step"]) == 3
  assert restored["w"].sharding.mesh.devices.size == 1
  np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(32.0).reshape(4, 8) + 3)
