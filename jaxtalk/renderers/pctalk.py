"""PC-Talk as a method (`jaxtalk.methods`): the implicit-keypoint renderer, driven by any `Motion`.

The renderer is LivePortrait's F, M, W, G as PC-Talk uses it (section 3.1, eqs. 1-3; stage
pctalk_renderer). It reads `Motion.pose` (mapped to R, t, s by `keypoints.pose_to_rts`) and
`Motion.keypoints`, the expression deformation δ `[B, T, K, 3]` of eq. 1 (the source portrait's
own δ held when None). PC-Talk's own audio-driven motion generators (the LAC lip and EMC
emotion modules) are not built yet (issue 19), so a loaded model has `sample_motion = None` and
its motion comes from another bundle's generator (`jaxtalk generate --pose-model`: PoseTalk's
text-conditioned PLD or GoHD's pose diffusion), a reference video's poses (`--pose-from`), a
pose template, or video-driven reenactment (`--drive VIDEO`: LivePortrait's relative motion,
`relative_motion`, with `--animation-region`). The eye- and lip-open ratios (LivePortrait's
retargeting sliders) need the optional pctalk_stitching stage. `export` writes:

  EXPORT_DIR/renderer/          a `jaxtalk.serve.export` folder of the stage's `infer`:
      infer.stablehlo / .mlir   `infer(params, {}, inputs) -> {"frames"}`, symbolic batch "b",
                                T = `bundle.json["chunk"]` frames per call; inputs source
                                `[b, R, R, 3]` float32 in [-1, 1], pose `[b, T, 6]` raw units,
                                delta `[b, T, K, 3]`; frames `[b, T, R, R, 3]` in (-1, 1)
      params/                   {"renderer": F, M, W, G params} params-only orbax checkpoint
      signature.json, example_*.npz, configs/pctalk_renderer.json
  EXPORT_DIR/motion_extractor/  the same for M alone: inputs image `[b, R, R, 3]` in [-1, 1] ->
                                {"canonical" K_c `[b, K, 3]`, "angles" (yaw, pitch, roll) `[b, 3]`
                                rad, "translation" `[b, 3]` (t_z = 0), "scale" `[b]`, "delta" δ
                                `[b, K, 3]`} (keypoint units, `models.pctalk.keypoints`); it reads
                                the portrait's δ and the driving frames' motion at generate time
                                (its params are a copy of the renderer's motion_extractor)
  EXPORT_DIR/stitching/         optional: the pctalk_stitching stage's `params/` + config.json
                                (`models.pctalk.stitching.StitchingRetargeting`; loaded with
                                jaxtalk's model code, a few small MLPs)

`bundle.json` fields: resolution, fps, crop_scale (the shards' `dataset_info.json`; 1.6 for a
synthetic-trained stage, preprocessing's default), chunk, num_keypoints, renderer,
motion_extractor, stitching (None or {"dir", "num_keypoints", "hidden_scale"}). No pose
statistics: the renderer takes raw poses.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

import numpy as np

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.motion import controls
from jaxtalk.renderers import common
from jaxtalk.serve.video_io import InputError

RENDERER = "pctalk_renderer"
STITCHING = "pctalk_stitching"
STAGES = (RENDERER, STITCHING)
CHUNK = 8                 # frames per renderer / motion-extractor call (frames are independent)
DEFAULT_CROP_SCALE = 1.6  # preprocessing's crop side / face size
# LivePortrait's --animation_region: which parts of the driving video's motion are transferred.
REGIONS = ("exp", "pose", "lip", "eyes", "all")
LIP_RATIO_RANGE = (0.0, 0.8)
EYE_RATIO_RANGE = (0.0, 0.5)
MOTION_KEYS = ("canonical", "angles", "translation", "scale", "delta")


# ----------------------------------------------------------------------------------------------
# Relative motion (LivePortrait's video-driven reenactment).
# ----------------------------------------------------------------------------------------------
def _region_rows(region: str, num_keypoints: int) -> tuple[bool, list[int]]:
  """(pose relative?, keypoint rows of δ relative) of an animation region."""
  from jaxtalk.models.pctalk import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  if region not in REGIONS:
    raise ValueError(f"unknown animation region {region!r}; expected one of {', '.join(REGIONS)}")
  rows = {"exp": range(num_keypoints), "all": range(num_keypoints), "pose": (),
          "lip": kp_lib.LIP_KEYPOINTS, "eyes": kp_lib.EYE_KEYPOINTS + kp_lib.BROW_KEYPOINTS}
  return region in ("all", "pose"), list(rows[region])


def relative_motion(source: dict, driving: dict, region: str = "all") -> tuple[np.ndarray,
                                                                              np.ndarray]:
  """LivePortrait's relative motion: the driving video's motion since its first frame, applied to
  the source portrait (LivePortrait `live_portrait_pipeline.py`, `flag_relative_motion`).

    R_i = R_di · R_d0ᵀ · R_s        δ_i = δ_s + (δ_di − δ_d0)
    s_i = s_s · s_di / s_d0         t_i = t_s + (t_di − t_d0)   (x, y; t_z = 0)

  `region` (LivePortrait's `animation_region`): "all" both; "pose" R, s, t relative and δ = δ_s;
  "exp" δ relative and R, s, t the source's; "lip" / "eyes" only the `LIP_KEYPOINTS` /
  `EYE_KEYPOINTS + BROW_KEYPOINTS` rows of δ relative, R, s, t the source's. Frame 0 (and every
  driving frame equal to it) gives back the source's own pose and δ.

  Args:
    source: the motion extractor's output of the portrait (`MOTION_KEYS`, leading dim 1 or none):
      angles `[3]` (yaw, pitch, roll) rad, translation `[3]`, scale `[]`, delta `[K, 3]`.
    driving: the same for the T driving frames (`[T, ...]`; frame 0 is d0).
    region: one of `REGIONS`.

  Returns:
    (pose `[T, 6]` float32 raw `Motion.pose`: yaw, pitch, roll of R_i (`features.face.
    rotation_to_euler`, the inverse of `keypoints.rotation_matrix`), tx = t_x / 2, ty = t_y / 2,
    scale = s_i (the inverse of `keypoints.pose_to_rts`); delta `[T, K, 3]` float32 δ_i).

  Raises:
    ValueError: unknown region, source / driving of inconsistent shapes, or s_d0 = 0 (with
      the pose transferred).
  """
  from jaxtalk.features import face as face_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  src = {k: np.asarray(source[k], np.float64).reshape(
      np.shape(driving[k])[1:]) for k in ("angles", "translation", "scale", "delta")}
  drv = {k: np.asarray(driving[k], np.float64) for k in ("angles", "translation", "scale", "delta")}
  t, k = drv["delta"].shape[:2]
  if drv["angles"].shape != (t, 3) or drv["scale"].shape != (t,) or drv["delta"].shape != (t, k, 3):
    raise ValueError(f"relative_motion: driving angles {drv['angles'].shape}, scale "
                     f"{drv['scale'].shape}, delta {drv['delta'].shape}; expected [{t}, 3], "
                     f"[{t}], [{t}, K, 3]")
  pose_rel, rows = _region_rows(region, k)
  rot = lambda a: np.asarray(kp_lib.rotation_matrix(a[..., 0], a[..., 1], a[..., 2]),  # noqa: E731
                             np.float64)
  r_s, r_d = rot(src["angles"]), rot(drv["angles"])
  if pose_rel and abs(drv["scale"][0]) < 1e-6:
    raise ValueError(f"relative_motion: the first driving frame's scale is {drv['scale'][0]:g}")
  if pose_rel:
    r_i = r_d @ np.swapaxes(r_d[:1], -1, -2) @ r_s
    angles = np.stack([face_lib.rotation_to_euler(r) for r in r_i])
    trans = src["translation"] + (drv["translation"] - drv["translation"][:1])
    scale = src["scale"] * drv["scale"] / drv["scale"][0]
  else:
    angles = np.broadcast_to(src["angles"], (t, 3))
    trans = np.broadcast_to(src["translation"], (t, 3))
    scale = np.broadcast_to(src["scale"], (t,))
  delta = np.array(np.broadcast_to(src["delta"], (t, k, 3)))
  delta[:, rows] += drv["delta"][:, rows] - drv["delta"][:1, rows]
  pose = np.concatenate([angles, trans[:, :2] / 2.0, scale[:, None]], -1)
  return pose.astype(np.float32), delta.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Export into a bundle folder.
# ----------------------------------------------------------------------------------------------
def motion_infer(model_cfg, dtype: str = "float32") -> Callable:
  """`infer(params, frozen, {"image" [b, R, R, 3]}) -> motion dict` of M (module docstring);
  params `{"renderer": {"motion_extractor": ...}}` (or the whole renderer's); `dtype` the
  compute dtype (the stage's `config.dtype`, as its `infer` uses; outputs float32)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import renderer as renderer_lib  # pylint: disable=g-import-not-at-top
  model = renderer_lib.renderer_from_config(ml_collections.ConfigDict(dict(model_cfg)), dtype)

  def infer(params, frozen, inputs):
    del frozen
    out = model.apply({"params": params["renderer"]}, inputs["image"],
                      method=renderer_lib.Renderer.motion)
    return {k: out[k] for k in MOTION_KEYS}

  return infer


def _crop_scale(cfg: dict, workdir: str) -> float:
  """crop_scale of the shards the renderer was trained on (1.6 when synthetic).

  Raises:
    ValueError: not synthetic and input.data_dir empty, or its dataset_info.json unreadable.
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  inp = cfg.get("input", {})
  if inp.get("synthetic"):
    return DEFAULT_CROP_SCALE
  if not inp.get("data_dir"):
    raise ValueError(f"{workdir}/config.json: input.data_dir is empty; the bundle needs the "
                     "shards' dataset_info.json (their crop scale)")
  return float(input_pipeline.load_dataset_info(inp["data_dir"]).get("crop_scale",
                                                                    DEFAULT_CROP_SCALE))


def _export_renderer(workdir: str, cfg: dict, out_dir: str, *, dtype, platforms) -> tuple[dict,
                                                                                          dict]:
  """Writes `out_dir/renderer/` (the stage's own `infer` over CHUNK frames) and
  `out_dir/motion_extractor/`; returns their bundle.json fields."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.pctalk import renderer as renderer_task  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(cfg)
  config.vgg_weights = ""  # the perceptual loss is not exported; do not load VGG19 for nothing
  task = tasks.get_task(config, mesh=None)
  params = checkpointing.load_params(os.path.join(workdir, "params"))
  configs = {RENDERER: os.path.join(workdir, "config.json")}

  def infer(p, frozen, inputs):
    del frozen
    return task.infer(p["renderer"], {}, inputs)

  renderer = common.export_renderer(
      infer, {"renderer": params}, renderer_task.example_inputs(config.model, CHUNK), out_dir,
      "renderer", configs, dtype=dtype, platforms=platforms)
  r = int(config.model.image_size)
  motion = common.export_renderer(
      motion_infer(cfg["model"], cfg.get("dtype", "float32")),
      {"renderer": {"motion_extractor": params["motion_extractor"]}},
      {"image": np.zeros((1, r, r, 3), np.float32)}, out_dir, "motion_extractor", configs,
      dtype=dtype, platforms=platforms)
  return renderer, motion


def _stitching_fields(renderer_cfg: dict) -> dict:
  """bundle.json's "stitching": the MLPs' sizes, the renderer's `num_keypoints` and
  `stitching_hidden_scale` (as `tasks.pctalk.stitching.stitching_from_config` builds them)."""
  model = renderer_cfg["model"]
  return {"dir": "stitching", "num_keypoints": int(model["num_keypoints"]),
          "hidden_scale": int(model.get("stitching_hidden_scale", 1))}


def _check_stitching_renderer(stages: dict[str, str], cfg: dict) -> None:
  """The stitching stage's frozen renderer (`init_from.renderer`) must be the bundle's: its
  MLPs read that renderer's keypoints.

  Raises:
    ValueError: they differ (naming both).
  """
  path = cfg.get("init_from", {}).get("renderer", "")
  if not path:
    return
  trained_with = os.path.realpath(os.path.dirname(os.path.abspath(path.rstrip("/"))))
  if trained_with != os.path.realpath(stages[RENDERER]):
    raise ValueError(f"{stages[STITCHING]}/config.json: trained with the renderer {path}, but "
                     f"the bundle's renderer is {stages[RENDERER]}/params; the retargeting MLPs "
                     "read that renderer's keypoints: put the matching stages side by side")


def export(stages: dict[str, str], out_dir: str, *, dtype: Any = None,
           platforms: Optional[list[str]] = None) -> dict:
  """The `pctalk` method's export (module docstring); returns its `bundle.json` fields.

  Args:
    stages: `{stage: workdir}` found by `serve.bundle.find_stages` (pctalk_renderer required,
      pctalk_stitching optional).
    out_dir: the (fresh) bundle folder. dtype / platforms: as `serve.export.export_stage`.

  Raises:
    ValueError: the renderer's config names no shards (and is not synthetic) or their
      dataset_info.json is unreadable (naming the file), or the stitching stage was trained
      with another renderer (`_check_stitching_renderer`).
  """
  configs = {s: common.read_json(os.path.join(d, "config.json")) for s, d in stages.items()}
  if STITCHING in stages:
    _check_stitching_renderer(stages, configs[STITCHING])
  rcfg = configs[RENDERER]
  crop_scale = _crop_scale(rcfg, stages[RENDERER])
  renderer, motion = _export_renderer(stages[RENDERER], rcfg, out_dir, dtype=dtype,
                                      platforms=platforms)
  stitching = None
  if STITCHING in stages:
    stitching = _stitching_fields(rcfg)
    cfg = dict(configs[STITCHING], input=dict(configs[STITCHING].get("input", {}), data_dir=""))
    cfg["init_from"] = {k: "" for k in cfg.get("init_from", {})}  # the renderer is in the bundle
    common.copy_stage(stages[STITCHING], os.path.join(out_dir, stitching["dir"]), dtype=dtype,
                      config=cfg)
  return {"source": dict(stages), "resolution": int(rcfg["model"]["image_size"]),
          "fps": motion_lib.FPS, "crop_scale": crop_scale, "chunk": CHUNK,
          "num_keypoints": int(rcfg["model"]["num_keypoints"]), "renderer": renderer,
          "motion_extractor": motion, "stitching": stitching}


# ----------------------------------------------------------------------------------------------
# The loaded model.
# ----------------------------------------------------------------------------------------------
def _batched(call: Callable, params, arrays: dict, chunk: int, *, axis: int,
             progress: bool = False, desc: str = "render") -> dict:
  """`call(params, {}, inputs)` over the frame axis `axis` of `arrays` (1: `[1, T, ...]`, the
  renderer's, "source" `[1, ...]` passed whole; 0: `[T, ...]`, the motion extractor's batch) in
  chunks of `chunk` (the last padded by repeating frame T-1, then cut): the outputs `[T, ...]`
  concatenated."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  t = next(v.shape[axis] for k, v in arrays.items() if k != "source")
  out = {}
  for s in tqdm(range(0, t, chunk), desc=desc, unit="chunk", disable=not progress, leave=False):
    idx, n = np.minimum(np.arange(s, s + chunk), t - 1), min(chunk, t - s)
    inputs = {k: v if k == "source" else np.take(v, idx, axis=axis) for k, v in arrays.items()}
    for k, v in call(params, {}, inputs).items():
      v = np.asarray(v)
      out.setdefault(k, []).append(v[0, :n] if axis == 1 else v[:n])
  return {k: np.concatenate(v) for k, v in out.items()}


@dataclasses.dataclass
class PCTalkModel:
  """A loaded `pctalk` bundle (see module docstring and `jaxtalk.methods`).

  Attributes:
    path: the bundle folder. resolution: R (px). crop_scale: crop side / face size.
    manifest: `bundle.json`. chunk: frames per renderer call. num_keypoints: K.
    sample_motion: None (PC-Talk's LAC / EMC motion generators are issue 19): the motion comes
      from `--pose-model`, `--pose-from`, `--pose-template` or `--drive`.
    stitching: `() -> (StitchingRetargeting module, variables)` of the bundle's
      pctalk_stitching stage (loaded on first use), or None when the bundle has none.
  """
  path: str
  resolution: int
  crop_scale: float
  manifest: dict
  chunk: int
  num_keypoints: int
  sample_motion: Optional[Callable[..., motion_lib.Motion]] = None
  stitching: Optional[Callable[[], tuple[Any, Any]]] = None
  _call: Callable = dataclasses.field(repr=False, default=None)
  _params: Any = dataclasses.field(repr=False, default=None)
  _motion_call: Callable = dataclasses.field(repr=False, default=None)
  _motion_params: Any = dataclasses.field(repr=False, default=None)

  def _images(self, images, what: str) -> np.ndarray:
    x = np.asarray(images, np.float32)
    r = self.resolution
    if x.ndim != 4 or x.shape[1:] != (r, r, 3):
      raise ValueError(f"PCTalkModel: {what} of shape {x.shape}, expected [N, {r}, {r}, 3]")
    return x

  def read_motion(self, images, progress: bool = False) -> dict:
    """The motion extractor M on aligned crops `[N, R, R, 3]` float32 in [-1, 1]: {"canonical"
    `[N, K, 3]`, "angles" `[N, 3]` rad, "translation" `[N, 3]`, "scale" `[N]`, "delta"
    `[N, K, 3]`} float32 numpy, `chunk` images per call.

    Raises:
      ValueError: images of another shape than `[N, R, R, 3]`.
    """
    x = self._images(images, "images")
    return _batched(self._motion_call, self._motion_params, {"image": x},
                    self.chunk if len(x) > 1 else 1, axis=0, progress=progress, desc="motion")

  def drive_motion(self, source, frames, *, region: str = "all",
                   progress: bool = False) -> motion_lib.Motion:
    """Video-driven reenactment: the raw `Motion` `[1, N, ...]` that moves `source` as the
    driving `frames` move (`relative_motion` over M's reading of both).

    Args:
      source: float32 `[R, R, 3]` aligned portrait in [-1, 1].
      frames: float32 `[N, R, R, 3]` driving frames aligned the same way (frame 0 is d0).
      region: `REGIONS` (LivePortrait's animation_region).
      progress: a progress bar over the motion extractor's chunks.

    Returns:
      pose `[1, N, 6]` raw, keypoints δ `[1, N, K, 3]`, gaze zeros `[1, N, 2]` (the renderer
      reads none; the pipeline puts the portrait's).

    Raises:
      ValueError: unknown region, or images of another shape.
    """
    _region_rows(region, self.num_keypoints)  # fail before running the extractor
    ms = self.read_motion(self._images(np.asarray(source)[None], "source"))
    md = self.read_motion(frames, progress=progress)
    pose, delta = relative_motion(ms, md, region)
    return motion_lib.Motion(pose=pose[None], gaze=np.zeros((1, len(pose), 2), np.float32),
                             keypoints=delta[None])

  def retargeting(self, source_motion: dict, lip_ratio=None, eye_ratio=None) -> np.ndarray:
    """Δ `[K, 3]` (keypoint units) to add to the driven keypoints for lip-open ratio `lip_ratio`
    and eye-open ratio `eye_ratio` (LivePortrait's retargeting; None leaves that region), from
    the source's keypoints K_s (eq. 1 of `source_motion`, M's reading `[1, ...]` of the
    portrait) and their own ratios (`keypoints.keypoint_lip_ratio` / `keypoint_eye_ratio`).

    Raises:
      InputError: the bundle has no pctalk_stitching stage (naming the bundle).
    """
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from jaxtalk.models.pctalk import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
    from jaxtalk.models.pctalk import renderer as render_lib  # pylint: disable=g-import-not-at-top
    from jaxtalk.models.pctalk import stitching as st_lib  # pylint: disable=g-import-not-at-top
    if self.stitching is None:
      raise InputError(f"{self.path}: lip_ratio / eye_ratio need the {STITCHING} stage "
                       "(LivePortrait's retargeting MLPs), which this bundle does not have; "
                       f"train it and re-export with <runs>/{STITCHING} beside the renderer")
    module, variables = self.stitching()
    kp_s = render_lib.keypoints_of({k: jnp.asarray(v) for k, v in source_motion.items()})
    total = jnp.zeros_like(kp_s)
    if lip_ratio is not None:
      total += module.apply(variables, kp_s, kp_lib.keypoint_lip_ratio(kp_s),
                            jnp.full((1,), lip_ratio, jnp.float32),
                            method=st_lib.StitchingRetargeting.lip)
    if eye_ratio is not None:
      total += module.apply(variables, kp_s, kp_lib.keypoint_eye_ratio(kp_s),
                            jnp.full((1,), eye_ratio, jnp.float32),
                            method=st_lib.StitchingRetargeting.eye)
    return np.asarray(total[0], np.float32)

  def render_motion(self, source, motion: motion_lib.Motion, *, mel, source_pose,
                    progress: bool = False, lip_ratio: Optional[float] = None,
                    eye_ratio: Optional[float] = None) -> np.ndarray:
    """Frames of a whole `Motion` (the method interface, `jaxtalk.methods`).

    Args:
      source: float32 `[R, R, 3]` aligned portrait in [-1, 1] (its volume, K_c and K_s).
      motion: raw `Motion` `[1, T, ...]`: pose (R, t, s by `keypoints.pose_to_rts`) and
        keypoints δ `[1, T, K, 3]` (None: the portrait's own δ, read by M, on every frame).
      mel, source_pose: unused (no audio-driven lips yet; M reads the portrait's pose itself).
      progress: a progress bar over chunks.
      lip_ratio / eye_ratio: LivePortrait's lip- / eye-open ratio of every frame (`LIP_RATIO_
        RANGE`, `EYE_RATIO_RANGE`; None: unchanged): the retargeting Δ (`retargeting`) added
        to the driven keypoints, i.e. Δ / s_t added to δ_t (eq. 1 is linear in δ).

    Returns:
      float32 `[T, R, R, 3]` in (-1, 1), `chunk` frames per renderer call (the last chunk
      padded by repeating its last frame, then cut).

    Raises:
      ValueError: source, pose or keypoints of other shapes, ratios out of range, or a scale
        of 0 with a ratio.
      InputError: a ratio given and the bundle has no pctalk_stitching stage.
    """
    del mel, source_pose
    src = self._images(np.asarray(source)[None], "source")
    t, k = motion.num_frames, self.num_keypoints
    pose = np.asarray(motion.pose, np.float32)[0]
    ms = self.read_motion(src)
    delta = (np.broadcast_to(ms["delta"], (t, k, 3)) if motion.keypoints is None
             else np.asarray(motion.keypoints, np.float32)[0])
    if pose.shape != (t, 6) or delta.shape != (t, k, 3):
      raise ValueError(f"PCTalkModel.render_motion: pose {pose.shape}, keypoints {delta.shape}; "
                       f"expected [{t}, 6] and [{t}, {k}, 3]")
    for name, v, (lo, hi) in (("lip_ratio", lip_ratio, LIP_RATIO_RANGE),
                              ("eye_ratio", eye_ratio, EYE_RATIO_RANGE)):
      if v is not None and not lo <= float(v) <= hi:
        raise ValueError(f"{name}={v}: outside {lo} .. {hi}")
    if lip_ratio is not None or eye_ratio is not None:
      if np.abs(pose[:, 5]).min() < 1e-3:
        raise ValueError("PCTalkModel.render_motion: a pose scale of 0 cannot be retargeted")
      delta = delta + self.retargeting(ms, lip_ratio, eye_ratio)[None] / pose[:, 5, None, None]
    out = _batched(self._call, self._params, {"source": src, "pose": pose[None],
                                               "delta": np.asarray(delta, np.float32)[None]},
                   self.chunk, axis=1, progress=progress)
    return out["frames"]


def _stitching_loader(path: str, manifest: dict):
  """`() -> (StitchingRetargeting, variables)` of the bundle's stitching stage (cached), or
  None."""
  st = manifest.get("stitching")
  if not st:
    return None
  params = os.path.join(path, st["dir"], "params")
  common.require(params)
  state = {}

  def load():
    from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
    from jaxtalk.models.pctalk import stitching as st_lib  # pylint: disable=g-import-not-at-top
    if "model" not in state:
      try:
        tree = checkpointing.load_params(params)
      except (ValueError, OSError) as e:
        raise InputError(f"{params}: cannot load the {STITCHING} params ({e})") from e
      state["model"] = (st_lib.StitchingRetargeting(int(st["num_keypoints"]),
                                                    int(st["hidden_scale"])),
                        tree if set(tree) == {"params"} else {"params": tree})
    return state["model"]

  return load


def load(path: str, manifest: dict) -> PCTalkModel:
  """Loads a `pctalk` bundle folder (written by `export`).

  Raises:
    InputError: the renderer or motion-extractor artifact, or the stitching params the
      manifest names, missing or unreadable (naming it).
  """
  call, params = common.load_renderer(path, manifest["renderer"]["dir"])
  mcall, mparams = common.load_renderer(path, manifest["motion_extractor"]["dir"])
  return PCTalkModel(path=path, resolution=int(manifest["resolution"]),
                     crop_scale=float(manifest["crop_scale"]), manifest=manifest,
                     chunk=int(manifest["chunk"]), num_keypoints=int(manifest["num_keypoints"]),
                     stitching=_stitching_loader(path, manifest), _call=call, _params=params,
                     _motion_call=mcall, _motion_params=mparams)


def stage_model(config, infer, params, frozen) -> PCTalkModel:
  """A `PCTalkModel` over the pctalk_renderer stage while it trains (in-training reenactment).

  Args:
    config: the stage's config (`model`; the shards' crop scale from `input.data_dir`).
    infer: the stage task's `infer(params, frozen, inputs) -> {"frames"}`, jitted.
    params / frozen: the stage's current params and its frozen inputs.

  Returns:
    a model whose `render_motion` renders as a loaded bundle's (M from the same params, jitted);
    no stitching stage.
  """
  import jax  # pylint: disable=g-import-not-at-top
  cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return PCTalkModel(path="", resolution=int(config.model.image_size),
                     crop_scale=_crop_scale(cfg, RENDERER),
                     manifest={}, chunk=CHUNK, num_keypoints=int(config.model.num_keypoints),
                     _call=lambda p, _, x: infer(p, frozen, x), _params=params,
                     _motion_call=jax.jit(motion_infer(cfg["model"],
                                                       cfg.get("dtype", "float32"))),
                     _motion_params={"renderer": params})


METHOD = methods.register(methods.Method(
    name="pctalk",
    summary="PC-Talk: implicit-keypoint renderer (LivePortrait's F, M, W, G) driven by a video "
            "(relative motion) or any Motion; its own LAC/EMC generators: issue 19",
    stages=STAGES,
    required=(RENDERER,),
    export=export,
    load=load,
    stage_model=stage_model,
    train_stages=((RENDERER, "configs.pctalk.renderer"), (STITCHING, "configs.pctalk.stitching")),
    controls=(
        methods.Control("text", str, None, "head-motion prompt: needs a PoseTalk bundle's PLD "
                        "(pose_model); PC-Talk has no motion generator yet"),
        methods.Control("seed", int, 0, "sampling seed of the pose model"),
        methods.Control("pose_template", str, None, "named head motion",
                        choices=controls.POSE_TEMPLATES),
        methods.Control("pose_from", str, None, "video whose head poses drive the portrait"),
        methods.Control("drive_from", str, None,
                        "video whose head motion and expressions drive the portrait "
                        "(LivePortrait's relative motion; its sound is the speech when none "
                        "is given)"),
        methods.Control("animation_region", str, "all",
                        "what the driving video moves: exp (expressions), pose (head), lip, "
                        "eyes, all (LivePortrait's animation_region)", choices=REGIONS),
        controls.SCALE_CONTROLS[0],
        methods.Control("lip_ratio", float, None, "lip-open ratio of every frame "
                        "(LivePortrait's retargeting; needs the pctalk_stitching stage)",
                        range=LIP_RATIO_RANGE),
        methods.Control("eye_ratio", float, None, "eye-open ratio of every frame "
                        "(LivePortrait's retargeting; needs the pctalk_stitching stage)",
                        range=EYE_RATIO_RANGE),
    )))
