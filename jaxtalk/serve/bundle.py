"""The exported model folder that `jaxtalk generate` loads, for any registered method.

  jaxtalk export --workdir RUNS --out EXPORT_DIR [--method posetalk] [--bf16] [--platforms ...]

where RUNS holds the trained stages as `RUNS/<stage>/` or `RUNS/train/<stage>/` (each a training
workdir with `config.json` and `params/`, as `jaxtalk demo` and `jaxtalk train` write them). The
method (`jaxtalk.methods`; `posetalk` by default) names the stages it needs and writes its own
files; this module finds the stages, writes `bundle.json` and replaces the folder atomically:

  EXPORT_DIR/bundle.json   format, version, method, creation time, and the method's fields
                           (for posetalk: resolution, window, crop scale, pose/gaze statistics,
                           text vocabulary, renderer and pose model: `jaxtalk.renderers.posetalk`)
  EXPORT_DIR/...           the method's files

Bundles written before `bundle.json` named its method load as `posetalk`.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from typing import Any, Optional

from jaxtalk import methods
from jaxtalk.core import files
from jaxtalk.serve.video_io import InputError

BUNDLE_FILE = "bundle.json"
FORMAT = "jaxtalk.bundle"
VERSION = 1


def find_stages(runs_dir: str, stages: tuple[str, ...]) -> dict[str, str]:
  """Training workdirs of `stages` under `runs_dir`: `{stage: workdir}` for those found.

  Looks for `<runs_dir>/<stage>/params` and `<runs_dir>/train/<stage>/params` (the demo's
  layout), each with a `config.json` beside it.
  """
  found = {}
  for stage in stages:
    for cand in (os.path.join(runs_dir, stage), os.path.join(runs_dir, "train", stage)):
      if os.path.isdir(os.path.join(cand, "params")) and os.path.isfile(
          os.path.join(cand, "config.json")):
        found[stage] = os.path.abspath(cand)
        break
  return found


def is_runs_dir(path: str, method: Optional[str] = None) -> bool:
  """True when `path` holds trained stages of `method` rather than being one stage's workdir."""
  m = methods.get(method)
  return not os.path.isfile(os.path.join(path, "config.json")) and bool(
      set(m.required) <= set(find_stages(path, m.stages)))


def export_bundle(runs_dir: str, out_dir: str, *, method: Optional[str] = None,
                  dtype: Any = None, platforms: Optional[list[str]] = None) -> dict:
  """Writes the bundle of `method` (default posetalk) for the stages trained under `runs_dir`.

  Args:
    runs_dir: folder with the stage workdirs (see `find_stages`).
    out_dir: bundle folder to write; replaced atomically (written to `<out_dir>.tmp` first, so a
      failed export leaves the previous bundle, or nothing).
    method: a name registered in `jaxtalk.methods`.
    dtype: optional storage dtype of floating-point params (e.g. `jnp.bfloat16`).
    platforms: lowering platforms of StableHLO artifacts (default: this backend).

  Returns:
    The `bundle.json` contents.

  Raises:
    ValueError: unknown method, a required stage missing (naming the folder and what was looked
      for), or the method's own checks failing.
  """
  m = methods.get(method)
  stages = find_stages(runs_dir, m.stages)
  missing = [s for s in m.required if s not in stages]
  if missing:
    raise ValueError(f"{runs_dir}: no trained {', '.join(missing)} stage (looked for "
                     f"<stage>/params and train/<stage>/params with config.json)")
  out_dir = os.path.abspath(out_dir)
  tmp = out_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    fields = m.export(stages, tmp, dtype=dtype, platforms=platforms)
    manifest = {
        "format": FORMAT, "version": VERSION, "method": m.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **fields}
    with open(os.path.join(tmp, BUNDLE_FILE), "w") as f:
      json.dump(manifest, f, indent=2)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return manifest


def read_manifest(path: str) -> dict:
  """`bundle.json` of the bundle folder `path`.

  Raises:
    InputError: missing folder or file, invalid JSON, or not a jaxtalk bundle (naming it).
  """
  if not os.path.isdir(path):
    raise InputError(f"{path}: model folder not found (write one with `jaxtalk export`)")
  file = os.path.join(path, BUNDLE_FILE)
  manifest = files.read_json(file, error=InputError)
  if manifest.get("format") != FORMAT:
    raise InputError(f"{file}: not a jaxtalk bundle (format {manifest.get('format')!r})")
  return manifest


def load_bundle(path, **options):
  """Loads a folder written by `export_bundle` / `jaxtalk export` with its method's `load`.

  Args:
    path: the bundle folder.
    **options: the method's load options (posetalk: `wav2vec=DIR`, the wav2vec 2.0 folder for
      a pose model trained on wav2vec features).

  Returns:
    The method's loaded model (see `jaxtalk.methods`).

  Raises:
    InputError: missing folder, `bundle.json`, unknown method, or files the method needs
      (naming the file).
  """
  path = os.path.abspath(os.fspath(path))
  manifest = read_manifest(path)
  try:
    m = methods.get(manifest.get("method", "posetalk"))
  except ValueError as e:
    raise InputError(f"{os.path.join(path, BUNDLE_FILE)}: {e}") from e
  return m.load(path, manifest, **options)
