"""Stage gohd_face_analysis (substitutes for GoHD's Φ_exp, Φ_gaze, Φ_pars; supplementary B.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.gohd import face_analysis as fa_config
from jaxtalk import train
from jaxtalk.core import sharding
from jaxtalk.features import regions
from jaxtalk.pretrained import face_analysis as fa_lib
from jaxtalk.tasks.gohd import face_analysis as fa_task


def _mesh():
  return sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])


def test_mean_iou_hand_computed():
  """Two frames of 2x2 pixels: region 0 IoU 1/3, region 1 IoU 5/7, region 2 absent (not
  counted); with the second frame masked out 1/2 and 2/3."""
  labels = jnp.array([[[0, 0], [1, 1]], [[1, 1], [1, 1]]])
  pred = jnp.array([[[0, 1], [1, 1]], [[1, 1], [1, 0]]])
  got = float(fa_task.mean_iou(pred, labels, jnp.ones(2), num_regions=3))
  assert got == pytest.approx((1 / 3 + 5 / 7) / 2)
  masked = float(fa_task.mean_iou(pred, labels, jnp.array([1.0, 0.0]), num_regions=3))
  assert masked == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_tiny_stage_trains_on_synthetic_batches_and_loads_as_face_analysis(tmp_path):
  """A few steps: losses finite, every eval metric finite, and the workdir serves the three
  networks through `load_face_analysis` (shapes, units as the batch's)."""
  c = fa_config.get_config("size=tiny,synthetic=true")
  c.total_steps, c.eval_every, c.log_every, c.checkpoint_every = 4, 4, 2, 4
  c.batch_size, c.eval_batches, c.stats_batches = 4, 1, 1
  c.input.resolution = 32
  c.model.update(widths=(8, 16), head_width=16, head_reduce=4)
  res = train.train_and_evaluate(c, str(tmp_path / "fa"), mesh=_mesh())
  train_logs = [h for h in res["history"] if "train/loss" in h]
  assert np.isfinite([h["train/loss_pars"] + h["train/loss_exp"] for h in train_logs]).all()
  ev = [h for h in res["history"] if "eval/pars_miou" in h][-1]
  keys = ("exp_mse", "exp_mse_mean", "gaze_mse", "gaze_mse_mean", "pars_miou",
          "pars_miou_prior", "pars_acc")
  assert np.isfinite([ev[f"eval/{k}"] for k in keys]).all(), ev
  fa = fa_lib.load_face_analysis({"face_analysis": str(tmp_path / "fa" / "params")})
  x = jnp.zeros([3, 32, 32, 3])
  assert fa.expression(fa.params, x).shape == (3, 64)
  assert fa.gaze(fa.params, x).shape == (3, 2)
  assert fa.parsing(fa.params, x).shape == (3, 32, 32, regions.NUM_REGIONS)


def test_baseline_stats_of_synthetic_stream():
  """The majority mask of the synthetic faces has skin at the centre and background at the
  corner; variances positive."""
  c = fa_config.get_config("size=tiny,synthetic=true")
  c.batch_size = 4
  stats = fa_task.baseline_stats(c, 2)
  assert stats["prior"].shape == (64, 64) and stats["prior"][0, 0] == 0
  assert stats["prior"][32, 32] == 1
  assert stats["exp_var"] > 0 and stats["gaze_var"] > 0 and stats["exp_mean"].shape == (64,)


def _ratios(ev):
  return {"exp": ev["eval/exp_mse"] / ev["eval/exp_mse_mean"],
          "gaze": ev["eval/gaze_mse"] / ev["eval/gaze_mse_mean"],
          "pars_miou_gain": ev["eval/pars_miou"] - ev["eval/pars_miou_prior"]}


@pytest.mark.needs_data
@pytest.mark.slow
def test_tiny_stage_beats_predicting_the_training_mean_on_held_out_frames(expression_shards,
                                                                          tmp_path):
  """Every head of the tiny stage (600 steps, 64 px) beats the training statistics on frames it
  never trained on (the last 20% of every clip, `eval_tail=0.2`): expression and gaze MSE below
  that of the training mean, parsing mIoU above that of the training majority mask
  (benchmarks/results/gohd_face_analysis_tiny_learning.json: 3 seeds)."""
  c = fa_config.get_config(f"size=tiny,data_dir={expression_shards},eval_tail=0.2")
  res = train.train_and_evaluate(c, str(tmp_path / "fa"), mesh=_mesh())
  ev = [h for h in res["history"] if "eval/pars_miou" in h][-1]
  r = _ratios(ev)
  print({k: round(float(v), 4) for k, v in ev.items() if k.startswith("eval/")}, r)
  assert r["exp"] < 1.0 and r["gaze"] < 1.0 and r["pars_miou_gain"] > 0.0, (r, ev)
