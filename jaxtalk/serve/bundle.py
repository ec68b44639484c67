"""The exported model folder that `jaxtalk generate` loads: renderer StableHLO + pose model.

  jaxtalk export --workdir RUNS --out EXPORT_DIR [--bf16] [--platforms cpu,cuda]

where RUNS holds the trained stages as `RUNS/<stage>/` or `RUNS/train/<stage>/` (each a training
workdir with `config.json` and `params/`, as `jaxtalk demo` and `jaxtalk train` write them).
Stages used: `coarse`, `refine` (required), `enhancer` (optional: without it the renderer
returns RefineNet's frames), `pld` with the `pose_vae` it was trained on (optional: without them
`generate` needs `--pose-from` or `--pose-template`). The folder:

  EXPORT_DIR/bundle.json            resolution, window, crop scale, pose/gaze normalisation
                                    statistics, text vocabulary, what is present
  EXPORT_DIR/renderer/              a `jaxtalk.serve.export` folder of the whole generator
      infer.stablehlo / infer.mlir  `infer(params, {}, inputs) -> {"frames"}` (CoarseNet ->
                                    RefineNet -> Portrait Enhancer), symbolic batch "b", T = window
      params/                       {"coarse", "refine"[, "enhancer"]} params-only orbax checkpoint
      signature.json, example_*.npz inputs/outputs of a zero example
      configs/<stage>.json          the stages' training configs (architecture, data, losses)
  EXPORT_DIR/pld/, pose_vae/        `params/` + `config.json` of the pose model (loaded with
                                    `jaxtalk.generators.pld.load_pld`)

`bundle.json["pose_model"]` also records the PLD's audio condition, `audio_feature` ("mel" or
"wav2vec"), and for "wav2vec" the wav2vec 2.0 folder its features came from (`wav2vec_path`,
not copied into the bundle: the checkpoint is large and the user's own); `load_bundle(path,
wav2vec=DIR)` (`jaxtalk generate --wav2vec DIR`) points to the folder on another machine.

Renderer inputs (batch b, window T = `bundle.json["window"]`, resolution R):
  source `[b, R, R, 3]` float32 in [-1, 1]; pose `[b, T, 6]` and gaze `[b, T, 2]` normalised with
  the bundle's statistics ((raw - mean) / std); mel `[b, T, 16, 80]` Wav2Lip log-mel windows
  (`jaxtalk.features.audio.mel_windows`); source_pose `[b, 6]` normalised. Output frames
  `[b, T, R, R, 3]` float32 in [-1, 1]. `Bundle.render` does the normalisation and padding.

The renderer is served from the StableHLO artifact (`jax.export.deserialize`), so generation
runs exactly what is exported; only PLD sampling (a Python loop over DDIM steps and windows)
uses jaxtalk's model code.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from typing import Any, Callable, Optional

import jax
import numpy as np

from jaxtalk.serve import export as export_lib
from jaxtalk import motion as motion_lib
from jaxtalk.serve.video_io import InputError

BUNDLE_FILE = "bundle.json"
FORMAT = "jaxtalk.bundle"
VERSION = 1
RENDERER_STAGES = ("coarse", "refine", "enhancer")


# ----------------------------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------------------------
def find_stages(runs_dir: str) -> dict[str, str]:
  """Training workdirs of the generation stages under `runs_dir`: `{stage: workdir}`.

  Looks for `<runs_dir>/<stage>/params` and `<runs_dir>/train/<stage>/params` (the demo's layout);
  `pose_vae` also comes from the PLD config's `init_from.pose_vae` when not found there.
  """
  found = {}
  for stage in RENDERER_STAGES + ("pld", "pose_vae"):
    for cand in (os.path.join(runs_dir, stage), os.path.join(runs_dir, "train", stage)):
      if os.path.isdir(os.path.join(cand, "params")) and os.path.isfile(
          os.path.join(cand, "config.json")):
        found[stage] = os.path.abspath(cand)
        break
  if "pld" in found and "pose_vae" not in found:
    vae = _read_json(os.path.join(found["pld"], "config.json")).get("init_from", {}).get(
        "pose_vae", "")
    if vae and os.path.isdir(vae):
      found["pose_vae"] = os.path.dirname(os.path.abspath(vae))
  return found


def is_runs_dir(path: str) -> bool:
  """True when `path` holds trained generation stages rather than being one stage's workdir."""
  return not os.path.isfile(os.path.join(path, "config.json")) and bool(
      {"coarse", "refine"} <= set(find_stages(path)))


def export_bundle(runs_dir: str, out_dir: str, *, dtype: Any = None,
                  platforms: Optional[list[str]] = None) -> dict:
  """Writes the bundle (see module docstring) for the stages trained under `runs_dir`.

  Args:
    runs_dir: folder with the stage workdirs (see `find_stages`).
    out_dir: bundle folder to write; replaced atomically (written to `<out_dir>.tmp` first).
    dtype: optional storage dtype of floating-point params (e.g. `jnp.bfloat16`).
    platforms: lowering platforms of the StableHLO (default: this backend).

  Returns:
    The `bundle.json` contents.

  Raises:
    ValueError: when coarse or refine is missing, or the stages disagree on resolution/window
      (naming the folders).
  """
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.posetalk import coarse as coarse_task  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.posetalk import enhancer as enhancer_task  # pylint: disable=g-import-not-at-top

  stages = find_stages(runs_dir)
  missing = [s for s in ("coarse", "refine") if s not in stages]
  if missing:
    raise ValueError(f"{runs_dir}: no trained {', '.join(missing)} stage (looked for "
                     f"<stage>/params and train/<stage>/params with config.json)")
  configs = {s: _read_json(os.path.join(d, "config.json")) for s, d in stages.items()}
  res = {s: int(configs[s]["input"]["resolution"]) for s in RENDERER_STAGES if s in stages}
  if len(set(res.values())) != 1:
    raise ValueError(f"{runs_dir}: the renderer stages were trained at different resolutions "
                     f"{res}")
  resolution = res["coarse"]
  window = int(configs["refine"]["input"]["window"])
  data_dir = configs["coarse"]["input"].get("data_dir", "")
  if not data_dir:
    raise ValueError(f"{stages['coarse']}/config.json: input.data_dir is empty; the bundle needs "
                     "the dataset's dataset_info.json for the pose/gaze statistics")
  info = input_pipeline.load_dataset_info(data_dir)

  out_dir = os.path.abspath(out_dir)
  tmp = out_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)

  # Renderer: one StableHLO over the three networks, params stored beside it.
  render, params = enhancer_task.load_generator(
      os.path.join(stages["coarse"], "params"), os.path.join(stages["refine"], "params"),
      os.path.join(stages["enhancer"], "params") if "enhancer" in stages else "")
  params = {k: v for k, v in params.items() if v is not None}

  def infer(p, frozen, inputs):
    del frozen
    return {"frames": render(p, inputs)[0]}

  example = coarse_task.example_inputs(window, resolution)
  task = tasks_lib.Task(init=None, loss=None, frozen={}, infer=infer,
                        infer_example=lambda: example)
  signature = export_lib.export_stage(task, params, os.path.join(tmp, "renderer"), dtype=dtype,
                                      platforms=platforms)
  os.makedirs(os.path.join(tmp, "renderer", "configs"))
  for s in RENDERER_STAGES:
    if s in stages:
      shutil.copy(os.path.join(stages[s], "config.json"),
                  os.path.join(tmp, "renderer", "configs", f"{s}.json"))

  # Pose model: params + config.json, loaded by jaxtalk.generators.pld.load_pld.
  has_pld = "pld" in stages and "pose_vae" in stages
  if "pld" in stages and not has_pld:
    raise ValueError(f"{stages['pld']}: PLD found but not the pose VAE it was trained on "
                     "(init_from.pose_vae); put it at <runs>/pose_vae")
  pose_model = None
  if has_pld:
    from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top
    pose_model = {"pld": "pld", "pose_vae": "pose_vae",
                  "audio_feature": pld_lib.audio_feature(configs["pld"].get("model", {}))}
    if pose_model["audio_feature"] == "wav2vec":
      pose_model["wav2vec_path"] = pld_lib.wav2vec_folder(configs["pld"])
    for s in ("pose_vae", "pld"):
      checkpointing.save_params(os.path.join(tmp, s, "params"),
                                checkpointing.load_params(os.path.join(stages[s], "params")),
                                dtype=dtype)
      shutil.copy(os.path.join(stages[s], "config.json"), os.path.join(tmp, s, "config.json"))

  manifest = {
      "format": FORMAT, "version": VERSION,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "source": {s: d for s, d in stages.items()},
      "resolution": resolution, "window": window, "fps": motion_lib.FPS,
      "crop_scale": float(info.get("crop_scale", 1.6)),
      "pose_mean": _floats(info["pose_mean"]), "pose_std": _floats(info["pose_std"]),
      "gaze_mean": _floats(info["gaze_mean"]), "gaze_std": _floats(info["gaze_std"]),
      "vocab": list(info.get("vocab", [])),
      "renderer": {"dir": "renderer", "stages": sorted(params), "platforms":
                   signature.get("platforms"), "inputs": signature.get("inputs")},
      "pose_model": pose_model,
  }
  with open(os.path.join(tmp, BUNDLE_FILE), "w") as f:
    json.dump(manifest, f, indent=2)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return manifest


def _floats(x) -> list[float]:
  return [float(v) for v in np.asarray(x, np.float64).reshape(-1)]


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise InputError(f"{path}: not found") from e
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: not valid JSON ({e})") from e


# ----------------------------------------------------------------------------------------------
# Loading.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Bundle:
  """A loaded bundle (see module docstring).

  Attributes:
    path: the bundle folder. resolution: R (px). window: renderer window T (frames).
    crop_scale: crop side / face size used when aligning portraits (as in preprocessing).
    manifest: the `bundle.json` contents.
    sample_motion: `(wav [N] 16 kHz float32, text=None, guidance=7.5, seed=0, num_frames=None)
      -> Motion` (raw units, `[1, T, ...]`, T = num_frames or N // 640) when the bundle has a pose
      model, else None.
  """
  path: str
  resolution: int
  window: int
  crop_scale: float
  manifest: dict
  sample_motion: Optional[Callable[..., motion_lib.Motion]]
  _call: Callable = dataclasses.field(repr=False, default=None)
  _params: Any = dataclasses.field(repr=False, default=None)

  def _norm(self, x, name):
    m = np.asarray(self.manifest[f"{name}_mean"], np.float32)
    s = np.asarray(self.manifest[f"{name}_std"], np.float32)
    return motion_lib.normalize(np.asarray(x, np.float32), m, s).astype(np.float32)

  def render(self, source, pose, gaze, mel, source_pose) -> np.ndarray:
    """Frames of one window of at most `window` frames.

    Args:
      source: float32 `[R, R, 3]` aligned portrait in [-1, 1].
      pose: float32 `[t, 6]` raw head pose (radians; crop-relative tx, ty, scale), t <= window.
      gaze: float32 `[t, 2]` raw gaze (pitch, yaw radians).
      mel: float32 `[t, 16, 80]` log-mel windows of the frames.
      source_pose: float32 `[6]` raw pose of the portrait.

    Returns:
      float32 `[t, R, R, 3]` in [-1, 1]. Windows shorter than `window` are padded by repeating
      their last frame's conditions and cut after rendering.
    """
    t = int(np.shape(pose)[0])
    if not 1 <= t <= self.window:
      raise ValueError(f"Bundle.render: 1..{self.window} frames per call, got {t}")
    pad = self.window - t

    def padded(x):
      x = np.asarray(x, np.float32)
      return np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x

    inputs = {"source": np.asarray(source, np.float32)[None],
              "pose": self._norm(padded(pose), "pose")[None],
              "gaze": self._norm(padded(gaze), "gaze")[None],
              "mel": padded(mel)[None],
              "source_pose": self._norm(source_pose, "pose")[None]}
    return np.asarray(self._call(self._params, {}, inputs)["frames"][0, :t])


def load_bundle(path, wav2vec: Optional[str] = None) -> Bundle:
  """Loads a folder written by `export_bundle` / `jaxtalk export`.

  `wav2vec`: wav2vec 2.0 folder for a pose model trained on wav2vec features (default: the one
  recorded in bundle.json); unused otherwise.

  Raises:
    InputError: missing folder, `bundle.json`, renderer artifact or pose-model files (naming the
      file).
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise InputError(f"{path}: model folder not found (write one with `jaxtalk export`)")
  manifest = _read_json(os.path.join(path, BUNDLE_FILE))
  if manifest.get("format") != FORMAT:
    raise InputError(f"{os.path.join(path, BUNDLE_FILE)}: not a jaxtalk bundle "
                     f"(format {manifest.get('format')!r})")
  rdir = os.path.join(path, manifest["renderer"]["dir"])
  for need in (os.path.join(rdir, export_lib.INFER_FILE), os.path.join(rdir, "params")):
    if not os.path.exists(need):
      raise InputError(f"{need}: missing from the model folder (re-run `jaxtalk export`)")
  try:
    exported, params, _ = export_lib.load_exported(rdir)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f"{rdir}: cannot load the renderer ({type(e).__name__}: {e})") from e

  sample = None
  pm = manifest.get("pose_model")
  if pm:
    pld_dir = os.path.join(path, pm["pld"], "params")
    vae_dir = os.path.join(path, pm["pose_vae"], "params")
    for need in (pld_dir, vae_dir, os.path.join(path, pm["pld"], "config.json"),
                 os.path.join(path, pm["pose_vae"], "config.json")):
      if not os.path.exists(need):
        raise InputError(f"{need}: missing from the model folder (re-run `jaxtalk export`)")
    sample = _pose_sampler(pld_dir, vae_dir, manifest.get("vocab") or None,
                           wav2vec or pm.get("wav2vec_path") or None)

  return Bundle(path=path, resolution=int(manifest["resolution"]),
                window=int(manifest["window"]), crop_scale=float(manifest["crop_scale"]),
                manifest=manifest, sample_motion=sample, _call=jax.jit(exported.call),
                _params=params)


def _pose_sampler(pld_dir: str, vae_dir: str, vocab, wav2vec: Optional[str] = None):
  """`sample_motion(wav, text, guidance, seed)` over the bundle's PLD, loaded on first use."""
  state = {}

  def sample(wav, text=None, guidance: float = 7.5, seed: int = 0,
             num_frames: Optional[int] = None) -> motion_lib.Motion:
    from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top
    if "params" not in state:
      try:
        state["params"] = pld_lib.load_pld(pld_dir, vae_dir=vae_dir, vocab=vocab,
                                            wav2vec=wav2vec)
      except (ValueError, OSError) as e:
        raise InputError(f"{pld_dir}: cannot load the pose model ({e})") from e
    try:
      return pld_lib.sample_motion(
          state["params"], np.asarray(wav, np.float32), text=text, guidance=guidance, seed=seed,
          seconds=None if num_frames is None else num_frames / motion_lib.FPS)
    except ValueError as e:
      raise InputError(f"pose model: {e}") from e

  return sample
