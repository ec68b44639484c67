"""`config.evals.reenactment` (evaluators.reenactment.HeldOutReenactment): held-out clips
rendered from their first frame through the method's `stage_model`, as generation renders."""

import numpy as np
import pytest

from configs.posetalk import coarse as coarse_cfg
from jaxtalk import motion as motion_lib
from jaxtalk.evaluators import common as evals_lib
from jaxtalk.evaluators import reenactment

HOLDOUT = ("hdtf_WRA_RoyBlunt_000_c001",)


def test_generator_configs_declare_it_and_it_is_inactive_without_shards():
  c = coarse_cfg.get_config("size=tiny,synthetic=true")
  (name, ev), = evals_lib.from_config(c)
  assert name == "reenactment" and isinstance(ev, reenactment.HeldOutReenactment)
  assert ev(None, None, None) == {}


@pytest.mark.needs_data
def test_renders_held_out_clips_with_normalised_motion(real_shards):
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  c = coarse_cfg.get_config(f"size=tiny,data_dir={real_shards}")
  with c.unlocked():
    c.input.holdout = HOLDOUT
  ev = reenactment.HeldOutReenactment(c, max_clips=1, seconds=1.0)
  (clip,) = ev.clips
  assert clip["clip_id"] == HOLDOUT[0] and clip["frames"].shape == (25, 64, 64, 3)
  info = input_pipeline.load_dataset_info(str(real_shards))
  want_pose = motion_lib.normalize(clip["pose"], info["pose_mean"], info["pose_std"])
  seen = []

  def source_renderer(params, frozen, inputs):
    """Returns the source frame at every frame, and records the normalised poses it got."""
    assert params == "p" and frozen == "f"
    assert inputs["pose"].shape == (1, c.input.window, 6)
    np.testing.assert_allclose(inputs["source"][0], clip["frames"][0])
    np.testing.assert_allclose(inputs["source_pose"][0], want_pose[0], rtol=1e-5, atol=1e-5)
    seen.append(np.asarray(inputs["pose"][0]))
    return {"frames": np.repeat(inputs["source"][:, None], c.input.window, axis=1)}

  out = ev(source_renderer, "p", "f")
  # Rendering the source reproduces the repeat-the-source baseline exactly.
  for k in ev.METRICS:
    np.testing.assert_allclose(out[k], out[f"{k}_source"], rtol=1e-5, err_msg=k)
  assert 0.3 < out["ssim_source"] < 1.0
  # Every frame's pose reached the renderer, normalised with the shards' statistics (windows
  # overlap and repeat the edge frames, so compare as sets of rows).
  seen = np.concatenate(seen)
  dist = np.abs(seen[:, None] - want_pose[None]).max(-1)
  assert dist.min(1).max() < 1e-4 and dist.min(0).max() < 1e-4

  # A renderer that returns grey frames scores below the source on every metric.
  grey = ev(lambda p, f, x: {"frames": np.zeros_like(
      np.repeat(x["source"][:, None], c.input.window, axis=1))}, "p", "f")
  assert grey["ssim"] < out["ssim_source"] and grey["psnr"] < out["psnr_source"]
  assert grey["mouth_l1"] > out["mouth_l1_source"]
