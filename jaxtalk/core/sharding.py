"""Device mesh, logical axis names and the rules that map them onto the mesh.

Every parameter and activation in jaxtalk is annotated with *logical* axis names from
`LOGICAL_AXES` (via `nn.with_logical_partitioning` / `nn.with_logical_constraint`). The rules in
`config.sharding_rules` (default: `DEFAULT_RULES`) map each logical name to a mesh axis, or to
None (replicated). The mesh has the axes `('data', 'fsdp', 'tensor')`:

* `data`:   pure data parallelism (params replicated along it),
* `fsdp`:   data parallelism whose params/optimizer state are sharded along it (ZeRO-3 style),
* `tensor`: model (tensor) parallelism over wide feature dimensions.

The batch dimension is split over `('data', 'fsdp')`. This mirrors flax's `examples/lm1b` and
maxtext's logical-axis design.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis names used by jaxtalk modules. Keep this list the single source of truth: a model
# may only use names from here.
LOGICAL_AXES = (
  "batch",      # example index in a batch
  "time",       # frames / audio steps / latent tokens
  "height",     # image rows
  "width",      # image columns
  "embed",      # model width (activations' and params' input feature dim)
  "mlp",        # hidden dim of feed-forward layers, output dim of wide projections
  "heads",      # attention heads
  "kv",         # per-head feature dim
  "conv_in",    # input channels of a conv kernel
  "conv_out",   # output channels of a conv kernel
  "kernel",     # spatial / temporal extent of a conv kernel
  "vocab",      # token vocabulary
  "norm",       # scale/bias of normalisation layers
  "latent",     # latent-token feature dim of VAEs
)

# Default rules: (logical name, mesh axis or tuple of mesh axes or None).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
  ("batch", ("data", "fsdp")),
  ("time", None),
  ("height", None),
  ("width", None),
  ("embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv", None),
  ("conv_in", "fsdp"),
  ("conv_out", "tensor"),
  ("kernel", None),
  ("vocab", "tensor"),
  ("norm", None),
  ("latent", None),
)


def get_rules(config=None) -> tuple[tuple[str, Any], ...]:
  """Returns logical-axis rules: `DEFAULT_RULES` overridden by `config.sharding_rules`.

  `config.sharding_rules` (optional) is a sequence of `(logical_name, mesh_axis_or_None)` pairs;
  each pair replaces the default for that name. Unknown logical names raise ValueError.
  """
  rules = dict(DEFAULT_RULES)
  overrides = getattr(config, "sharding_rules", None) if config is not None else None
  for name, axis in (overrides or ()):
    if name not in LOGICAL_AXES:
      raise ValueError(f"sharding_rules: unknown logical axis {name!r}; known: {LOGICAL_AXES}")
    if isinstance(axis, list):
      axis = tuple(axis)
    rules[name] = axis
  return tuple(rules.items())


def _fill_shape(shape: Sequence[int], n_devices: int) -> tuple[int, ...]:
  shape = [int(s) for s in shape]
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {shape}: at most one -1 allowed")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if n_devices % known:
      raise ValueError(f"mesh shape {shape} does not divide {n_devices} devices")
    shape[shape.index(-1)] = n_devices // known
  if math.prod(shape) != n_devices:
    raise ValueError(f"mesh shape {shape} needs {math.prod(shape)} devices, have {n_devices}")
  return tuple(shape)


def make_mesh(mesh_config=None, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the `('data', 'fsdp', 'tensor')` mesh.

  Args:
   mesh_config: ConfigDict/dict with integer fields `data`, `fsdp`, `tensor` (one may be -1, filled
    from the device count; default data=-1, fsdp=1, tensor=1), and optionally `dcn_data` (>1 for
    multi-slice TPU: a hybrid mesh whose `data` axis spans slices over DCN).
   devices: devices to use (default: all of `jax.devices()`).

  Returns:
   A `jax.sharding.Mesh` with `AxisType.Auto` axes (Explicit axes break linen convolutions
   under logical rules).

  Raises:
   ValueError: if the shape does not match the device count.
  """
  get = (lambda k, d: mesh_config.get(k, d)) if mesh_config is not None else (lambda k, d: d)
  devices = list(devices) if devices is not None else jax.devices()
  dcn_data = int(get("dcn_data", 1))
  shape = [int(get("data", -1)), int(get("fsdp", 1)), int(get("tensor", 1))]
  axis_types = (AxisType.Auto,) * len(MESH_AXES)
  if dcn_data > 1:
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    per_slice = _fill_shape(shape, len(devices) // dcn_data)
    dev = mesh_utils.create_hybrid_device_mesh(
      per_slice, (dcn_data, 1, 1), devices=devices, allow_split_physical_axes=True)
    return Mesh(dev, MESH_AXES, axis_types=axis_types)
  shape = _fill_shape(shape, len(devices))
  try:
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    dev = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
  except Exception:  # pylint: disable=broad-except  # CPU / odd topologies.
    dev = np.asarray(devices).reshape(shape)
  return Mesh(dev, MESH_AXES, axis_types=axis_types)


def logical_to_sharding(boxed: Any, mesh: Mesh, rules) -> Any:
  """NamedShardings on `mesh` from the logical axis names of boxed (abstract) params.

  Args:
    boxed: a pytree of flax `nn.LogicallyPartitioned` boxes (e.g. `jax.eval_shape(model.init,
      ...)`) or of logical PartitionSpecs (`nn.get_partition_spec`).
    mesh: the device mesh.
    rules: logical -> mesh axis rules (`get_rules`).

  Returns:
    The same tree of `NamedSharding`s. A logical name repeated within one array (e.g. a 2-D conv
    kernel annotated ("kernel", "kernel", "conv_in", "conv_out")) keeps its mapping on the first
    dimension only; later repeats are replicated (flax refuses repeated names, and a mesh axis
    can shard only one dimension anyway).
  """
  def dedupe(spec):
    seen, out = set(), []
    for name in spec:
      if isinstance(name, str) and name in seen:
        out.append(None)
      else:
        out.append(name)
        if isinstance(name, str):
          seen.add(name)
    return P(*out)
  is_spec = lambda x: isinstance(x, P)
  leaves = jax.tree.leaves(boxed, is_leaf=is_spec)
  specs = boxed if leaves and all(map(is_spec, leaves)) else nn.get_partition_spec(boxed)
  specs = jax.tree.map(dedupe, specs, is_leaf=is_spec)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Sharding of a batch array `[B, ...]`: B split over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
