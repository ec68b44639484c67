"""Learning check of the tiny gohd_animator stage on real shards (issue bar: held-out SSIM and
mouth-region L1 vs. repeating the source frame; gaze control measured by FaceMesh).

  python benchmarks/gohd_animator_learning.py --data_dir /tmp/real64 \
      --face_analysis runs/gohd_face_analysis/params --seeds 0 --steps 3600 \
      --out benchmarks/results/gohd_animator_tiny_learning.json [--workdir_root /tmp/anim]

Per seed it trains configs/gohd/animator.py:size=tiny (config.seed = input.shuffle_seed = seed,
eval_fraction 0.4, the GAN off: `loss.gan_start` beyond the run) in `<workdir_root>/s<seed>`
(resumed when a checkpoint is there), then records

* the eval history: held-out SSIM / L1 / mouth L1 of the animator and of repeating the source
  (`evaluators.image.frame_metrics`) at every eval;
* gaze control: for every held-out clip, one eval batch rendered twice with the requested gaze
  yaw set to +0.3 and -0.3 rad (pitch as in the clip), the frames upsampled to 256 px and measured
  by FaceMesh (`evaluators.landmarks.measured_gaze`: `features.face.gaze`, as preprocessing
  measures gaze); the clip passes when the mean measured yaw of the +0.3 renders exceeds that of the -0.3
  renders. Frames where FaceMesh finds no face are counted and left out (a clip with no face
  found in either render fails; "yaw" is then null).

Runs are appended to `--out` (entries of other seeds are kept).
"""

import argparse
import json
import os
import time

import learning_runs  # benchmarks/learning_runs.py (scripts run from benchmarks/)



def _config(data_dir, face_analysis, seed, steps, holdout=()):
  from configs.gohd import animator as anim_config  # pylint: disable=g-import-not-at-top
  c = anim_config.get_config(f"size=tiny,data_dir={data_dir},face_analysis={face_analysis},"
                             "eval_fraction=0.4")
  c.seed, c.input.shuffle_seed = seed, seed
  c.total_steps, c.loss.gan_start = steps, 10 * steps
  c.eval_every, c.checkpoint_every = max(steps // 6, 1), max(steps // 6, 1)
  if holdout:
    c.input.holdout = tuple(holdout)
  return c


def run(a, seed: int) -> dict:
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import sharding  # pylint: disable=g-import-not-at-top
  c = _config(a.data_dir, a.face_analysis, seed, a.steps)
  wd = os.path.join(a.workdir_root, f"s{seed}")
  t0 = time.time()
  if not a.skip_training:
    mesh = sharding.make_mesh(dict(data=-1, fsdp=1, tensor=1))
    train.train_and_evaluate(c, wd, mesh=mesh)
  del jax
  hist = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  evals = [{k[5:]: round(float(v), 4) for k, v in h.items()
            if k.startswith("eval/") and not k.startswith("eval/image")} | {"step": h["step"]}
           for h in hist if "eval/ssim" in h]
  last = evals[-1]
  ckpts = os.path.join(wd, "checkpoints")
  trained = max((int(d) for d in os.listdir(ckpts) if d.isdigit()), default=0)
  out = {"seed": seed, "steps": a.steps, "trained_steps": trained, "workdir": wd, "wall_s": round(time.time() - t0),
         "evals": evals,
         "beats_source_ssim": bool(last["ssim"] > last["ssim_source"]),
         "beats_source_mouth_l1": bool(last["mouth_l1"] < last["mouth_l1_source"])}
  params = checkpointing.load_params(os.path.join(wd, "params"))
  from jaxtalk.tasks.gohd import animator as stage  # pylint: disable=g-import-not-at-top
  out["gaze_control"] = stage.gaze_control(c, params)
  out["gaze_right_direction_every_clip"] = all(r["right_direction"] for r in out["gaze_control"])
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--data_dir", required=True)
  p.add_argument("--face_analysis", required=True, help="gohd_face_analysis <workdir>/params")
  p.add_argument("--seeds", default="0")
  p.add_argument("--steps", type=int, default=3600)
  p.add_argument("--workdir_root", default="runs/gohd_animator_learning")
  p.add_argument("--skip_training", action="store_true",
                 help="only measure the runs already in --workdir_root")
  p.add_argument("--out", default="benchmarks/results/gohd_animator_tiny_learning.json")
  a = p.parse_args()
  learning_runs.record(
      a.out, key=lambda r: r["seed"],
      what="tiny gohd_animator (configs/gohd/animator.py size=tiny, 64 px, GAN off) on "
      "preprocessed ../shared/data with `jaxtalk expression-basis`, eval_fraction 0.4; Φ = "
      "jaxtalk's tiny gohd_face_analysis substitute",
      bar="held-out ssim > ssim_source and mouth_l1 < mouth_l1_source (repeat the source frame); "
      "FaceMesh yaw of +0.3 rad renders > that of -0.3 rad on every held-out clip",
      runs=(run(a, int(s)) for s in a.seeds.split(",") if s))

if __name__ == "__main__":
  main()
