"""Learning check of the tiny pctalk_renderer stage on real shards (issue bars: held-out SSIM and
mouth-region L1 vs. repeating the source frame; the motion extractor's pose correlates with the
stored pose, > 0.7 per angle; video driving: the pose measured back on the output follows the
driving video, yaw correlation > 0.6; after the stitching stage, a lip-open ratio of 0 vs 0.8
changes the mouth opening FaceMesh measures on the output in that direction on every held-out
clip).

  python benchmarks/pctalk_renderer_learning.py --data_dir /tmp/real64 --seeds 0,1 \
      --steps 900 --out benchmarks/results/pctalk_renderer_tiny_learning.json \
      [--workdir_root /tmp/pctalk] [--skip_training] [--stitching_steps 400]

Per seed it trains configs/pctalk/renderer.py:size=tiny (config.seed = input.shuffle_seed =
seed, eval_fraction 0.4: the held-out clips of the GoHD animator's check) in
`<workdir_root>/s<seed>` (resumed when a checkpoint is there), then records the eval history
(held-out SSIM / L1 / mouth L1 of the renderer and of repeating the source,
`evaluators.image.frame_metrics`), `tasks.pctalk.checks.pose_readback` (motion extractor vs
stored pose on every held-out frame) and `tasks.pctalk.checks.video_drive` (FaceMesh head pose of
the self-driven output vs the driving frames' stored pose, with the same measurement on the real
frames as its ceiling). Then it trains configs/pctalk/stitching.py:size=tiny on that renderer in
`<workdir_root>/s<seed>_stitching` (skipped with --stitching_steps 0) and records its eval
(retargeting ratio errors vs no retargeting, outside-face L1 with / without stitching) and
`tasks.pctalk.checks.lip_control`. Runs are appended to `--out` (`learning_runs.record`).
"""

import argparse
import json
import os
import time

import learning_runs  # benchmarks/learning_runs.py (scripts run from benchmarks/)


def _config(data_dir, seed, steps):
  from configs.pctalk import renderer as cfg  # pylint: disable=g-import-not-at-top
  c = cfg.get_config(f"size=tiny,data_dir={data_dir},eval_fraction=0.4")
  c.seed, c.input.shuffle_seed = seed, seed
  c.total_steps = steps
  c.eval_every, c.checkpoint_every = max(steps // 3, 1), max(steps // 3, 1)
  return c


def _evals(wd: str) -> list[dict]:
  hist = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  return [{k[5:]: round(float(v), 4) for k, v in h.items()
           if k.startswith("eval/") and not k.startswith("eval/image")} | {"step": h["step"]}
          for h in hist if any(k.startswith("eval/loss") for k in h)]


def stitching(a, seed: int, renderer_wd: str, c, params, clips, det) -> dict:
  """Trains the stitching stage on the run's renderer; its eval and the lip control."""
  from configs.pctalk import stitching as cfg  # pylint: disable=g-import-not-at-top
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing, sharding  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.pctalk import checks  # pylint: disable=g-import-not-at-top
  sc = cfg.get_config(f"size=tiny,data_dir={a.data_dir},eval_fraction=0.4,"
                      f"renderer={os.path.join(renderer_wd, 'params')}")
  sc.seed, sc.input.shuffle_seed = seed, seed
  sc.total_steps = a.stitching_steps
  sc.eval_every = sc.checkpoint_every = max(a.stitching_steps // 2, 1)
  wd = renderer_wd + "_stitching"
  if not os.path.isdir(os.path.join(wd, "params")):
    train.train_and_evaluate(sc, wd, mesh=sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1)))
  sp = checkpointing.load_params(os.path.join(wd, "params"))
  out = {"workdir": wd, "steps": a.stitching_steps, "evals": _evals(wd)}
  out["lip_control"] = checks.lip_control(c, params, sp, clips, det)
  return out


def run(a, seed: int) -> dict:
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing, sharding  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import landmarks  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.pctalk import checks  # pylint: disable=g-import-not-at-top
  c = _config(a.data_dir, seed, a.steps)
  wd = os.path.join(a.workdir_root, f"s{seed}")
  t0 = time.time()
  if not a.skip_training:
    train.train_and_evaluate(c, wd, mesh=sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1)))
  evals = _evals(wd)
  last = evals[-1]
  out = {"seed": seed, "steps": a.steps, "workdir": wd, "wall_s": round(time.time() - t0),
         "evals": evals,
         "beats_source_ssim": bool(last["ssim"] > last["ssim_source"]),
         "beats_source_mouth_l1": bool(last["mouth_l1"] < last["mouth_l1_source"])}
  params = checkpointing.load_params(os.path.join(wd, "params"))
  clips = checks.held_out_clips(c)
  out["held_out"] = [x["clip_id"] for x in clips]
  out["pose_readback"] = checks.pose_readback(c, params, clips)
  with landmarks.MouthLandmarks(min_size=256) as det:
    out["video_drive"] = checks.video_drive(c, params, clips, det)
    if a.stitching_steps > 0:
      out["stitching"] = stitching(a, seed, wd, c, params, clips, det)
      out["lip_control_every_clip"] = out["stitching"]["lip_control"]["monotone_every_clip"]
  pr, vd = out["pose_readback"], out["video_drive"]
  out["pose_readback_above_0.7"] = all((pr[f"corr_{n}"] or 0) > 0.7 for n in checks.ANGLES)
  out["drive_yaw_above_0.6"] = bool((vd["corr_yaw"] or 0) > 0.6)
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--data_dir", required=True)
  p.add_argument("--seeds", default="0")
  p.add_argument("--steps", type=int, default=900)
  p.add_argument("--workdir_root", default="runs/pctalk_renderer_learning")
  p.add_argument("--skip_training", action="store_true",
                 help="only measure the renderer runs already in --workdir_root (a stitching "
                 "run is trained when its params are not there)")
  p.add_argument("--stitching_steps", type=int, default=400,
                 help="steps of the stitching stage after the renderer (0: skip it)")
  p.add_argument("--out", default="benchmarks/results/pctalk_renderer_tiny_learning.json")
  a = p.parse_args()
  learning_runs.record(
      a.out, key=lambda r: r["seed"],
      what="tiny pctalk_renderer (configs/pctalk/renderer.py size=tiny, 64 px, no GAN) on "
      "preprocessed ../shared/data, eval_fraction 0.4",
      bar="held-out ssim > ssim_source and mouth_l1 < mouth_l1_source (repeat the source frame); "
      "motion-extractor pose vs stored: correlation > 0.7 for yaw, pitch, roll; video driving: "
      "FaceMesh yaw of the output vs the driving frames' stored yaw: correlation > 0.6; lip "
      "retargeting: FaceMesh lip-open ratio of the output larger at ratio 0.8 than at 0 on every "
      "held-out clip",
      runs=(run(a, int(s)) for s in a.seeds.split(",") if s))


if __name__ == "__main__":
  main()
