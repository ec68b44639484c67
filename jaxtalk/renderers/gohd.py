"""GoHD as a method (`jaxtalk.methods`): its motion generators + its face animator.

The renderer is the latent-navigation animator (GoHD section 3.3, eq. 9; stage gohd_animator).
It reads `Motion.pose`, `.gaze` and `.expression` (64 basis coefficients), so any motion source
can drive it: GoHD's own generators (pose and gaze diffusion with p_0 guidance, eqs. 1-4; the
two-stage expression predictor, eq. 8), PoseTalk's text-conditioned PLD (a PoseTalk bundle given
to `jaxtalk generate --pose-model`), a pose template or a reference video. `export` writes:

  EXPORT_DIR/animator/          a `jaxtalk.serve.export` folder of the animator
      infer.stablehlo / .mlir   `infer(params, {}, inputs) -> {"frames"}`, symbolic batch "b",
                                T = `bundle.json["chunk"]` frames per call
      params/                   {"animator": ...} params-only orbax checkpoint
      signature.json, example_*.npz, configs/gohd_animator.json
  EXPORT_DIR/data/              dataset_info.json (pose / gaze statistics, clips' coefficient
                                sources) and expression_basis.npz of the shards the stages were
                                trained on (synthetic stages: unit statistics, the synthetic
                                basis), so the bundle needs no shards
  EXPORT_DIR/gohd_pose/, gohd_gaze/, gohd_exp_lip/, gohd_exp_eye/[, syncnet/]
                                the motion stages found (`params/` + config.json; init_from paths
                                rewritten relative to each stage's folder, `input.data_dir`
                                emptied; loaded with `jaxtalk.tasks.gohd.sampling`)

Renderer inputs (batch b, T = chunk, R the resolution, r = `bundle.json["radius"]`):
  source `[b, R, R, 3]` float32 in [-1, 1]; windows `[b, T, 2r+1, 70]` float32 =
  `models.gohd.animator.driving_windows(pose_norm ⊕ expression, r)` computed over the WHOLE
  sequence (pose normalised with the bundle's statistics, expression raw); gaze `[b, T, 2]`
  normalised; lam `[b, T]` float32 (λ of Fig. 8: 1 the driven frame, 0 the source's latent z^R).
  Output frames `[b, T, R, R, 3]` float32 in (-1, 1). `GoHDModel.render_motion` does all of it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Callable, Optional

import numpy as np

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.core import logging_utils
from jaxtalk.motion import controls
from jaxtalk.renderers import common
from jaxtalk.serve.video_io import InputError

ANIMATOR = "gohd_animator"
MOTION_STAGES = ("gohd_pose", "gohd_gaze", "gohd_exp_lip", "gohd_exp_eye")
STAGES = (ANIMATOR,) + MOTION_STAGES
CHUNK = 8                 # frames per renderer call (frames are independent given their windows)
DATA = "data"             # the bundle's copy of the shards' statistics and expression basis
DEFAULT_GAMMA = 0.4       # γ of GoHD eq. 3 (the paper's)
STATS = ("pose_mean", "pose_std", "gaze_mean", "gaze_std")


# ----------------------------------------------------------------------------------------------
# Export into a bundle folder.
# ----------------------------------------------------------------------------------------------
def _with_dependencies(stages: dict[str, str]) -> dict[str, str]:
  """Adds gohd_exp_lip (from gohd_exp_eye's `init_from.exp_lip`) and the lip-sync expert
  (gohd_exp_lip's `init_from.syncnet`) when they are not found beside the others."""
  stages = dict(stages)
  for stage, dep, key in (("gohd_exp_eye", "gohd_exp_lip", "exp_lip"),
                          ("gohd_exp_lip", "syncnet", "syncnet")):
    if stage in stages and dep not in stages:
      path = common.read_json(os.path.join(stages[stage], "config.json")).get(
          "init_from", {}).get(key, "")
      if path and os.path.isdir(path):
        stages[dep] = os.path.dirname(os.path.abspath(path))
      elif path or stage == "gohd_exp_eye":
        raise ValueError(f"{stages[stage]}: init_from.{key} = {path!r} not found; put the "
                         f"{dep} stage at <runs>/{dep}")
  return stages


def _data_key(cfg: dict):
  inp = cfg.get("input", {})
  return "synthetic" if inp.get("synthetic") else os.path.abspath(inp.get("data_dir", "") or "")


def _dataset(stages: dict[str, str], configs: dict[str, dict]):
  """(dataset_info, expression basis) the stages were trained on (synthetic: unit statistics
  and the synthetic basis).

  Raises:
    ValueError: the stages were trained on different shards, or the animator's config names
      none (naming the folders).
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import expression  # pylint: disable=g-import-not-at-top
  keys = {s: _data_key(configs[s]) for s in stages if s in STAGES}
  if len(set(keys.values())) != 1:
    raise ValueError(f"the GoHD stages were trained on different data {keys}: their pose / gaze "
                     "statistics and expression basis must be the same")
  key = keys[ANIMATOR]
  if key == os.path.abspath(""):
    raise ValueError(f"{stages[ANIMATOR]}/config.json: input.data_dir is empty; the bundle needs "
                     "the shards' dataset_info.json and expression basis")
  basis = expression.basis_for_config(ml_collections.ConfigDict(configs[ANIMATOR]))
  if key == "synthetic":
    zeros = lambda n: [0.0] * n  # noqa: E731
    info = {"pose_mean": zeros(6), "pose_std": [1.0] * 6, "gaze_mean": zeros(2),
            "gaze_std": [1.0] * 2, "crop_scale": 1.6, "clips": [], "synthetic": True}
  else:
    info = input_pipeline.load_dataset_info(key)
  return info, basis


def _bundle_config(stage: str, cfg: dict) -> dict:
  """A motion stage's config as the bundle stores it: no shards, no lip reader (training only),
  frozen stages it loads referred to relative to its own folder."""
  out = dict(cfg, input=dict(cfg.get("input", {}), data_dir=""))
  init = dict(cfg.get("init_from", {}))
  if "lipreader" in init:
    init["lipreader"] = ""
  if stage == "gohd_exp_eye":
    init["exp_lip"] = "../gohd_exp_lip/params"
  if stage == "gohd_exp_lip" and init.get("syncnet"):
    init["syncnet"] = "../syncnet/params"
  out["init_from"] = init
  return out


def _export_animator(workdir: str, cfg: dict, out_dir: str, *, dtype, platforms) -> dict:
  """Writes `out_dir/animator/` (StableHLO of the animator over CHUNK frames)."""
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.gohd import animator as animator_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.gohd import animator as anim_task  # pylint: disable=g-import-not-at-top
  model = animator_lib.animator_from_config(cfg["model"], "float32")
  params = {"animator": checkpointing.load_params(os.path.join(workdir, "params"))}

  def infer(p, frozen, inputs):
    del frozen
    frames, _ = model.apply({"params": p["animator"]}, inputs["source"], inputs["windows"],
                            inputs["gaze"], inputs["lam"])
    return {"frames": frames}

  import ml_collections  # pylint: disable=g-import-not-at-top
  example = anim_task.example_inputs(ml_collections.ConfigDict(cfg["model"]), CHUNK)
  return common.export_renderer(infer, params, example,
                                out_dir, "animator", {ANIMATOR: os.path.join(workdir,
                                                                             "config.json")},
                                dtype=dtype, platforms=platforms)


def export(stages: dict[str, str], out_dir: str, *, dtype: Any = None,
           platforms: Optional[list[str]] = None) -> dict:
  """The `gohd` method's export (module docstring); returns its `bundle.json` fields.

  Args:
    stages: `{stage: workdir}` found by `serve.bundle.find_stages` (gohd_animator required).
    out_dir: the (fresh) bundle folder. dtype / platforms: as `serve.export.export_stage`.

  Raises:
    ValueError: stages trained on different data, an animator without data, or gohd_exp_eye
      without the gohd_exp_lip stage it was trained on (naming the folders).
  """
  from jaxtalk.features import expression  # pylint: disable=g-import-not-at-top
  stages = _with_dependencies(stages)
  configs = {s: common.read_json(os.path.join(d, "config.json")) for s, d in stages.items()}
  info, basis = _dataset(stages, configs)
  acfg = configs[ANIMATOR]
  renderer = _export_animator(stages[ANIMATOR], acfg, out_dir, dtype=dtype, platforms=platforms)
  os.makedirs(os.path.join(out_dir, DATA))
  from jaxtalk.core import files  # pylint: disable=g-import-not-at-top
  files.write_json_atomic(os.path.join(out_dir, DATA, "dataset_info.json"), info)
  basis_file = os.path.join(out_dir, DATA, expression.BASIS_FILE)
  if info.get("synthetic"):
    expression.save(basis, basis_file)
  else:  # byte for byte: the clips' coefficient sources name this file's fingerprint.
    shutil.copy(os.path.join(_data_key(acfg), expression.BASIS_FILE), basis_file)
  copied = {}
  for s in MOTION_STAGES + ("syncnet",):
    if s in stages:
      cfg = _bundle_config(s, configs[s]) if s != "syncnet" else None
      common.copy_stage(stages[s], os.path.join(out_dir, s), dtype=dtype, config=cfg)
      copied[s] = s
  return {
      "source": dict(stages), "resolution": int(acfg["model"]["image_size"]),
      "fps": motion_lib.FPS, "crop_scale": float(info.get("crop_scale", 1.6)),
      **{k: common.floats(info[k]) for k in STATS},
      "radius": int(acfg["model"]["radius"]), "chunk": CHUNK, "data": DATA,
      "expression_dim": int(basis.num_components), "gamma": DEFAULT_GAMMA,
      "renderer": renderer, "motion_stages": copied}


# ----------------------------------------------------------------------------------------------
# The loaded model.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class GoHDModel:
  """A loaded `gohd` bundle (see module docstring and `jaxtalk.methods`).

  Attributes:
    path: the bundle folder. resolution: R (px). crop_scale: crop side / face size.
    manifest: `bundle.json`. radius: r of the driving windows. chunk: frames per renderer call.
    basis: the expression basis (`features.expression.ExpressionBasis`) e is measured in.
    sample_motion: `(wav, *, num_frames, text=None, guidance=None, seed=0, source_motion=None)
      -> Motion` (raw, `[1, T, ...]`, expression `[1, T, 64]` when the bundle has the expression
      predictor) from GoHD's generators, starting from `source_motion`'s p_0 (default: the
      training data's mean pose and gaze, e_0 = 0); None when the bundle has no gohd_pose stage.
      `guidance` is γ of eq. 3 (default `bundle.json["gamma"]`); `text` raises InputError.
    expression_stage: `() -> (MotionStage, basis)` of the expression predictor, or None.
  """
  path: str
  resolution: int
  crop_scale: float
  manifest: dict
  radius: int
  chunk: int
  basis: Any
  sample_motion: Optional[Callable[..., motion_lib.Motion]]
  expression_stage: Optional[Callable[[], Any]]
  _call: Callable = dataclasses.field(repr=False, default=None)
  _params: Any = dataclasses.field(repr=False, default=None)

  def _norm(self, x, name):
    return common.normalized(self.manifest, x, name)

  def expression_coefficients(self, landmarks) -> np.ndarray:
    """GoHD's e `[T, E]` float32 of FaceMesh landmarks `[T, 478, 3]` (crop coordinates, one
    person), as preprocessing computes them (`features.expression.coefficients`: residuals from
    the frames' median shape). One frame (a portrait) is its own median: e_0 = 0, the person's
    neutral face, exactly what preprocessing gives a one-frame clip.

    Raises:
      InputError: the bundle's basis is a BFM-68 one (its e are imported Deep3DFaceRecon
        coefficients, not measured from FaceMesh landmarks).
    """
    from jaxtalk.features import expression  # pylint: disable=g-import-not-at-top
    try:
      return expression.coefficients(self.basis, np.asarray(landmarks, np.float32))
    except ValueError as e:
      raise InputError(f"{self.path}: cannot measure expressions from landmarks ({e})") from e

  def add_expression(self, motion: motion_lib.Motion, *, mel, source_expression=None,
                     seed: int = 0) -> motion_lib.Motion:
    """`motion` with `expression [1, T, E]`: GoHD's expression predictor (eq. 8) on `mel`
    `[T, 16, 80]` when the bundle has it, else `source_expression` (`[E]`, default zeros: the
    neutral face) held on every frame (logged). A Motion that has expression is returned as is.
    """
    if motion.expression is not None:
      return motion
    k, t = int(self.basis.num_components), motion.num_frames
    e0 = np.zeros([k], np.float32) if source_expression is None else np.asarray(
        source_expression, np.float32).reshape(k)
    if self.expression_stage is None:
      logging_utils.log_info("gohd: %s has no expression predictor (gohd_exp_eye): the "
                             "portrait's own expression e_0 is held on every frame", self.path)
      return motion.replace(expression=np.broadcast_to(e0, (1, t, k)).astype(np.float32))
    from jaxtalk.generators import gohd as gohd_lib  # pylint: disable=g-import-not-at-top
    stage, basis = self.expression_stage()
    e = gohd_lib.sample_expression(stage, basis, np.asarray(mel, np.float32), e0, seed)
    return motion.replace(expression=np.asarray(e, np.float32)[:, :t])

  def render_motion(self, source, motion: motion_lib.Motion, *, mel, source_pose,
                    progress: bool = False, lam=1.0, source_expression=None) -> np.ndarray:
    """Frames of a whole `Motion` (the method interface, `jaxtalk.methods`).

    Args:
      source: float32 `[R, R, 3]` aligned portrait in [-1, 1].
      motion: raw `Motion` `[1, T, ...]`; without expression, `add_expression` fills it.
      mel: float32 `[T, 16, 80]` log-mel windows (used only to predict a missing expression).
      source_pose: `[6]` raw pose of the portrait (the animator encodes the portrait itself).
      progress: a progress bar over chunks.
      lam: λ of GoHD Fig. 8, a float or `[T]`: 1 the driven frame, 0 the portrait's own latent
        z^R on every frame, in between an interpolation of the motion.
      source_expression: `[E]` e_0 held when the motion has no expression and the bundle no
        predictor.

    Returns:
      float32 `[T, R, R, 3]` in (-1, 1): windows `driving_windows` over all T frames, rendered
      `chunk` frames per call (the last chunk padded by repeating its last frame, then cut).

    Raises:
      ValueError: expression of another width than the basis', or lam of another length.
    """
    del source_pose
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    from jaxtalk.models.gohd import animator as animator_lib  # pylint: disable=g-import-not-at-top
    motion = self.add_expression(motion, mel=mel, source_expression=source_expression)
    t, k = motion.num_frames, int(self.basis.num_components)
    expr = np.asarray(motion.expression, np.float32)[0]
    if expr.shape != (t, k):
      raise ValueError(f"GoHDModel.render_motion: expression {expr.shape}, expected [{t}, {k}]")
    lam = np.asarray(lam, np.float32)
    if lam.ndim and lam.shape != (t,):
      raise ValueError(f"GoHDModel.render_motion: lam of shape {lam.shape}, expected [{t}]")
    coeffs = np.concatenate([self._norm(motion.pose[0], "pose"), expr], -1)[None]
    windows = np.asarray(animator_lib.driving_windows(jnp.asarray(coeffs), self.radius))[0]
    gaze, lam = self._norm(motion.gaze[0], "gaze"), np.broadcast_to(lam, (t,))
    src = np.asarray(source, np.float32)[None]
    out = []
    for s in tqdm(range(0, t, self.chunk), desc="render", unit="chunk", disable=not progress,
                  leave=False):
      idx = np.minimum(np.arange(s, s + self.chunk), t - 1)  # the last chunk repeats frame T-1
      inputs = {"source": src, "windows": windows[idx][None], "gaze": gaze[idx][None],
                "lam": lam[idx][None].astype(np.float32)}
      out.append(np.asarray(self._call(self._params, {}, inputs)["frames"][0, :min(
          self.chunk, t - s)]))
    return np.concatenate(out)


def _sampler(path: str, manifest: dict, data_dir: str):
  """GoHD's `sample_motion` over the bundle's motion stages (loaded on first use), or None."""
  ms = manifest.get("motion_stages") or {}
  if "gohd_pose" not in ms:
    return None
  state = {}
  dirs = {s: os.path.join(path, d, "params") for s, d in ms.items()}
  common.require(*dirs.values())

  def sample(wav, *, num_frames: int, text=None, guidance=None, seed: int = 0,
             source_motion=None) -> motion_lib.Motion:
    from jaxtalk.generators import gohd as gohd_lib  # pylint: disable=g-import-not-at-top
    from jaxtalk.tasks.gohd import sampling  # pylint: disable=g-import-not-at-top
    if text is not None:
      raise InputError("GoHD's motion generators take no text; for text-conditioned head motion "
                       "give a PoseTalk bundle with its pld to --pose-model")
    if "models" not in state:
      try:
        state["models"] = sampling.load_motion_models(
            dirs["gohd_pose"], dirs.get("gohd_gaze", ""), dirs.get("gohd_exp_eye", ""), data_dir)
      except (ValueError, OSError) as e:
        raise InputError(f"{path}: cannot load GoHD's motion stages ({e})") from e
    if source_motion is None:  # no portrait measured: the training data's mean pose and gaze
      source_motion = motion_lib.Motion(
          pose=np.asarray(manifest["pose_mean"], np.float32)[None, None],
          gaze=np.asarray(manifest["gaze_mean"], np.float32)[None, None],
          expression=np.zeros((1, 1, int(manifest["expression_dim"])), np.float32))
    gamma = float(manifest.get("gamma", DEFAULT_GAMMA) if guidance is None else guidance)
    return gohd_lib.sample_motion(state["models"], np.asarray(wav, np.float32), source_motion,
                                  seconds=num_frames / motion_lib.FPS, gamma=gamma, seed=seed)

  return sample


def _expression_loader(path: str, manifest: dict, data_dir: str):
  """`() -> (MotionStage, basis)` of the bundle's expression predictor (cached), or None."""
  ms = manifest.get("motion_stages") or {}
  if "gohd_exp_eye" not in ms:
    return None
  params = os.path.join(path, ms["gohd_exp_eye"], "params")
  common.require(params, os.path.join(path, ms.get("gohd_exp_lip", "gohd_exp_lip"), "params"))
  state = {}

  def load():
    from jaxtalk.tasks.gohd import sampling  # pylint: disable=g-import-not-at-top
    if "stage" not in state:
      try:
        state["stage"] = sampling.expression_stage(params, data_dir)
      except (ValueError, OSError) as e:
        raise InputError(f"{path}: cannot load GoHD's expression predictor ({e})") from e
    return state["stage"]

  return load


def load(path: str, manifest: dict) -> GoHDModel:
  """Loads a `gohd` bundle folder (written by `export`).

  Raises:
    InputError: the renderer artifact, the data folder or a motion stage missing (naming it).
  """
  from jaxtalk.features import expression  # pylint: disable=g-import-not-at-top
  call, params = common.load_renderer(path, manifest["renderer"]["dir"])
  data_dir = os.path.join(path, manifest.get("data", DATA))
  basis_file = os.path.join(data_dir, expression.BASIS_FILE)
  common.require(os.path.join(data_dir, "dataset_info.json"), basis_file)
  try:
    basis = expression.load(basis_file)
  except (ValueError, OSError, KeyError) as e:
    raise InputError(f"{basis_file}: cannot read the expression basis ({e})") from e
  return GoHDModel(path=path, resolution=int(manifest["resolution"]),
                   crop_scale=float(manifest["crop_scale"]), manifest=manifest,
                   radius=int(manifest["radius"]), chunk=int(manifest["chunk"]), basis=basis,
                   sample_motion=_sampler(path, manifest, data_dir),
                   expression_stage=_expression_loader(path, manifest, data_dir),
                   _call=call, _params=params)


def stage_model(config, infer, params, frozen) -> GoHDModel:
  """A `GoHDModel` over the gohd_animator stage while it trains (in-training reenactment).

  Args:
    config: the stage's config (shards' statistics and basis; `model.radius`, `image_size`).
    infer: the stage task's `infer(params, frozen, inputs) -> {"frames"}`, jitted.
    params / frozen: the stage's current params and its frozen inputs.

  Returns:
    a model whose `render_motion` renders as a loaded bundle's; no generators.
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from jaxtalk.features import expression  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(config.input.data_dir)
  return GoHDModel(path="", resolution=int(config.model.image_size),
                   crop_scale=float(info.get("crop_scale", 1.6)),
                   manifest={k: common.floats(info[k]) for k in STATS},
                   radius=int(config.model.radius), chunk=int(config.render_frames),
                   basis=expression.basis_for_config(config), sample_motion=None,
                   expression_stage=None, _call=lambda p, _, x: infer(p, frozen, x),
                   _params=params)


METHOD = methods.register(methods.Method(
    name="gohd",
    summary="GoHD: conformer pose/gaze diffusion + two-stage expression predictor -> "
            "latent-navigation animator",
    stages=STAGES,
    required=(ANIMATOR,),
    export=export,
    load=load,
    stage_model=stage_model,
    train_stages=(("gohd_pose", "configs.gohd.pose"), ("gohd_gaze", "configs.gohd.gaze"),
                  ("gohd_exp_lip", "configs.gohd.exp_lip"),
                  ("gohd_exp_eye", "configs.gohd.exp_eye"),
                  ("gohd_face_analysis", "configs.gohd.face_analysis"),
                  (ANIMATOR, "configs.gohd.animator")),
    controls=(
        methods.Control("text", str, None, "head-motion prompt: needs a PoseTalk bundle's PLD "
                        "(pose_model); GoHD's generators take none"),
        methods.Control("guidance", float, DEFAULT_GAMMA,
                        "γ of GoHD eq. 3: how much the pose/gaze diffusion follows p_0",
                        range=(0.0, 1.0)),
        methods.Control("seed", int, 0, "sampling seed of the motion generators"),
        methods.Control("pose_template", str, None, "named head motion instead of the "
                        "generator", choices=controls.POSE_TEMPLATES),
        methods.Control("gaze_mode", str, "generated", "gaze of every frame (GoHD release: "
                        "freeze / centre / left / right)", choices=controls.GAZE_MODES),
        methods.Control("gaze_pitch", float, None, "fixed gaze pitch (radians)",
                        range=(-0.6, 0.6)),
        methods.Control("gaze_yaw", float, None, "fixed gaze yaw (radians)", range=(-0.6, 0.6)),
        *controls.SCALE_CONTROLS,
        methods.Control("lam", float, 1.0, "λ of GoHD Fig. 8: 0 the portrait's own latent, 1 the "
                        "driven motion", range=(0.0, 1.0)),
        methods.Control("pose_from", str, None, "video whose head poses drive the portrait"),
        methods.Control("gaze_from", str, None, "video whose gaze drives the portrait"),
        methods.Control("expression_from", str, None,
                        "video whose expressions (FaceMesh landmarks through the basis) drive "
                        "the portrait"),
    )))
