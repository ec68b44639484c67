"""Bundle pieces every method's export and load share (`jaxtalk.renderers.posetalk`, `.gohd`).

  export_renderer   a renderer's `infer(params, {}, inputs)` as a `jaxtalk.serve.export` folder
                    (StableHLO + params + signature) with its stages' configs under `configs/`
  copy_stage        a trained stage's params-only checkpoint + config.json into the bundle
  load_renderer     the exported renderer back, jitted, with its params (InputError naming the
                    missing or unreadable file)
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import jax
import numpy as np

from jaxtalk import motion as motion_lib
from jaxtalk.core import files
from jaxtalk.serve.video_io import InputError


def floats(x) -> list[float]:
  """A flat list of Python floats (for bundle.json) from any array-like."""
  return [float(v) for v in np.asarray(x, np.float64).reshape(-1)]


def normalized(manifest: dict, x, name: str) -> np.ndarray:
  """float32 `(x - mean) / std` with the bundle's `<name>_mean` / `<name>_std` ("pose", "gaze")."""
  m = np.asarray(manifest[f"{name}_mean"], np.float32)
  s = np.asarray(manifest[f"{name}_std"], np.float32)
  return motion_lib.normalize(np.asarray(x, np.float32), m, s).astype(np.float32)


def read_json(path: str) -> dict:
  """The JSON file `path`; InputError naming it when missing or invalid."""
  return files.read_json(path, error=InputError)


def require(*paths: str) -> None:
  """InputError naming the first of `paths` that does not exist in a bundle folder."""
  for need in paths:
    if not os.path.exists(need):
      raise InputError(f"{need}: missing from the model folder (re-run `jaxtalk export`)")


def export_renderer(infer: Callable, params: Any, example: dict, out_dir: str, name: str,
                    configs: dict[str, str], *, dtype=None,
                    platforms: Optional[list[str]] = None) -> dict:
  """Writes `out_dir/name/` (a `jaxtalk.serve.export` folder of `infer`) and returns the
  bundle.json fields of the renderer.

  Args:
    infer: `(params, frozen, inputs) -> {"frames": ...}` (frozen is `{}`).
    params: the renderer's params (a dict of stages' params).
    example: zero inputs of batch 1 (the symbolic batch "b" replaces it).
    out_dir / name: the bundle folder and the renderer's folder in it.
    configs: `{stage: config.json path}` copied to `name/configs/<stage>.json`.
    dtype / platforms: as `jaxtalk.serve.export.export_stage`.

  Returns:
    {"dir": name, "stages": sorted params keys, "platforms", "inputs"} (signature.json's).
  """
  import shutil  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import export as export_lib  # pylint: disable=g-import-not-at-top
  task = tasks_lib.Task(init=None, loss=None, frozen={}, infer=infer,
                        infer_example=lambda: example)
  rdir = os.path.join(out_dir, name)
  signature = export_lib.export_stage(task, params, rdir, dtype=dtype, platforms=platforms)
  os.makedirs(os.path.join(rdir, "configs"))
  for stage, path in configs.items():
    shutil.copy(path, os.path.join(rdir, "configs", f"{stage}.json"))
  return {"dir": name, "stages": sorted(params), "platforms": signature.get("platforms"),
          "inputs": signature.get("inputs")}


def copy_stage(workdir: str, dst: str, *, dtype=None, config: Optional[dict] = None) -> None:
  """Writes `dst/params` (the stage's params, cast to `dtype` if given) and `dst/config.json`
  (`config`, default the stage's own `workdir/config.json`)."""
  import shutil  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  checkpointing.save_params(os.path.join(dst, "params"),
                            checkpointing.load_params(os.path.join(workdir, "params")),
                            dtype=dtype)
  if config is None:
    shutil.copy(os.path.join(workdir, "config.json"), os.path.join(dst, "config.json"))
  else:
    with open(os.path.join(dst, "config.json"), "w") as f:
      json.dump(config, f, indent=2)


def load_renderer(bundle_dir: str, name: str) -> tuple[Callable, Any]:
  """`(call, params)` of the renderer exported under `bundle_dir/name`: `call(params, {}, inputs)`
  is the deserialized StableHLO, jitted (generation runs exactly what was exported).

  Raises:
    InputError: the artifact or its params missing or unreadable (naming the folder).
  """
  from jaxtalk.serve import export as export_lib  # pylint: disable=g-import-not-at-top
  rdir = os.path.join(bundle_dir, name)
  require(os.path.join(rdir, export_lib.INFER_FILE), os.path.join(rdir, "params"))
  try:
    exported, params, _ = export_lib.load_exported(rdir)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f"{rdir}: cannot load the renderer ({type(e).__name__}: {e})") from e
  return jax.jit(exported.call), params
