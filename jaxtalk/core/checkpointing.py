"""Checkpoints: orbax manager for train state + data iterator, and params-only save/load.

Two kinds of checkpoint live in a workdir:

* `<workdir>/checkpoints/<step>/{state,data}`: written by `train.py` through an orbax
  `CheckpointManager`. `state` is the full train state (params, optimizer state, EMA, step ...)
  as sharded global arrays; `data` is the grain iterator state (one JSON file per process, via
  `grain.checkpoint.CheckpointSave`). Saving both together is what makes a resumed run continue
  bit-identically (same params, same next batch).
* `<workdir>/params/`: params only (no optimizer state, no training code needed to read it), for
  serving, export, and as the frozen input of later stages (`config.init_from.<name>`).

`load_params` needs only numpy + orbax: the returned tree is plain nested dicts of numpy arrays.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any

STATE = "state"
DATA = "data"


# ---------------------------------------------------------------------------------------------
# Params-only checkpoints.
# ---------------------------------------------------------------------------------------------

def _unbox(tree: PyTree) -> PyTree:
  """Removes flax `nn.Partitioned`-style boxes (anything with an `unbox()` method)."""
  is_box = lambda x: hasattr(x, "unbox") and callable(x.unbox)
  return jax.tree.map(lambda x: x.unbox() if is_box(x) else x, tree, is_leaf=is_box)


def save_params(path: str | os.PathLike, params: PyTree, *, dtype: Any = None,
                overwrite: bool = True) -> str:
  """Saves a params pytree (nested dicts of arrays) as a params-only orbax checkpoint.

  Args:
    path: directory to create (absolute or relative). Written to a temporary name and renamed by
      orbax, so an interrupted save never leaves a half-written `path`.
    params: pytree of `jax.Array` (may be sharded, also across hosts) or numpy arrays; flax
      logical-partitioning boxes are removed.
    dtype: optional dtype (e.g. `jnp.bfloat16`) that floating-point leaves are cast to.
    overwrite: replace an existing checkpoint at `path` (otherwise ValueError).

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  params = _unbox(params)
  if dtype is not None:
    def cast(x):
      x_dtype = getattr(x, "dtype", None)
      if x_dtype is not None and np.issubdtype(x_dtype, np.floating):
        return x.astype(dtype)
      return x
    params = jax.tree.map(cast, params)
  if os.path.exists(path):
    if not overwrite:
      raise ValueError(f"save_params: {path} exists (pass overwrite=True to replace it)")
    if jax.process_index() == 0:
      shutil.rmtree(path)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("jaxtalk.save_params:" + path)
  with ocp.PyTreeCheckpointer() as ckptr:
    ckptr.save(path, params)
  return path


def load_params(path: str | os.PathLike) -> PyTree:
  """Loads a params-only checkpoint written by `save_params` as a pytree of numpy arrays.

  Args:
    path: directory written by `save_params` (e.g. `<workdir>/params`).

  Returns:
    Nested dicts of `np.ndarray` with the dtypes they were saved with.

  Raises:
    FileNotFoundError: if `path` is not a directory.
    ValueError: if `path` is not a params-only orbax checkpoint.
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"load_params: no checkpoint directory at {path}")
  with ocp.PyTreeCheckpointer() as ckptr:
    try:
      meta = ckptr.metadata(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"load_params: {path} is not a params-only orbax checkpoint: {e}") from e
    item = getattr(meta, "item_metadata", meta)
    tree = getattr(item, "tree", None)
    if not tree:
      raise ValueError(f"load_params: {path} is not a params-only orbax checkpoint "
                       "(no array metadata found)")
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckptr.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))


def stage_config(params_dir: str | os.PathLike, *, what: str = "",
                 required: bool = True) -> dict:
  """The resolved config of a trained stage: `<workdir>/config.json`, which train.py writes
  beside `<workdir>/params` (`params_dir`).

  Args:
    params_dir: `<workdir>/params` of the stage.
    what: the config field that named the path (e.g. "init_from.coarse"), for error messages.
    required: when False, a missing config.json gives `{}` instead of an error.

  Raises:
    ValueError: config.json missing (when `required`) or not valid JSON, naming the file and
      `what`.
  """
  from jaxtalk.core import files  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(params_dir))), "config.json")
  if not required and not os.path.isfile(path):
    return {}
  label = f" ({what} = {os.fspath(params_dir)!r})" if what else ""
  config = files.read_json(path, hint=f"{label}: expected the config.json that train.py writes "
                           "beside params/")
  return _resolve_init_from(config, os.path.dirname(path))


def _resolve_init_from(config: dict, workdir: str) -> dict:
  """Relative `init_from` paths that exist relative to the stage's own folder become absolute.

  Exported bundles store their stages' configs with `init_from` entries relative to each stage's
  folder (e.g. `../gohd_exp_lip/params`), so a bundle can be moved; a relative path that does
  not exist there (one given relative to the training run's working directory) is left as is.
  """
  node = config.get("init_from")
  if not isinstance(node, dict):
    return config
  out = dict(node)
  for k, v in node.items():
    if isinstance(v, str) and v and not os.path.isabs(v) and os.path.exists(
        os.path.join(workdir, v)):
      out[k] = os.path.normpath(os.path.join(workdir, v))
  return dict(config, init_from=out)


def load_stage(params_dir: str | os.PathLike, *, what: str = "",
               config_required: bool = True) -> tuple[dict, PyTree]:
  """`(config, params)` of a trained stage: `stage_config` and `load_params` of `params_dir`
  (`<workdir>/params`). The one loader of trained stages; each task builds its networks from
  the returned config.

  Raises:
    ValueError: params unreadable or config.json missing/invalid, naming the path and `what`
      (the config field that named it).
  """
  label = f"{what} = {os.fspath(params_dir)!r}" if what else repr(os.fspath(params_dir))
  try:
    params = load_params(params_dir)
  except (OSError, ValueError) as e:
    raise ValueError(f"{label}: cannot load params ({e})") from e
  return stage_config(params_dir, what=what, required=config_required), params


# ---------------------------------------------------------------------------------------------
# Train-state checkpoints (state + data iterator).
# ---------------------------------------------------------------------------------------------

def make_manager(directory: str | os.PathLike, *, keep: int = 3,
                 use_async: bool = True) -> ocp.CheckpointManager:
  """Returns a CheckpointManager for `<directory>/<step>/{state,data}`, keeping `keep` steps."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max(1, int(keep)), enable_async_checkpointing=use_async, create=True)
  return ocp.CheckpointManager(
      os.path.abspath(os.fspath(directory)), item_names=(STATE, DATA), options=options)


def _checkpointable(iterator) -> bool:
  return iterator is not None and hasattr(iterator, "get_state") and hasattr(iterator, "set_state")


def save_train_state(manager: ocp.CheckpointManager, step: int, state: PyTree,
                     data_iterator=None, *, force: bool = False) -> bool:
  """Saves `state` (pytree of global arrays) and the grain iterator's state at `step`.

  The iterator's state is taken synchronously (it must describe the position *after* the last
  batch consumed by `step`); the arrays are written asynchronously. Returns whether it saved.
  """
  import grain  # pylint: disable=g-import-not-at-top
  items = {STATE: ocp.args.StandardSave(state)}
  if _checkpointable(data_iterator):
    items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
  return manager.save(int(step), args=ocp.args.Composite(**items), force=force)


def restore_train_state(manager: ocp.CheckpointManager, step: int, abstract_state: PyTree,
                        data_iterator=None) -> PyTree:
  """Restores the train state at `step` onto the shardings of `abstract_state`.

  Args:
    manager: from `make_manager`.
    step: the step to restore (e.g. `manager.latest_step()`).
    abstract_state: pytree of `jax.ShapeDtypeStruct` with `sharding` set (the restored arrays are
      placed with these shardings, whatever mesh they were saved from).
    data_iterator: grain iterator whose state is restored in place (if it was saved).

  Returns:
    The restored state.
  """
  import grain  # pylint: disable=g-import-not-at-top
  items = {STATE: ocp.args.StandardRestore(abstract_state)}
  step_dir = os.path.join(os.fspath(manager.directory), str(int(step)), DATA)
  if _checkpointable(data_iterator) and os.path.isdir(step_dir):
    items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
  restored = manager.restore(int(step), args=ocp.args.Composite(**items))
  return restored[STATE]


def restore_iterator(directory: str | os.PathLike, step: Optional[int], data_iterator):
  """Sets `data_iterator` to the state saved in `<directory>/<step>/data` (latest if None).

  Useful to inspect which batch a run would read next (tests, debugging).
  """
  import grain  # pylint: disable=g-import-not-at-top
  with make_manager(directory, use_async=False) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    manager.restore(
        int(step), args=ocp.args.Composite(**{DATA: grain.checkpoint.CheckpointRestore(
            data_iterator)}))
  return data_iterator
