"""Stages gohd_pose / gohd_gaze (jaxtalk.tasks.gohd.motion_diffusion, GoHD section 3.1)."""

import json
import os

import jax
import numpy as np
import pytest

from configs.gohd import gaze as gaze_config
from configs.gohd import pose as pose_config
from jaxtalk import tasks
from jaxtalk import train
from jaxtalk.core import checkpointing
from jaxtalk.core import input_pipeline
from jaxtalk.core import sharding
from jaxtalk.tasks.gohd import motion_diffusion


def _mesh():
  return sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])


def test_paper_config_is_the_release():
  c = pose_config.get_config("size=paper")
  assert (c.model.num_layers, c.model.channels, c.model.dilation_cycle) == (20, 256, 10)
  d = c.diffusion
  assert (d.schedule, d.num_steps, d.beta_start, d.beta_end, d.gamma) == (
      "linear", 150, 1e-4, 0.05, 0.4)
  assert (c.optax.name, c.optax.lr) == ("adam", 6e-4)
  g = gaze_config.get_config("size=paper")
  assert g.model.target == "gaze" and g.input["keys"] == ("gaze", "mel", "mask")
  with pytest.raises(ValueError, match="target='lips'"):
    pose_config.get_config("target=lips")


def test_residual_is_relative_to_the_first_frame():
  """Eq. 1: x_0 = p_{1:T} − p_0, zero at the first frame and at padded frames."""
  pose = np.cumsum(np.random.default_rng(0).normal(size=(2, 5, 6)), axis=1).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], bool)
  x0, p0, _, _ = motion_diffusion.residual_motion({"pose": pose, "mask": mask}, "pose")
  np.testing.assert_allclose(np.asarray(p0), pose[:, 0])
  np.testing.assert_allclose(np.asarray(x0[0]), pose[0] - pose[0, :1], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(x0[:, 0]), 0.0)
  np.testing.assert_array_equal(np.asarray(x0[1, 3:]), 0.0)


@pytest.mark.parametrize("target", ["pose", "gaze"])
def test_stage_trains_evaluates_and_infers_on_synthetic_batches(target, tmp_path):
  c = pose_config.get_config(f"size=tiny,synthetic=true,target={target}")
  c.total_steps, c.eval_every, c.log_every, c.checkpoint_every = 10, 10, 5, 10
  c.input.window = 16
  c.batch_size = 8
  c.model.update(num_layers=1, channels=16, audio_width=16)  # a 1-layer net: seconds, not minutes
  c.diffusion.sample_steps = 4
  res = train.train_and_evaluate(c, str(tmp_path / "run"), mesh=_mesh())
  hist = res["history"]
  losses = [h["train/loss_eps"] for h in hist if "train/loss_eps" in h]
  assert losses and np.isfinite(losses).all()
  ev = [h for h in hist if "eval/var_ratio_mean" in h][-1]
  assert np.isfinite([ev["eval/loss_eps"], ev["eval/rmse_sample"]]).all()
  saved = json.load(open(tmp_path / "run" / "config.json"))
  assert saved["task"] == "jaxtalk.tasks.gohd.motion_diffusion" and saved["model"]["target"] == target
  task = tasks.get_task(c, mesh=None)
  params = checkpointing.load_params(str(tmp_path / "run" / "params"))
  ex = task.infer_example()
  out = jax.jit(task.infer)(params, {}, dict(ex, noise=np.random.default_rng(0).normal(
      size=ex["noise"].shape).astype(np.float32)))
  dim = motion_diffusion.TARGET_DIMS[target]
  assert out[target].shape == (1, 16, dim) and np.isfinite(np.asarray(out[target])).all()


@pytest.mark.needs_data
@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="issue 16: the tiny pose samples over-spread the rotations "
                   "8-50x (benchmarks/results/gohd_pose_tiny_learning.json); the bar is kept")
@pytest.mark.parametrize("target", ["pose", "gaze"])
def test_tiny_motion_diffusion_learns_on_real_clips(real_shards, tmp_path, target):
  """Tiny stage on the real shards: the held-out ε-loss falls below the untrained network's
  (1.0: its zero head predicts ε = 0) and the guided samples' per-dimension variance is within
  0.3x-3x of the real windows' (GoHD's learning bar of issue 16)."""
  c = pose_config.get_config(f"size=tiny,data_dir={real_shards},target={target}")
  c.eval_batches = 2
  res = train.train_and_evaluate(c, str(tmp_path / target), mesh=_mesh())
  ev = [h for h in res["history"] if "eval/loss_eps" in h][-1]
  print(target, {k: round(float(v), 4) for k, v in ev.items() if k.startswith("eval/")})
  assert ev["eval/loss_eps"] < 0.8, ev
  assert 0.3 < ev["eval/var_ratio_min"] and ev["eval/var_ratio_max"] < 3.0, ev
  info = input_pipeline.load_dataset_info(str(real_shards))
  assert os.path.isdir(tmp_path / target / "params") and info["shards"]
