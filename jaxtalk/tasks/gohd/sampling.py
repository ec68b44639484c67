"""Trained GoHD motion stages for sampling: `load_motion_models` builds the
`generators.gohd.MotionModels` that `generators.gohd.sample_motion` samples from (the loading
needs the stages' tasks, so it lives above the generators)."""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxtalk import diffusion
from jaxtalk.core import checkpointing
from jaxtalk.core import input_pipeline
from jaxtalk.features import expression as expression_lib
from jaxtalk.generators import gohd as gohd_lib
from jaxtalk.models.gohd import pose_denoiser
from jaxtalk.tasks.gohd import exp_eye
from jaxtalk.tasks.gohd import motion_diffusion


def _diffusion_stage(params_dir: str, what: str, want: str) -> gohd_lib.MotionStage:
  cfg, params = checkpointing.load_stage(params_dir, what=what)
  cfg = ml_collections.ConfigDict(cfg)
  if cfg.task != motion_diffusion.__name__ or motion_diffusion.model_target(cfg) != want:
    raise ValueError(f"{what} = {params_dir!r}: a {cfg.task} stage "
                     f"(target {cfg.model.get('target')}), expected gohd_{want}")
  net = pose_denoiser.from_config(cfg.model, cfg.dtype, out_dim=motion_diffusion.TARGET_DIMS[want])
  p, scale = motion_diffusion.split(params)
  return gohd_lib.MotionStage(cfg, p, net=net, schedule=diffusion.schedule_from_config(
      cfg.diffusion), scale=scale)


def expression_stage(expression_dir: str, data_dir: str):
  """`(MotionStage, basis)` of a trained gohd_exp_eye stage (`<workdir>/params`; its config
  names the stage-1 params in `init_from.exp_lip`), with the expression basis of the shards
  `data_dir` (expression_basis.npz + dataset_info.json) it was trained on.

  Raises:
    ValueError: unreadable stage, a stage of another kind, or no basis in `data_dir`.
  """
  cfg, params = checkpointing.load_stage(expression_dir, what="expression_dir")
  cfg = ml_collections.ConfigDict(cfg)
  if cfg.task != exp_eye.__name__:
    raise ValueError(f"expression_dir = {expression_dir!r}: a {cfg.task} stage, expected "
                     "gohd_exp_eye")
  with cfg.unlocked():
    cfg.input.data_dir = data_dir
  task = exp_eye.get_task(cfg, mesh=None)
  return (gohd_lib.MotionStage(cfg, params, infer=task.infer, frozen=task.frozen),
          expression_lib.basis_for_config(cfg))


def load_motion_models(pose_dir: str, gaze_dir: str = "", expression_dir: str = "",
                       data_dir: str = "") -> gohd_lib.MotionModels:
  """Loads trained GoHD motion stages from their `<workdir>/params` folders.

  Args:
    pose_dir / gaze_dir: gohd_pose / gohd_gaze params (gaze optional).
    expression_dir: gohd_exp_eye params (optional; its config names the stage-1 params).
    data_dir: the shards the stages were trained on (dataset_info.json statistics and the
      expression basis); default: the pose stage's `config.input.data_dir`.

  Raises:
    ValueError: unreadable stages, a stage of the wrong kind, or no dataset_info.json / basis.
  """
  pose = _diffusion_stage(pose_dir, "pose_dir", "pose")
  gaze = _diffusion_stage(gaze_dir, "gaze_dir", "gaze") if gaze_dir else None
  data_dir = data_dir or pose.config.input.get("data_dir", "")
  info = input_pipeline.load_dataset_info(data_dir)
  expr, basis = expression_stage(expression_dir, data_dir) if expression_dir else (None, None)
  arr = lambda k: np.asarray(info[k], np.float32)
  return gohd_lib.MotionModels(pose, gaze, expr, arr("pose_mean"), arr("pose_std"),
                               arr("gaze_mean"), arr("gaze_std"), basis)
