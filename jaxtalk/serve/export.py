r"""Export a trained stage for serving without jaxtalk: params-only checkpoint + StableHLO.

The `jaxtalk export` command is `jaxtalk/serve/export_cli.py`; given a folder of stage workdirs
(e.g. `jaxtalk demo`'s workdir) it writes the generation bundle `jaxtalk generate --model` loads
(`jaxtalk/serve/bundle.py`). This module imports nothing else of jaxtalk's serving code.

  jaxtalk export --workdir=runs/pose_vae --out=exports/pose_vae [--bf16] [--platforms=cpu,cuda]

reads `<workdir>/config.json` and `<workdir>/params/` and writes

  <out>/params/              params-only orbax checkpoint (float32, or bfloat16 with --bf16)
  <out>/frozen/              the stage's frozen inputs (params of earlier stages), if any
  <out>/infer.stablehlo      `jax.export` serialization of the stage's `Task.infer`, called as
                             `infer(params, frozen, inputs) -> outputs`, with a symbolic batch
                             dimension "b" on every input whose example has batch size 1
  <out>/infer.mlir           the same StableHLO as text (for reading / other runtimes)
  <out>/example_inputs.npz   example inputs (batch 1), keys = input names
  <out>/example_outputs.npz  outputs for them ('/'-joined output paths)
  <out>/signature.json       input/output names, shapes ("b" = batch), dtypes, platforms

Reloading needs only jax, numpy and orbax (see `load_exported`, which imports nothing else):

  import jax, numpy as np, orbax.checkpoint as ocp
  exp = jax.export.deserialize(open(f"{out}/infer.stablehlo", "rb").read())
  params = ocp.PyTreeCheckpointer().restore(f"{out}/params")
  frozen = ocp.PyTreeCheckpointer().restore(f"{out}/frozen")   # or {} if absent
  outputs = exp.call(params, frozen, {"pose": ..., ...})
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

INFER_FILE = "infer.stablehlo"


def _flatten(tree: PyTree) -> dict[str, np.ndarray]:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p, simple=True, separator="/"): np.asarray(x) for p, x in flat}


def _signature(x) -> dict:
  """{"shape": [...], "dtype": ...} with a leading dim of 1 shown as the batch "b"."""
  shape = list(np.shape(x))
  if shape and shape[0] == 1:
    shape[0] = "b"
  return {"shape": shape, "dtype": str(np.asarray(x).dtype)}


def symbolic_specs(example: PyTree, batch_name: str = "b") -> PyTree:
  """ShapeDtypeStructs for `example` with leading dim 1 replaced by the symbolic `batch_name`."""
  (b,) = jax.export.symbolic_shape(batch_name)

  def spec(x):
    x = np.asarray(x)
    if x.ndim >= 1 and x.shape[0] == 1:
      return jax.ShapeDtypeStruct((b,) + x.shape[1:], x.dtype)
    return jax.ShapeDtypeStruct(x.shape, x.dtype)

  return jax.tree.map(spec, example)


def _abstract(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype
                                                     if not hasattr(x, "dtype") else x.dtype),
                      tree)


def export_infer(infer, params: PyTree, frozen: PyTree, example_inputs: PyTree, *,
                 platforms: Optional[Sequence[str]] = None) -> jax.export.Exported:
  """`jax.export` of `infer(params, frozen, inputs)` with a symbolic batch dim on the inputs.

  Args:
    infer: `(params, frozen, inputs) -> outputs` (a `Task.infer`).
    params, frozen: pytrees of arrays (only their shapes/dtypes are used; they stay arguments of
      the exported function, so the artifact stays small and params can be swapped).
    example_inputs: dict of arrays with batch size 1.
    platforms: lowering platforms (default: the current backend), e.g. ("cpu", "cuda", "tpu").
  """
  fn = jax.jit(infer)
  return jax.export.export(fn, platforms=platforms)(
      _abstract(params), _abstract(frozen), symbolic_specs(example_inputs))


def export_stage(task, params: PyTree, out_dir: str, *, dtype: Any = None,
                 platforms: Optional[Sequence[str]] = None) -> dict:
  """Writes params (+ frozen) and, if the task has `infer`, the StableHLO artifact to `out_dir`.

  Args:
    task: the stage's `jaxtalk.tasks.Task`.
    params: the trained params (numpy / jax arrays).
    out_dir: output directory (replaced atomically: written to `<out_dir>.tmp`, then renamed).
    dtype: optional dtype for floating-point params (e.g. jnp.bfloat16).
    platforms: lowering platforms for the StableHLO (default: current backend).

  Returns:
    The signature dict written to `signature.json`.
  """
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  out_dir = os.path.abspath(out_dir)
  tmp = out_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  checkpointing.save_params(os.path.join(tmp, "params"), params, dtype=dtype)
  params = checkpointing.load_params(os.path.join(tmp, "params"))  # exactly what is served
  frozen = jax.tree.map(np.asarray, task.frozen or {})
  if jax.tree.leaves(frozen):
    checkpointing.save_params(os.path.join(tmp, "frozen"), frozen)
  signature = {"params": "params/", "frozen": "frozen/" if jax.tree.leaves(frozen) else None,
               "dtype": str(jnp.dtype(dtype)) if dtype is not None else "float32"}
  if task.infer is not None and task.infer_example is not None:
    example = jax.tree.map(np.asarray, task.infer_example())
    exported = export_infer(task.infer, params, frozen, example, platforms=platforms)
    with open(os.path.join(tmp, INFER_FILE), "wb") as f:
      f.write(exported.serialize())
    with open(os.path.join(tmp, "infer.mlir"), "w") as f:
      f.write(exported.mlir_module())
    outputs = jax.jit(task.infer)(params, frozen, example)
    np.savez(os.path.join(tmp, "example_inputs.npz"), **_flatten(example))
    np.savez(os.path.join(tmp, "example_outputs.npz"), **_flatten(outputs))
    signature.update(
        infer=INFER_FILE, call="exp.call(params, frozen, inputs)", platforms=list(
            exported.platforms),
        inputs={k: _signature(v) for k, v in _flatten(example).items()},
        outputs={k: _signature(v) for k, v in _flatten(outputs).items()})
  with open(os.path.join(tmp, "signature.json"), "w") as f:
    json.dump(signature, f, indent=2)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return signature


def load_exported(export_dir: str):
  """Loads an export with jax + orbax only: returns `(exported, params, frozen)`.

  Call `exported.call(params, frozen, inputs)`. This function imports nothing from jaxtalk's
  training code; copy it into a serving codebase as is.
  """
  with open(os.path.join(export_dir, INFER_FILE), "rb") as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  return (exported, restore_tree(os.path.join(export_dir, "params")),
          restore_tree(os.path.join(export_dir, "frozen")))


def restore_tree(path: str) -> PyTree:
  """A params-only orbax checkpoint as a pytree of numpy arrays ({} if `path` is absent).

  Uses orbax only (no jaxtalk code), like `load_exported`.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(path):
    return {}
  with ocp.PyTreeCheckpointer() as ck:
    meta = ck.metadata(path)
    tree = getattr(getattr(meta, "item_metadata", meta), "tree")
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ck.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
