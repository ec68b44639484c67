"""Learning check of the tiny gohd_face_analysis stage over seeds (the slow test's bar).

  python benchmarks/gohd_face_analysis_learning.py --data_dir /tmp/real64 --seeds 0,1,2 \
      --out benchmarks/results/gohd_face_analysis_tiny_learning.json [--eval_tail 0.2]

Trains configs/gohd/face_analysis.py:size=tiny (config.seed = input.shuffle_seed = seed) on
preprocessed shards with expression coefficients and records, per seed, the final eval's
expression / gaze MSE against the training mean's and the parsing mIoU against the training
majority mask's. Runs are appended to `--out` (existing entries of other seeds are kept).
"""

import argparse
import tempfile
import time

import learning_runs  # benchmarks/learning_runs.py (scripts run from benchmarks/)


def run(data_dir: str, seed: int, eval_tail: float) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from configs.gohd import face_analysis as fa_config  # pylint: disable=g-import-not-at-top
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import sharding  # pylint: disable=g-import-not-at-top
  c = fa_config.get_config(f"size=tiny,data_dir={data_dir},eval_tail={eval_tail}")
  c.seed, c.input.shuffle_seed = seed, seed
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  t0 = time.time()
  with tempfile.TemporaryDirectory() as wd:
    res = train.train_and_evaluate(c, wd, mesh=mesh)
  ev = [h for h in res["history"] if "eval/pars_miou" in h][-1]
  out = {"seed": seed, "eval_tail": eval_tail, "wall_s": round(time.time() - t0)}
  out.update({k[5:]: round(float(v), 4) for k, v in ev.items() if k.startswith("eval/")})
  out["exp_ratio_of_means"] = round(out["exp_mse"] / out["exp_mse_mean"], 4)
  out["gaze_ratio_of_means"] = round(out["gaze_mse"] / out["gaze_mse_mean"], 4)
  out["pars_miou_gain"] = round(out["pars_miou"] - out["pars_miou_prior"], 4)
  out["beats_mean"] = bool(out["exp_ratio_of_means"] < 1 and out["gaze_ratio_of_means"] < 1
                           and out["pars_miou_gain"] > 0)
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--data_dir", required=True)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--eval_tail", type=float, default=0.2)
  p.add_argument("--out", default="benchmarks/results/gohd_face_analysis_tiny_learning.json")
  a = p.parse_args()
  learning_runs.record(
      a.out, key=lambda r: (r["seed"], r["eval_tail"]),
      what="tiny gohd_face_analysis (configs/gohd/face_analysis.py size=tiny, 600 steps, 64 px) "
      "on preprocessed ../shared/data with `jaxtalk expression-basis`; eval = 4 batches of "
      "held-out frames",
      bar="exp_mse < exp_mse_mean and gaze_mse < gaze_mse_mean (training means), pars_miou > "
      "pars_miou_prior (training per-pixel majority mask)",
      runs=(run(a.data_dir, int(s), a.eval_tail) for s in a.seeds.split(",") if s))

if __name__ == "__main__":
  main()
