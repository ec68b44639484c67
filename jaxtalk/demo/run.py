"""`jaxtalk demo`: the whole system on one machine, end to end, within a time budget.

  jaxtalk demo --workdir runs/demo [--videos MANIFEST_OR_DIR] [--minutes 20] [--resolution 64]
               [--seed 0] [--methods posetalk,gohd,pctalk]

Steps (re-running the same command skips finished clips, preprocessing and trained stages, and
resumes an interrupted stage from its checkpoint; export, generation and evaluation run again):
  1. clips: with no `--videos`, a procedurally rendered talking-face set that needs no download
     (`jaxtalk.demo.data`: the scikit-image astronaut photo, synthetic speech driving the lips,
     head motion following each clip's text); otherwise the given manifest or folder of videos;
  2. preprocess them with the Beam pipeline (DirectRunner) into ArrayRecord shards;
  3. train every stage of each method at `size=tiny` (PoseTalk: syncnet, pose_vae, pld, coarse,
     refine, enhancer; GoHD, after `jaxtalk expression-basis` on the shards: gohd_pose, gohd_gaze,
     gohd_exp_lip, gohd_exp_eye, gohd_face_analysis, gohd_animator; PC-Talk: pctalk_renderer,
     then pctalk_stitching with that renderer frozen), each given a share of the time budget,
     later stages loading the frozen params of earlier ones (GoHD's stage 1 uses PoseTalk's
     lip-sync expert when both run); `--methods` picks the methods (default: PoseTalk, and GoHD
     too when the budget is at least GOHD_MIN_MINUTES; PC-Talk only when named);
  4. export each method's generation stages into one folder (`jaxtalk export`);
  5. generate a talking video for a real portrait, a speech track and a text prompt (PC-Talk:
     driven by a held-out clip's video, and the "nod" template);
  6. evaluate on held-out clips (self-reenactment image/sync metrics; motion metrics);
  7. write `report.md` (metrics table, video paths, a contact sheet PNG of generated vs real
     frames, and what the tiny models can and cannot do).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import sys
import time
from typing import Optional

from jaxtalk.core import logging_utils

# PoseTalk's stages in training order, with their share of its training-time budget.
STAGES = (
    ("syncnet", 0.14),
    ("pose_vae", 0.10),
    ("pld", 0.16),
    ("coarse", 0.22),
    ("refine", 0.22),
    ("enhancer", 0.16),
)
# GoHD's, the same way (the animator, the biggest network, gets the largest share).
GOHD_STAGES = (
    ("gohd_pose", 0.13),
    ("gohd_gaze", 0.10),
    ("gohd_exp_lip", 0.10),
    ("gohd_exp_eye", 0.12),
    ("gohd_face_analysis", 0.10),
    ("gohd_animator", 0.45),
)
# PC-Talk's: the renderer (F, M, W, G) holds nearly all of its parameters; the stitching and
# retargeting MLPs are small and train with the renderer frozen.
PCTALK_STAGES = (
    ("pctalk_renderer", 0.85),
    ("pctalk_stitching", 0.15),
)
# The methods the demo can train.
METHOD_STAGES = {"posetalk": STAGES, "gohd": GOHD_STAGES, "pctalk": PCTALK_STAGES}
METHOD = "posetalk"  # the method the demo always trains and exports first (jaxtalk.methods)
# Of the training budget, normalised over the methods that run (two: half each).
METHOD_SHARE = {"posetalk": 0.5, "gohd": 0.5, "pctalk": 0.5}
# Default --methods adds GoHD from this budget on. The default 20 minutes keep PoseTalk's whole
# budget (benchmarks/results/demo_seeds.json was measured with it): GoHD's tiny animator does not
# beat the still source even after 2400 steps (benchmarks/results/gohd_animator_tiny_learning.json).
GOHD_MIN_MINUTES = 30.0
# init_from keys that name another stage than themselves.
INIT_FROM_STAGE = {"exp_lip": "gohd_exp_lip", "face_analysis": "gohd_face_analysis",
                   "renderer": "pctalk_renderer"}
# Stages whose network size is model.image_size (set to the demo's --resolution, as the input
# crops; pctalk_stitching reads its renderer's size from that renderer's config.json).
IMAGE_SIZE_STAGES = ("gohd_animator", "pctalk_renderer")


def config_modules(names=tuple(METHOD_STAGES)) -> dict[str, str]:
  """`{stage: config module}` of the demo's methods `names`, in training order."""
  from jaxtalk import methods  # pylint: disable=g-import-not-at-top
  out = {}
  for name in names:
    out.update(methods.get(name).train_stages)
  return out


def demo_methods(spec: Optional[str], minutes: float) -> tuple[str, ...]:
  """The methods to train, PoseTalk first: `spec` ("posetalk,gohd,pctalk"), or by default
  PoseTalk, plus GoHD when `minutes` >= GOHD_MIN_MINUTES (PC-Talk only when `spec` names it).

  Raises:
    ValueError: an empty list, a method the demo cannot train, or a list without PoseTalk (the
      report's baselines and lip-sync expert come from its stages).
  """
  if not spec:
    return (METHOD, "gohd") if minutes >= GOHD_MIN_MINUTES else (METHOD,)
  names = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
  bad = [n for n in names if n not in METHOD_STAGES]
  if bad or not names:
    raise ValueError(f"--methods {spec!r}: expected a comma-separated list of "
                     f"{', '.join(METHOD_STAGES)}")
  if METHOD not in names:
    raise ValueError(f"--methods {spec!r}: the report is built on {METHOD}'s bundle (its "
                     f"baselines and sync expert); give --methods {METHOD},{','.join(names)}")
  return (METHOD,) + tuple(n for n in names if n != METHOD)


def planned_stages(names) -> tuple[tuple[str, float], ...]:
  """`(stage, share of the whole training budget)` of the methods `names`, in training order."""
  total = sum(METHOD_SHARE[n] for n in names)
  return tuple((stage, share * METHOD_SHARE[n] / total) for n in names
               for stage, share in METHOD_STAGES[n])
RESERVED_SECONDS = 240  # export, generation, evaluation and the report.
# The generator stages learn more per second of CPU with small batches: batch 2 (per device) is
# what tests/integration/test_generator_stages.py measured learning with (tiny configs use 8).
GENERATOR_STAGES = ("coarse", "refine", "enhancer")
# A time-budgeted stage stops wherever its budget ends, often mid-schedule at a high learning
# rate, where single-step params swing from one eval to the next; the generator stages export
# an exponential moving average of their params instead (config.ema_decay; ~50-step horizon).
GENERATOR_EMA_DECAY = 0.98
# With a few training clips the generator stages overfit (RefineNet's held-out loss rose after
# ~150 steps on the built-in clips): they train on the first 80% of each training clip, evaluate
# on the last 20% (input.eval_tail) and keep the params of their best eval, the untrained stage
# included (config.select_best; RefineNet and the Enhancer start as the identity, so they never
# make the validation frames worse than their input). The test clips stay out of both.
GENERATOR_EVAL_TAIL = 0.2
GENERATOR_SELECT_BEST = "eval/loss"
GENERATOR_EVAL_EVERY = 50


def _log(msg: str, *args) -> None:
  logging_utils.log_info("demo: " + msg, *args)


def stage_config(stage: str, data_dir: str, resolution: int, time_budget_s: float,
                 trained: dict[str, str], holdout: tuple[str, ...] = (), seed: int = 0):
  """The tiny config of `stage`, wired to the demo's shards and earlier stages' params; `seed`
  sets the stage's initialisation/dropout seed and its data order (`input.shuffle_seed`).
  `holdout`: the test clips the report evaluates on, never trained on; the generator stages
  select their params on the validation tails of the training clips (GENERATOR_EVAL_TAIL)."""
  module = importlib.import_module(config_modules()[stage])
  config = module.get_config("size=tiny")
  with config.unlocked():
    config.input.data_dir = data_dir
    config.input.synthetic = False
    config.input.holdout = tuple(holdout)
    if "resolution" in config.input:
      config.input.resolution = resolution
    config.time_budget_s = float(time_budget_s)
    config.progress = True
    config.seed = int(seed)
    config.input.shuffle_seed = int(seed)
    if stage in GENERATOR_STAGES:
      import jax  # pylint: disable=g-import-not-at-top
      config.batch_size = 2 * jax.device_count()
      config.ema_decay = GENERATOR_EMA_DECAY
      config.input.eval_tail = GENERATOR_EVAL_TAIL
      config.select_best = GENERATOR_SELECT_BEST
      config.eval_every = GENERATOR_EVAL_EVERY
    if stage in IMAGE_SIZE_STAGES:
      config.model.image_size = resolution
    # Frozen inputs from earlier stages; a stage's own entries (e.g. coarse's init_from.coarse,
    # a warm start) and stages not trained (yet) stay as the config has them.
    for key in list(config.init_from.keys()):
      name = INIT_FROM_STAGE.get(key, key)
      if name != stage and name in trained:
        config.init_from[key] = trained[name]
  return config


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog=argv[0], description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="output folder (re-run to resume)")
  parser.add_argument("--videos", default=None,
                      help="manifest.jsonl / csv / folder of videos (default: built-in set)")
  parser.add_argument("--minutes", type=float, default=20.0,
                      help="total time budget in minutes (default 20)")
  parser.add_argument("--resolution", type=int, default=64, help="training crop size (px)")
  parser.add_argument("--portrait", default=None, help="portrait to animate (default: chosen)")
  parser.add_argument("--audio", default=None, help="speech to animate it with (default: chosen)")
  parser.add_argument("--text", default=None, help="head-motion prompt (default: chosen)")
  parser.add_argument("--methods", default=None,
                      help="comma-separated methods to train, export and report: posetalk, "
                           "gohd, pctalk (default: posetalk, and gohd too with --minutes >= "
                           f"{GOHD_MIN_MINUTES:.0f}; pctalk only when named)")
  parser.add_argument("--seed", type=int, default=0,
                      help="training seed of every stage (initialisation and data order; the "
                      "built-in clips stay the same); default 0")
  return parser.parse_args(argv[1:])


def run(argv: Optional[list[str]] = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  args = parse_args(argv)
  try:
    names = demo_methods(args.methods, args.minutes)
  except ValueError as e:
    print(f"jaxtalk demo: {e}", file=sys.stderr)
    return 2
  _show_progress_logs()
  t_start = time.time()
  workdir = pathlib.Path(args.workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  budget_s = args.minutes * 60.0
  timings: dict[str, float] = {}

  # ------------------------------------------------------------------ 1. clips
  t0 = time.time()
  if args.videos:
    manifest = str(pathlib.Path(args.videos).resolve())
  else:
    from jaxtalk.demo import data as demo_data  # pylint: disable=g-import-not-at-top
    _log("rendering the built-in talking-face clips (no download needed)")
    manifest = str(demo_data.make_demo_clips(workdir / "clips"))
  timings["clips"] = time.time() - t0

  # ------------------------------------------------------------------ 2. preprocess
  t0 = time.time()
  data_dir = workdir / "shards"
  if not (data_dir / "dataset_info.json").exists():
    from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
    _log("preprocessing %s -> %s", manifest, data_dir)
    pipeline.preprocess(input_path=manifest, output_dir=str(data_dir),
                        resolution=args.resolution)
  info = json.loads((data_dir / "dataset_info.json").read_text())
  _log("%s clips, %.1f minutes of video", info.get("num_clips"), 60 * info.get("hours", 0.0))
  timings["preprocess"] = time.time() - t0

  holdout = choose_holdout(info)
  _log("held-out clips (evaluation only): %s", ", ".join(holdout))
  if "gohd" in names:
    _expression_basis(data_dir, info, holdout)

  # ------------------------------------------------------------------ 3. train every stage
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  train_budget = max(60.0, budget_s - (time.time() - t_start) - RESERVED_SECONDS)
  trained: dict[str, str] = {}
  results: dict[str, dict] = {}
  train_end = time.time() + train_budget
  plan = planned_stages(names)
  _log("methods: %s (%d stages)", ", ".join(names), len(plan))
  for i, (stage, share) in enumerate(plan):
    stage_dir = workdir / "train" / stage
    # This stage's share of the time left, so time a stage does not use (it reached its
    # total_steps early) goes to the later ones.
    left = max(30.0, train_end - time.time())
    stage_budget = left * share / sum(s for _, s in plan[i:])
    config = stage_config(stage, str(data_dir), args.resolution, stage_budget, trained, holdout,
                          seed=args.seed)
    t0 = time.time()
    if (stage_dir / "params").exists():
      _log("%s: already trained (%s)", stage, stage_dir / "params")
    else:
      _log("%s: training for at most %.0f s (%d steps at most)", stage, stage_budget,
           config.total_steps)
      out = train.train_and_evaluate(config, str(stage_dir))
      results[stage] = dict(_summarise_history(out["history"], out["step"]),
                            budget=bool(out.get("budget_reached")))
    trained[stage] = str(stage_dir / "params")
    timings[f"train_{stage}"] = time.time() - t0

  # ------------------------------------------------------------------ 4-7: export, generate, eval
  from jaxtalk.demo import report as demo_report  # pylint: disable=g-import-not-at-top
  return demo_report.finish(workdir=workdir, data_dir=data_dir, manifest=manifest,
                            trained=trained, train_results=results, timings=timings, args=args,
                            holdout=holdout, methods=names)


def _expression_basis(data_dir: pathlib.Path, info: dict, holdout) -> None:
  """GoHD's expression coefficients in the shards (`jaxtalk expression-basis`, fitted on the
  training clips only), unless they are there already.

  Raises:
    RuntimeError: the expression pass failed (its message is on stderr).
  """
  if "expression" in info.get("optional_features", ()):  # every clip has e already
    return
  from data_pipelines import expression_pass  # pylint: disable=g-import-not-at-top
  _log("fitting GoHD's expression basis over the training clips")
  argv = ["jaxtalk expression-basis", "--data_dir", str(data_dir)]
  if holdout:
    argv += ["--holdout", ",".join(holdout)]
  if expression_pass.run(argv) != 0:
    raise RuntimeError(f"jaxtalk expression-basis --data_dir {data_dir} failed (see above)")


def choose_holdout(info: dict) -> tuple[str, ...]:
  """Held-out clips: the default md5 split of `input_pipeline.split_clips`, or, when that leaves
  no clip out (small sets), the last clip, so evaluation never sees training clips. With one
  clip only, nothing can be held out and the report says so."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  clips = [c["clip_id"] for c in info["clips"]]
  if len(clips) < 2:
    return ()
  _, ev = input_pipeline.split_clips(info, ())
  if ev and len(ev) < len(clips):
    return tuple(clips[i] for i in ev)
  return (clips[-1],)


def _show_progress_logs() -> None:
  """absl INFO logs on stderr (each step's messages), without third-party library chatter."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from jaxtalk import main  # pylint: disable=g-import-not-at-top
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(main._QuietLibraries())  # pylint: disable=protected-access


def _summarise_history(history: list[dict], step: int) -> dict:
  train_losses = [h["train/loss"] for h in history if "train/loss" in h]
  evals = [h for h in history if any(k.startswith("eval/") for k in h)]
  return {"steps": step,
          "first_loss": train_losses[0] if train_losses else None,
          "last_loss": train_losses[-1] if train_losses else None,
          "last_eval": {k: v for k, v in (evals[-1] if evals else {}).items() if k != "step"}}


if __name__ == "__main__":
  sys.exit(run())
