"""Tiny GoHD stage workdirs for the gohd method's tests, on synthetic batches: the animator
trained 2 steps, the motion stages (gohd_pose, gohd_gaze, gohd_exp_lip, gohd_exp_eye) at their
initialisation (the mechanics of export, load, generate and the controls; what the trained
stages learn is each stage's own test)."""

import pathlib

import flax.linen as nn
import jax

from jaxtalk import tasks
from jaxtalk import train
from jaxtalk.core import checkpointing
from jaxtalk.core import input_pipeline
from jaxtalk.core import sharding
from jaxtalk.tasks.gohd import animator as anim_task

ANIMATOR_SIZE = dict(image_size=32, latent_dim=32, num_directions=8, radius=2,
                     driving_channels=16)


def _mesh():
  return sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])


def animator_config():
  from configs.gohd import animator  # pylint: disable=g-import-not-at-top
  c = animator.get_config("size=tiny,synthetic=true")
  c.total_steps, c.eval_every, c.log_every, c.checkpoint_every = 2, 0, 2, 2
  c.batch_size, c.render_frames, c.progress = 2, 2, False
  c.model.update(**ANIMATOR_SIZE)
  c.input.resolution = 32
  c.input.window = anim_task.window_length(c.model, c.render_frames)
  c.loss.perc_scales = (1.0,)
  return c


def init_stage(config, workdir: pathlib.Path) -> pathlib.Path:
  """`workdir/config.json` + `workdir/params` of the stage's initialisation on one synthetic
  batch (what train.py writes before any step); returns `workdir/params`."""
  mesh = _mesh()
  task = tasks.get_task(config, mesh=mesh)
  tasks.resolve_config(config)
  batch = input_pipeline.to_global(next(input_pipeline.create_iterator(config, mesh=mesh)), mesh)
  params = nn.unbox(task.init(jax.random.PRNGKey(0), batch))
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  checkpointing.save_params(workdir / "params", params)
  return workdir / "params"


def _motion_configs(lip_params=None):
  from configs.gohd import exp_eye, exp_lip, gaze, pose  # pylint: disable=g-import-not-at-top
  if lip_params is not None:
    c = exp_eye.get_config(f"size=tiny,synthetic=true,exp_lip={lip_params}")
    c.model.update(omega_dim=8, noise_dim=4, embed_hidden=(8,), out_hidden=(8,))
    c.disc.update(width=8, channels=(8, 8))
    c.input.window = c.batch_size = 16
    return c
  out = {}
  for name, module in (("gohd_pose", pose), ("gohd_gaze", gaze)):
    c = module.get_config("size=tiny,synthetic=true")
    c.model.update(channels=8, num_layers=2, audio_width=8)
    c.input.window, c.sampling.overlap = 16, 4
    c.diffusion.update(num_steps=10, sample_steps=3)
    out[name] = c
  c = exp_lip.get_config("size=tiny,synthetic=true")
  c.model.update(hidden=(16,), audio_width=8)
  c.input.window = 16
  out["gohd_exp_lip"] = c
  return out


def make_runs(root: pathlib.Path, motion: bool = True) -> pathlib.Path:
  """`root/<stage>/` workdirs of gohd_animator (trained 2 steps) and, with `motion`, gohd_pose,
  gohd_gaze and gohd_exp_eye (initialised; gohd_exp_lip outside `root`, found through
  gohd_exp_eye's init_from, as a user's layout may have it). Returns `root`."""
  root.mkdir(parents=True, exist_ok=True)
  train.train_and_evaluate(animator_config(), str(root / "gohd_animator"), mesh=_mesh())
  if motion:
    configs = _motion_configs()
    lip = init_stage(configs.pop("gohd_exp_lip"), root.parent / (root.name + "_lip"))
    for name, c in configs.items():
      init_stage(c, root / name)
    init_stage(_motion_configs(lip), root / "gohd_exp_eye")
  return root
