"""Mesh creation, logical-axis rules and the trainer's sharding helpers on 8 CPU devices."""

from flax import linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from jaxtalk.core import sharding
from jaxtalk import train


def test_device_count():
  assert jax.device_count() == 8  # tests/conftest.py simulates 8 CPU devices


@pytest.mark.parametrize("cfg,shape", [
    (None, (8, 1, 1)),
    (dict(data=-1, fsdp=2, tensor=1), (4, 2, 1)),
    (dict(data=2, fsdp=2, tensor=2), (2, 2, 2)),
    (dict(data=1, fsdp=-1, tensor=2), (1, 4, 2)),
])
def test_make_mesh_fills_minus_one(cfg, shape):
  mesh = sharding.make_mesh(cfg)
  assert mesh.axis_names == sharding.MESH_AXES
  assert tuple(mesh.shape.values()) == shape
  assert all(t == AxisType.Auto for t in mesh.axis_types)


@pytest.mark.parametrize("cfg,msg", [
    (dict(data=-1, fsdp=-1, tensor=1), "at most one -1"),
    (dict(data=3, fsdp=1, tensor=1), "needs 3 devices"),
    (dict(data=-1, fsdp=3, tensor=1), "does not divide"),
])
def test_make_mesh_errors(cfg, msg):
  with pytest.raises(ValueError, match=msg):
    sharding.make_mesh(cfg)


def test_rules_override_and_unknown_name():
  class C:
    sharding_rules = (("embed", None), ("mlp", ["fsdp", "tensor"]))
  rules = dict(sharding.get_rules(C()))
  assert rules["embed"] is None and rules["mlp"] == ("fsdp", "tensor")
  assert rules["heads"] == "tensor"  # untouched default
  assert set(rules) == set(sharding.LOGICAL_AXES)

  class Bad:
    sharding_rules = (("channels", "tensor"),)
  with pytest.raises(ValueError, match="channels"):
    sharding.get_rules(Bad())


def test_logical_annotations_map_to_mesh():
  """Golden layout: a Dense kernel ("embed", "mlp") -> P("fsdp", "tensor") under default rules."""
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  dense = nn.Dense(64, kernel_init=nn.with_logical_partitioning(
      nn.initializers.lecun_normal(), ("embed", "mlp")))
  boxed = jax.eval_shape(dense.init, jax.random.PRNGKey(0), jnp.zeros((4, 32)))
  specs = nn.get_partition_spec(boxed)
  shard = sharding.logical_to_sharding(specs, mesh, sharding.get_rules())
  assert shard["params"]["kernel"].spec == P("fsdp", "tensor")
  assert sharding.batch_sharding(mesh, 3).spec == P(("data", "fsdp"), None, None)
  assert sharding.replicated(mesh).spec == P()


def test_indivisible_dims_fall_back_to_replication():
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  shardings = {"rgb": NamedSharding(mesh, P("tensor", "fsdp")),
               "big": NamedSharding(mesh, P("fsdp", "tensor"))}
  abstract = {"rgb": jax.ShapeDtypeStruct((32, 3), jnp.float32),
              "big": jax.ShapeDtypeStruct((32, 64), jnp.float32)}
  fitted = train._fit_shardings(shardings, abstract, mesh)  # pylint: disable=protected-access
  assert fitted["rgb"].spec == P("tensor", None)
  assert fitted["big"].spec == P("fsdp", "tensor")
  x = jax.device_put(np.zeros((32, 3), np.float32), fitted["rgb"])
  assert x.addressable_shards[0].data.shape == (16, 3)


def test_repeated_logical_names_shard_first_dim_only():
  """2-D conv kernels annotated ("kernel", "kernel", ...) work: the repeat is replicated."""
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  conv = nn.Conv(8, (3, 3), kernel_init=nn.with_logical_partitioning(
      nn.initializers.lecun_normal(), ("kernel", "kernel", "conv_in", "conv_out")))
  rules = (("kernel", "data"),) + tuple(r for r in sharding.get_rules() if r[0] != "kernel")
  boxed = jax.eval_shape(conv.init, jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 4)))
  shard = sharding.logical_to_sharding(boxed, mesh, rules)
  assert shard["params"]["kernel"].spec == P("data", None, "fsdp", "tensor")
