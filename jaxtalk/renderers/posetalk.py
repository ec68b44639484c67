"""PoseTalk's renderer (CoarseNet -> RefineNet -> Portrait Enhancer) and the `posetalk` method.

The renderer chain (`make_render`) is the one function every user of the trained generator calls:
the enhancer stage's training (stage 3 input), export (one StableHLO over the three networks),
generation and the benchmark. The `posetalk` method (`jaxtalk.methods`) exports the renderer
stages + the Pose Latent Diffusion (`pld`, `pose_vae`) into a bundle folder:

  EXPORT_DIR/renderer/              a `jaxtalk.serve.export` folder of the whole generator
      infer.stablehlo / infer.mlir  `infer(params, {}, inputs) -> {"frames"}` (CoarseNet ->
                                    RefineNet -> Portrait Enhancer), symbolic batch "b", T = window
      params/                       {"coarse", "refine"[, "enhancer"]} params-only orbax checkpoint
      signature.json, example_*.npz inputs/outputs of a zero example
      configs/<stage>.json          the stages' training configs (architecture, data, losses)
  EXPORT_DIR/pld/, pose_vae/        `params/` + `config.json` of the pose model (loaded with
                                    `jaxtalk.generators.pld.load_pld`)

`bundle.json` fields it adds: window, crop scale, pose/gaze normalisation statistics, text
vocabulary, `renderer` (stages, platforms, inputs) and `pose_model` (None without a PLD; else
the PLD's audio condition, `audio_feature` "mel" or "wav2vec", and for "wav2vec" the wav2vec 2.0
folder its features came from, `wav2vec_path`, not copied: large and the user's own; the
`wav2vec=DIR` load option (`jaxtalk generate --wav2vec DIR`) points to it on another machine).

Renderer inputs (batch b, window T = `bundle.json["window"]`, resolution R):
  source `[b, R, R, 3]` float32 in [-1, 1]; pose `[b, T, 6]` and gaze `[b, T, 2]` normalised with
  the bundle's statistics ((raw - mean) / std); mel `[b, T, 16, 80]` Wav2Lip log-mel windows
  (`jaxtalk.features.audio.mel_windows`); source_pose `[b, 6]` normalised. Output frames
  `[b, T, R, R, 3]` float32 in [-1, 1]. `PoseTalkModel.render` does the normalisation and padding.

The renderer is served from the StableHLO artifact (`jax.export.deserialize`), so generation
runs exactly what is exported; only PLD sampling (a Python loop over DDIM steps and windows)
uses jaxtalk's model code.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

import numpy as np

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.motion import controls
from jaxtalk.motion import windows as windows_lib
from jaxtalk.renderers import common

RENDERER_STAGES = ("coarse", "refine", "enhancer")


# ----------------------------------------------------------------------------------------------
# The renderer chain.
# ----------------------------------------------------------------------------------------------
def make_render(coarse_model, refine_model, enhancer_model):
  """Returns `render(params, inputs, mask=None) -> (frames, aux)` of the three-stage generator.

  `params` = {"coarse": ..., "refine": ..., "enhancer": ...} (enhancer may be None: stage 2
  output). `inputs` holds source `[B, H, W, 3]`, pose `[B, T, 6]`, gaze `[B, T, 2]`,
  mel `[B, T, 16, 80]`, source_pose `[B, 6]`. Frames are float32 `[B, T, H, W, 3]` in [-1, 1].
  """
  from jaxtalk.tasks.posetalk import coarse as coarse_task  # pylint: disable=g-import-not-at-top

  def render(params, inputs, mask=None):
    args = coarse_task.render_inputs(inputs)
    coarse, caux = coarse_model.apply({"params": params["coarse"]}, *args, mask=mask)
    refined, raux = refine_model.apply({"params": params["refine"]}, coarse, caux["flow"],
                                       *args[1:], mask=mask)
    aux = dict(coarse=coarse, refined=refined, flow=raux["flow"], coarse_flow=caux["flow"])
    if enhancer_model is None or params.get("enhancer") is None:
      return refined, aux
    out, _ = enhancer_model.apply({"params": params["enhancer"]}, inputs["source"], refined)
    return out, aux

  return render


def load_generator(coarse_params: str, refine_params: str, enhancer_params: str = "", *,
                   dtype="float32"):
  """Loads the trained generator for inference: returns `(render, params)`.

  Args:
    coarse_params / refine_params / enhancer_params: the stages' `<workdir>/params` (each
      next to the `config.json` train.py wrote); enhancer may be "" (stage-2 output).
    dtype: compute dtype.

  Returns:
    `render(params, inputs, mask=None) -> (frames, aux)` (see `make_render`) and its params.

  Raises:
    ValueError: coarse or refine missing.
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.posetalk import coarse as coarse_task  # pylint: disable=g-import-not-at-top
  empty = ml_collections.ConfigDict({"model": {"coarse": {}, "refine": {}, "enhancer": {}}})
  models, params = {}, {}
  for name, path in (("coarse", coarse_params), ("refine", refine_params),
                     ("enhancer", enhancer_params)):
    if not path:
      models[name], params[name] = None, None
      continue
    params[name], kwargs = coarse_task.load_frozen_stage(path, name, empty)
    models[name] = coarse_task.build(name, kwargs, dtype)
  if models["coarse"] is None or models["refine"] is None:
    raise ValueError("load_generator: coarse and refine params are required")
  return make_render(models["coarse"], models["refine"], models["enhancer"]), params


def render_overlap(window: int) -> int:
  """Frames shared by consecutive renderer windows: half a window, at least 1, below `window`."""
  return min(window - 1, max(1, window // 2))


def render_windows(model: "PoseTalkModel", source, pose, gaze, mel, source_pose, *,
                   progress: bool = False) -> np.ndarray:
  """Renders a sequence of any length with the bundle's renderer in cross-faded windows.

  Args:
    model: a loaded `PoseTalkModel`.
    source: float32 `[R, R, 3]` aligned source frame in [-1, 1].
    pose / gaze: float32 `[T, 6]` / `[T, 2]` raw motion (radians; crop-relative tx, ty, scale).
    mel: float32 `[T, 16, 80]` log-mel windows (`jaxtalk.features.audio.mel_windows`).
    source_pose: float32 `[6]` raw pose of the source frame.
    progress: show a progress bar over windows.

  Returns:
    float32 `[T, R, R, 3]` in [-1, 1]: windows of `model.window` frames overlapping by half a
    window (at least one frame; a one-frame overlap flickers at window borders), cross-faded
    linearly (`jaxtalk.motion.windows.run_windowed`). The sequence is padded by one overlap at
    both ends (first/last frame's conditions repeated) so its first and last frames are also
    cross-faded: a window's edge frames are its least accurate (the temporal convolutions see
    padding there).
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  t = int(np.shape(pose)[0])
  window = model.window
  pad = overlap = render_overlap(window)

  def edge_pad(x):
    x = np.asarray(x, np.float32)
    return np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])

  pose, gaze, mel = edge_pad(pose), edge_pad(gaze), edge_pad(mel)
  total = t + 2 * pad
  bar = tqdm(total=len(windows_lib.window_starts(total, window, overlap)), desc="render",
             unit="window", disable=not progress, leave=False)

  def one(s, e):
    frames = model.render(source, pose[s:e], gaze[s:e], mel[s:e], source_pose)
    bar.update(1)
    return frames

  try:
    return windows_lib.run_windowed(one, total, window, overlap)[pad:pad + t]
  finally:
    bar.close()


# ----------------------------------------------------------------------------------------------
# Export into a bundle folder.
# ----------------------------------------------------------------------------------------------
def _with_pose_vae(stages: dict[str, str]) -> dict[str, str]:
  """`pose_vae` also comes from the PLD config's `init_from.pose_vae` when not found beside it."""
  if "pld" in stages and "pose_vae" not in stages:
    vae = common.read_json(os.path.join(stages["pld"], "config.json")).get("init_from", {}).get(
        "pose_vae", "")
    if vae and os.path.isdir(vae):
      stages = dict(stages, pose_vae=os.path.dirname(os.path.abspath(vae)))
  return stages


def _export_renderer(stages: dict[str, str], out_dir: str, window: int, resolution: int, *,
                     dtype, platforms) -> dict:
  """Writes `out_dir/renderer/` (one StableHLO over the three networks); returns its fields."""
  from jaxtalk.tasks.posetalk import coarse as coarse_task  # pylint: disable=g-import-not-at-top
  render, params = load_generator(
      os.path.join(stages["coarse"], "params"), os.path.join(stages["refine"], "params"),
      os.path.join(stages["enhancer"], "params") if "enhancer" in stages else "")
  params = {k: v for k, v in params.items() if v is not None}

  def infer(p, frozen, inputs):
    del frozen
    return {"frames": render(p, inputs)[0]}

  return common.export_renderer(
      infer, params, coarse_task.example_inputs(window, resolution), out_dir, "renderer",
      {s: os.path.join(stages[s], "config.json") for s in RENDERER_STAGES if s in stages},
      dtype=dtype, platforms=platforms)


def _export_pose_model(stages: dict[str, str], configs: dict, out_dir: str, *,
                       dtype) -> Optional[dict]:
  """Copies the PLD and its pose VAE (params + config.json); returns the `pose_model` field."""
  from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top
  if "pld" not in stages:
    return None
  if "pose_vae" not in stages:
    raise ValueError(f"{stages['pld']}: PLD found but not the pose VAE it was trained on "
                     "(init_from.pose_vae); put it at <runs>/pose_vae")
  pose_model = {"pld": "pld", "pose_vae": "pose_vae",
                "audio_feature": pld_lib.audio_feature(configs["pld"].get("model", {}))}
  if pose_model["audio_feature"] == "wav2vec":
    pose_model["wav2vec_path"] = pld_lib.wav2vec_folder(configs["pld"])
  for s in ("pose_vae", "pld"):
    common.copy_stage(stages[s], os.path.join(out_dir, s), dtype=dtype)
  return pose_model


def export(stages: dict[str, str], out_dir: str, *, dtype: Any = None,
           platforms: Optional[list[str]] = None) -> dict:
  """The `posetalk` method's export (see module docstring); returns its `bundle.json` fields.

  Raises:
    ValueError: the renderer stages disagree on resolution, the coarse config names no dataset,
      or a PLD comes without its pose VAE (naming the folders).
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  stages = _with_pose_vae(stages)
  configs = {s: common.read_json(os.path.join(d, "config.json")) for s, d in stages.items()}
  res = {s: int(configs[s]["input"]["resolution"]) for s in RENDERER_STAGES if s in stages}
  if len(set(res.values())) != 1:
    raise ValueError(f"the renderer stages were trained at different resolutions {res}")
  resolution = res["coarse"]
  window = int(configs["refine"]["input"]["window"])
  data_dir = configs["coarse"]["input"].get("data_dir", "")
  if not data_dir:
    raise ValueError(f"{stages['coarse']}/config.json: input.data_dir is empty; the bundle needs "
                     "the dataset's dataset_info.json for the pose/gaze statistics")
  info = input_pipeline.load_dataset_info(data_dir)
  renderer = _export_renderer(stages, out_dir, window, resolution, dtype=dtype,
                              platforms=platforms)
  return {
      "source": dict(stages), "resolution": resolution, "window": window,
      "fps": motion_lib.FPS, "crop_scale": float(info.get("crop_scale", 1.6)),
      "pose_mean": common.floats(info["pose_mean"]), "pose_std": common.floats(info["pose_std"]),
      "gaze_mean": common.floats(info["gaze_mean"]), "gaze_std": common.floats(info["gaze_std"]),
      "vocab": list(info.get("vocab", [])), "renderer": renderer,
      "pose_model": _export_pose_model(stages, configs, out_dir, dtype=dtype)}


# ----------------------------------------------------------------------------------------------
# The loaded model.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PoseTalkModel:
  """A loaded `posetalk` bundle (see module docstring and `jaxtalk.methods`).

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
    return common.normalized(self.manifest, x, name)

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

    Raises:
      ValueError: t outside 1..window.
    """
    t = int(np.shape(pose)[0])
    if not 1 <= t <= self.window:
      raise ValueError(f"PoseTalkModel.render: 1..{self.window} frames per call, got {t}")
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

  def render_motion(self, source, motion: motion_lib.Motion, *, mel, source_pose,
                    progress: bool = False) -> np.ndarray:
    """The method interface (`jaxtalk.methods`): `render_windows` over a whole `Motion`."""
    return render_windows(self, source, np.asarray(motion.pose[0]), np.asarray(motion.gaze[0]),
                          mel, source_pose, progress=progress)


def stage_model(config, infer, params, frozen) -> PoseTalkModel:
  """A `PoseTalkModel` over a renderer stage (coarse, refine or enhancer) while it trains.

  Args:
    config: the stage's config (`input.data_dir` shards give the pose/gaze statistics;
      `input.window` and `input.resolution` the renderer's window and size).
    infer: the stage task's `infer(params, frozen, inputs) -> {"frames": ...}`, jitted.
    params / frozen: the stage's current (EMA) params and its frozen inputs.

  Returns:
    a model whose `render_motion` renders like a loaded bundle's (normalisation, padding,
    cross-faded windows); `sample_motion` is None.
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(config.input.data_dir)
  manifest = {k: common.floats(info[k]) for k in ("pose_mean", "pose_std", "gaze_mean", "gaze_std")}
  return PoseTalkModel(path="", resolution=int(config.input.resolution),
                       window=int(config.input.window),
                       crop_scale=float(info.get("crop_scale", 1.6)), manifest=manifest,
                       sample_motion=None, _call=lambda p, _, x: infer(p, frozen, x),
                       _params=params)


def load(path: str, manifest: dict, *, wav2vec: Optional[str] = None) -> PoseTalkModel:
  """Loads a `posetalk` bundle folder (written by `export`).

  `wav2vec`: wav2vec 2.0 folder for a pose model trained on wav2vec features (default: the one
  recorded in bundle.json); unused otherwise.

  Raises:
    InputError: missing renderer artifact or pose-model files (naming the file).
  """
  from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top
  call, params = common.load_renderer(path, manifest["renderer"]["dir"])
  sample = None
  pm = manifest.get("pose_model")
  if pm:
    pld_dir = os.path.join(path, pm["pld"], "params")
    vae_dir = os.path.join(path, pm["pose_vae"], "params")
    common.require(pld_dir, vae_dir, os.path.join(path, pm["pld"], "config.json"),
                   os.path.join(path, pm["pose_vae"], "config.json"))
    sample = pld_lib.lazy_sampler(pld_dir, vae_dir, manifest.get("vocab") or None,
                                  wav2vec or pm.get("wav2vec_path") or None)
  return PoseTalkModel(path=path, resolution=int(manifest["resolution"]),
                       window=int(manifest["window"]), crop_scale=float(manifest["crop_scale"]),
                       manifest=manifest, sample_motion=sample, _call=call,
                       _params=params)


METHOD = methods.register(methods.Method(
    name="posetalk",
    summary="PoseTalk: text/audio Pose Latent Diffusion -> CoarseNet -> RefineNet -> Enhancer",
    stages=RENDERER_STAGES + ("pld", "pose_vae"),
    required=("coarse", "refine"),
    export=export,
    load=load,
    stage_model=stage_model,
    train_stages=(("syncnet", "configs.syncnet"), ("pose_vae", "configs.posetalk.pose_vae"),
                  ("pld", "configs.posetalk.pld"), ("coarse", "configs.posetalk.coarse"),
                  ("refine", "configs.posetalk.refine"),
                  ("enhancer", "configs.posetalk.enhancer")),
    controls=(
        methods.Control("text", str, None, "head-motion prompt for the pose model"),
        methods.Control("guidance", float, 7.5, "classifier-free guidance scale (PoseTalk eq. 3)",
                        range=(1.0, 15.0)),
        methods.Control("seed", int, 0, "sampling seed of the pose model"),
        methods.Control("pose_template", str, None, "named head motion instead of the pose model",
                        choices=controls.POSE_TEMPLATES),
        methods.Control("gaze_pitch", float, None, "fixed gaze pitch (radians)",
                        range=(-0.6, 0.6)),
        methods.Control("gaze_yaw", float, None, "fixed gaze yaw (radians)", range=(-0.6, 0.6)),
        methods.Control("pose_from", str, None, "video whose head poses drive the portrait"),
        methods.Control("gaze_from", str, None, "video whose gaze drives the portrait"),
    )))
