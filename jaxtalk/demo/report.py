"""Steps 4-7 of `jaxtalk demo`: export, generate, evaluate on held-out clips, write the report.

Outputs under the demo workdir:
  export/                     the generation bundle (`jaxtalk/serve/bundle.py`)
  inputs/                     the portrait and speech the demo animates
  videos/generated_text.mp4   portrait + speech + text prompt (PLD motion)
  videos/generated_nod.mp4    the same portrait and speech with the "nod" pose template
  videos/reenact_<clip>.mp4   self-reenactment of each held-out clip (source = its first frame)
  contact_sheet.png           rows: real held-out frames, their reenactment, the text video
  report.json / report.md     every number, the metrics tables and the paths above
With GoHD trained too (`jaxtalk demo --methods posetalk,gohd`):
  export_gohd/                its bundle (`jaxtalk/renderers/gohd.py`)
  videos/gohd_generated.mp4   portrait + speech, GoHD's own motion (pose / gaze from p_0,
                              predicted expressions)
  videos/gohd_nod.mp4         the same with the "nod" pose template
  videos/gohd_reenact_<clip>.mp4  GoHD's self-reenactment of each held-out clip (its pose, gaze
                              and expression coefficients)
  report.json["gohd"], report.md "## GoHD"  its rows beside the same baselines
With PC-Talk trained too (`jaxtalk demo --methods posetalk,pctalk`; `jaxtalk/renderers/pctalk.py`,
no audio-driven motion generator yet):
  export_pctalk/              its bundle (renderer, motion extractor, stitching MLPs)
  inputs/drive_<clip>.mp4     the first held-out clip's source video (EVAL_SECONDS, its sound)
  videos/pctalk_drive.mp4     the portrait driven by that video (LivePortrait's relative motion;
                              the video's sound)
  videos/pctalk_nod.mp4       the portrait and speech with the "nod" pose template
  videos/pctalk_reenact_<clip>.mp4  self-reenactment of each held-out clip: frame 0 driven by
                              the clip's own frames (`reenactment.drive_render_fn`)
  report.json["pctalk"], report.md "## PC-Talk"  its rows beside the same baselines
"""

from __future__ import annotations

import datetime
import functools
import json
import pathlib
import time
from typing import Optional

import numpy as np

from jaxtalk.core import logging_utils

DEFAULT_TEXT = "The person talks calmly, nods slowly, then turns the head to the left."
EVAL_SECONDS = 4.0        # frames of each held-out clip used in evaluation
MAX_EVAL_CLIPS = 3
SHEET_COLUMNS = 6


def _log(msg: str, *args) -> None:
  logging_utils.log_info("demo: " + msg, *args)


def held_out_clips(data_dir, holdout) -> list[str]:
  """Clip ids of the evaluation split the stages used (`input_pipeline.split_clips`)."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(str(data_dir))
  _, ev = input_pipeline.split_clips(info, tuple(holdout))
  if not ev:  # a one-clip set: nothing was held out; the report says so.
    _log("no held-out clip (one clip only): evaluating on the training clip")
    ev = range(len(info["clips"]))
  return [info["clips"][i]["clip_id"] for i in ev]


def _default_inputs(args, workdir: pathlib.Path, clip: dict) -> tuple[str, str, str]:
  """(portrait, speech, text): the user's, else a real portrait and a held-out clip's speech."""
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  inputs = workdir / "inputs"
  inputs.mkdir(parents=True, exist_ok=True)
  portrait = args.portrait
  if portrait is None:
    portrait = inputs / "portrait.png"
    if not portrait.exists():
      image = None
      if args.videos and clip.get("source_path"):
        image = _frame_at(clip["source_path"], clip["start_time"])
      if image is None:
        import skimage.data  # pylint: disable=g-import-not-at-top
        image = skimage.data.astronaut()  # the photo the built-in clips are rendered from
      with video_io.atomic_output(portrait) as tmp:
        from PIL import Image  # pylint: disable=g-import-not-at-top
        Image.fromarray(image).save(tmp, format="PNG")
  audio = args.audio
  if audio is None:
    audio = inputs / "speech.wav"
    if not audio.exists():
      _write_wav(audio, clip["wav"])
  text = args.text or clip.get("text") or DEFAULT_TEXT
  return str(portrait), str(audio), text


def _frame_at(path: str, seconds: float) -> Optional[np.ndarray]:
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  try:
    k = int(round(seconds * decode.FPS))
    for _, frame in decode.iter_frames(path, start=k, stop=k + 1):
      return frame
  except (decode.DecodeError, OSError):
    return None
  return None


def _write_wav(path, wav: np.ndarray, rate: int = 16000) -> None:
  import wave  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  pcm = np.clip(np.asarray(wav) * 32767.0, -32768, 32767).astype("<i2")
  with video_io.atomic_output(path) as tmp:
    with wave.open(str(tmp), "wb") as f:
      f.setnchannels(1)
      f.setsampwidth(2)
      f.setframerate(rate)
      f.writeframes(pcm.tobytes())


def _to_uint8(x) -> np.ndarray:
  return np.clip((np.asarray(x, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def contact_sheet(rows: list[tuple[str, np.ndarray]], path, tile: int = 128) -> None:
  """PNG grid: one labelled row per `(label, uint8 frames [N, H, W, 3])`."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  label_w = 220
  ncol = max(len(f) for _, f in rows)
  sheet = Image.new("RGB", (label_w + ncol * tile, len(rows) * tile), "white")
  draw = ImageDraw.Draw(sheet)
  for r, (label, frames) in enumerate(rows):
    draw.text((6, r * tile + tile // 2 - 6), label, fill="black")
    for c, f in enumerate(frames):
      img = Image.fromarray(np.asarray(f)).resize((tile, tile), Image.BILINEAR)
      sheet.paste(img, (label_w + c * tile, r * tile))
  with video_io.atomic_output(path) as tmp:
    sheet.save(tmp, format="PNG")


def _pick(frames, n: int = SHEET_COLUMNS) -> np.ndarray:
  idx = np.linspace(0, len(frames) - 1, n).round().astype(int)
  return np.asarray(frames)[idx]


def evaluate(bundle, clips: list[dict], *, syncnet_params: Optional[str],
             videos_dir: pathlib.Path, label: str = "jaxtalk (tiny)",
             prefix: str = "reenact_", render_fn=None) -> tuple[dict, dict]:
  """Self-reenactment metrics (PoseTalk Tables 1-2 columns) of the bundle (row `label`), a
  source-repeated baseline and the real frames, on `clips` (from `reenactment.read_clips`).

  `render_fn`: `(source [B, R, R, 3], batch) -> [B, T, R, R, 3]` in [-1, 1] (the
  `reenactment` module's render function) that renders the row `label`; None:
  `reenactment.model_render_fn(bundle)` (each clip's stored motion). Writes one reenactment
  video per clip (`<prefix><clip>.mp4`). Returns `(rows, renders)`, renders `{clip_id:
  [T, R, R, 3]}`."""
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top

  renders = {}
  render_fn = render_fn or reenactment.model_render_fn(bundle)
  batches = functools.partial(reenactment.clip_batches, clips)
  kw = reenactment.metric_networks(syncnet_params=syncnet_params, log=_log)

  def jaxtalk_fn(source, batch):
    frames = render_fn(source, batch)
    i = len(renders)
    renders[clips[i]["clip_id"]] = frames[0]
    path = videos_dir / f"{prefix}{clips[i]['clip_id']}.mp4"
    video_io.write_video(path, _to_uint8(frames[0]), audio=clips[i]["wav"])
    return frames

  rows = {label: reenactment.evaluate_reenactment(jaxtalk_fn, batches(), **kw),
          "source repeated": reenactment.evaluate_reenactment(
              reenactment.repeat_source, batches(), **kw),
          "real frames": reenactment.evaluate_reenactment(
              reenactment.ground_truth, batches(), **{k: v for k, v in kw.items()
                                                       if k != "sync"})}
  return rows, renders


def motion_metrics(export_dir: pathlib.Path, manifest: dict, clips: list[dict]) -> dict:
  """PoseTalk Table 3 on the held-out clips: FD, Div, variance ratio, SSIM_p per mode."""
  from jaxtalk import motion as motion_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import motion as motion_eval  # pylint: disable=g-import-not-at-top
  pm = manifest["pose_model"]
  params = pld_lib.load_pld(str(export_dir / pm["pld"] / "params"),
                             vae_dir=str(export_dir / pm["pose_vae"] / "params"),
                             vocab=manifest.get("vocab") or None)
  st = params.denoiser["stats"]
  real = [motion_lib.normalize(np.concatenate([c["pose"], c["gaze"]], -1),
                               np.asarray(st["feat_mean"]), np.asarray(st["feat_std"]))
          for c in clips]
  modes = ("text_audio", "text", "audio") if params.tokenizer is not None else ("audio",)
  window = min(25, min(len(r) for r in real))
  return dict(motion_eval.evaluate_modes(motion_eval.pld_sample_fn(params, clips), real,
                                         modes=modes, window=window), window=window)


def _motion_table(rows: dict) -> str:
  lines = ["| mode | FD↓ | Div (real) | var ratio min..max | SSIM_p↑ |", "|---|---|---|---|---|"]
  for mode, r in rows.items():
    if not isinstance(r, dict):
      continue
    lines.append(f"| {mode} | {r['fd']:.3f} | {r['diversity']:.3f} ({r['real_diversity']:.3f}) "
                 f"| {r['var_ratio_min']:.2f}..{r['var_ratio_max']:.2f} | {r['ssim_p']:.3f} |")
  return "\n".join(lines)


def _train_table(results: dict, trained: dict) -> str:
  lines = ["| stage | steps | first → last train loss | last eval |", "|---|---|---|---|"]
  for stage in trained:
    r = results.get(stage)
    if r is None:
      lines.append(f"| {stage} | (trained in an earlier run) | | |")
      continue
    ev = ", ".join(f"{k.split('/', 1)[-1]} {v:.4g}" for k, v in sorted(r["last_eval"].items())
                   if isinstance(v, (int, float)) and "loss" in k)[:160]
    fl = (f"{r['first_loss']:.4g} → {r['last_loss']:.4g}" if r["first_loss"] is not None
          else "-")
    lines.append(f"| {stage} | {r['steps']}{' (time budget)' if r.get('budget') else ''} | "
                 f"{fl} | {ev} |")
  return "\n".join(lines)


def generate_videos(pipeline, videos: pathlib.Path, portrait, audio, jobs) -> dict:
  """`videos/<name>.mp4` for each `(name, generate keywords)` of `jobs` (one with `text` or no
  motion source, neither a pose template nor a `drive_from` video, is skipped when the bundle
  has no generator; an `audio` keyword replaces `audio`, None: the driving video's sound);
  returns their report entries."""
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  gen = {}
  for name, kw in jobs:
    if not {"pose_template", "drive_from"} & set(kw) and pipeline.bundle.sample_motion is None:
      continue
    out = videos / f"{name}.mp4"
    kw = dict(kw)
    info = pipeline.generate(portrait, kw.pop("audio", audio), out, **kw)
    meta = video_io.probe(out)
    what = kw if kw else {"motion": f"{pipeline.method.name}'s generators"}
    gen[name] = dict(path=str(out), frames=info["frames"], audio_seconds=info["seconds"],
                     video_seconds=meta.get("duration"), timings=info["timings"], **what)
  return gen


# The methods reported beside PoseTalk: their row label, section title and what drives their
# self-reenactment.
METHOD_REPORTS = {
    "gohd": dict(row="gohd (tiny)", name="GoHD",
                 title="GoHD (animator driven by its own motion generators)",
                 driving="the clip's pose, gaze and expression coefficients"),
    "pctalk": dict(row="pctalk (tiny)", name="PC-Talk",
                   title="PC-Talk (implicit-keypoint renderer, video-driven)",
                   driving="the clip's own frames, read by the renderer's motion extractor "
                           "(LivePortrait's relative motion, region all)"),
}


def drive_video(workdir: pathlib.Path, clip: dict) -> pathlib.Path:
  """`inputs/drive_<clip>.mp4`: the frames of `clip` (a `reenactment.read_clips` clip) from its
  source video (`source_path` at `start_time`, full size: what `--drive` tracks a face in),
  else its aligned crops upscaled to 256 px, with the clip's speech (`clip["wav"]`); as many
  frames as the clip has (written once)."""
  import cv2  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  out = workdir / "inputs" / f"drive_{clip['clip_id']}.mp4"
  if out.exists():
    return out
  n = len(clip["frames"])
  frames = []
  if clip.get("source_path"):
    from data_pipelines import decode  # pylint: disable=g-import-not-at-top
    k = int(round(float(clip.get("start_time") or 0.0) * decode.FPS))
    try:
      frames = [f for _, f in decode.iter_frames(clip["source_path"], start=k, stop=k + n)]
    except (decode.DecodeError, OSError) as e:
      _log("%s: cannot read %s (%s); driving with its aligned crops", clip["clip_id"],
           clip["source_path"], e)
  if len(frames) < n:
    frames = [cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC)
              for f in _to_uint8(clip["frames"])]
  out.parent.mkdir(parents=True, exist_ok=True)
  video_io.write_video(out, frames, audio=clip["wav"])
  return out


def _method_jobs(method: str, workdir: pathlib.Path, clips: list[dict]) -> tuple:
  """`generate_videos` jobs of a method beside PoseTalk: its own motion (GoHD) or a held-out
  clip's video driving the portrait (PC-Talk, with that video's sound), and the nod template."""
  own = ({"drive_from": str(drive_video(workdir, clips[0])), "audio": None}
         if method == "pctalk" else {})
  return ((f"{method}_{'drive' if method == 'pctalk' else 'generated'}", own),
          (f"{method}_nod", dict(pose_template="nod")))


def method_results(method: str, workdir: pathlib.Path, data_dir: pathlib.Path, ids, portrait,
                   audio, *, syncnet_params: Optional[str], timings: dict) -> dict:
  """The report part of `method` (a METHOD_REPORTS key; module docstring): export to
  `export_<method>/`, its two videos, its self-reenactment rows on the held-out clips `ids`
  beside the same baselines (PC-Talk: each clip's frame 0 driven by the clip's own frames,
  `reenactment.drive_render_fn`; GoHD: the clip's stored motion) and the learning checks.

  Raises:
    ValueError / InputError: as `export_bundle`, `read_clips` and `generate`.
  """
  from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import generate as generate_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  what = METHOD_REPORTS[method]
  t0 = time.time()
  export_dir = workdir / f"export_{method}"
  _log("exporting the %s bundle to %s", what["name"], export_dir)
  bundle_lib.export_bundle(str(workdir / "train"), str(export_dir), method=method)
  pipeline = generate_lib.TalkingHeadPipeline(export_dir, method=method)
  clips = reenactment.read_clips(str(data_dir), clip_ids=list(ids),
                                 resolution=pipeline.resolution,
                                 max_frames=int(EVAL_SECONDS * 25))
  videos = workdir / "videos"
  gen = generate_videos(pipeline, videos, portrait, audio, _method_jobs(method, workdir, clips))
  timings[f"{method}_export_generate"] = time.time() - t0
  t0 = time.time()
  _log("%s self-reenactment on %d held-out clip(s)", what["name"], len(clips))
  render_fn = reenactment.drive_render_fn(pipeline.bundle) if method == "pctalk" else None
  rows, _ = evaluate(pipeline.bundle, clips, syncnet_params=syncnet_params, videos_dir=videos,
                     label=what["row"], prefix=f"{method}_reenact_", render_fn=render_fn)
  timings[f"{method}_evaluate"] = time.time() - t0
  return dict(export=str(export_dir), videos=gen, reenactment=rows,
              learning=learning_checks(rows, {}, ours=what["row"]),
              reenactment_videos=[str(videos / f"{method}_reenact_{c['clip_id']}.mp4")
                                  for c in clips])


def finish(*, workdir: pathlib.Path, data_dir: pathlib.Path, manifest: str, trained: dict,
           train_results: dict, timings: dict, args, holdout=(), methods=("posetalk",)) -> int:
  """Export, generate, evaluate and report (see module docstring) of PoseTalk and of each other
  method of `methods` (METHOD_REPORTS: GoHD, PC-Talk). Returns the exit status."""
  from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import generate as generate_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top

  # ------------------------------------------------------------------ 4. export
  t0 = time.time()
  export_dir = workdir / "export"
  _log("exporting the generation bundle to %s", export_dir)
  bmanifest = bundle_lib.export_bundle(str(workdir / "train"), str(export_dir))
  pipeline = generate_lib.TalkingHeadPipeline(export_dir)
  timings["export"] = time.time() - t0

  # Held-out clips (evaluation split of the stages).
  ids = held_out_clips(data_dir, holdout)[:MAX_EVAL_CLIPS]
  clips = reenactment.read_clips(str(data_dir), clip_ids=ids, resolution=pipeline.resolution,
                                 max_frames=int(EVAL_SECONDS * 25))

  # ------------------------------------------------------------------ 5. generate
  t0 = time.time()
  videos = workdir / "videos"
  videos.mkdir(parents=True, exist_ok=True)
  portrait, audio, text = _default_inputs(args, workdir, clips[0])
  _log("generating: portrait %s, speech %s, text %r", portrait, audio, text)
  gen = generate_videos(pipeline, videos, portrait, audio,
                        (("generated_text", dict(text=text)),
                         ("generated_nod", dict(pose_template="nod"))))
  timings["generate"] = time.time() - t0

  # ------------------------------------------------------------------ 6. evaluate
  t0 = time.time()
  _log("self-reenactment on %d held-out clip(s): %s", len(clips), ", ".join(ids))
  rows, renders = evaluate(pipeline.bundle, clips, syncnet_params=trained.get("syncnet"),
                           videos_dir=videos)
  motion = motion_metrics(export_dir, bmanifest, clips) if bmanifest["pose_model"] else {}
  timings["evaluate"] = time.time() - t0
  others = {m: method_results(m, workdir, data_dir, ids, portrait, audio,
                              syncnet_params=trained.get("syncnet"), timings=timings)
            for m in methods if m in METHOD_REPORTS}

  # ------------------------------------------------------------------ 7. report
  sheet_rows = [(f"real {clips[0]['clip_id'][:24]}", _pick(_to_uint8(clips[0]["frames"]))),
                ("reenacted (frame 0 + its motion)",
                 _pick(_to_uint8(renders[clips[0]["clip_id"]])))]
  if "generated_text" in gen or "generated_nod" in gen:
    name = "generated_text" if "generated_text" in gen else "generated_nod"
    frames = [f for _, f in _read_video(gen[name]["path"])]
    sheet_rows.append((f"{name} (portrait+speech)", _pick(frames)))
  contact_sheet(sheet_rows, workdir / "contact_sheet.png")
  report = dict(
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      clips=manifest, data_dir=str(data_dir), minutes=args.minutes, resolution=args.resolution,
      held_out=ids, training=train_results, timings=timings, export=str(export_dir),
      seed=getattr(args, "seed", 0), videos=gen, reenactment=rows, motion=motion,
      learning=learning_checks(rows, train_results),
      reenactment_videos=[str(videos / f"reenact_{i}.mp4") for i in ids],
      contact_sheet=str(workdir / "contact_sheet.png"), methods=list(methods),
      **others)
  (workdir / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
  (workdir / "report.md").write_text(_markdown(report, trained, rows, motion))
  _log("report written to %s", workdir / "report.md")
  print(f"jaxtalk demo: done in {sum(timings.values()) / 60:.1f} min; report "
        f"{workdir / 'report.md'}; videos in {videos}")
  return 0


def _read_video(path):
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  return decode.iter_frames(str(path))


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


SYNC_CHANCE = 0.5  # pair accuracy of a lip-sync expert that cannot tell in-sync from shifted


def learning_checks(rows: dict, train_results: dict, ours: str = "jaxtalk (tiny)") -> dict:
  """Did this run learn? `{name: {"ours", "baseline", "passed"}}` for: held-out SSIM and mouth
  L1 of the renderer vs repeating the source frame, and the SyncNet stage's held-out pair
  accuracy vs chance (0.5). A check whose numbers are missing (stage trained in an earlier run,
  metric skipped) is left out. `ours`: the row of the renderer checked."""
  ours, base = rows[ours], rows["source repeated"]
  out = {}
  if "ssim" in ours and "ssim" in base:
    out["ssim_beats_source"] = dict(ours=ours["ssim"], baseline=base["ssim"],
                                    passed=bool(ours["ssim"] > base["ssim"]))
  if "mouth_l1" in ours and "mouth_l1" in base:
    out["mouth_l1_beats_source"] = dict(ours=ours["mouth_l1"], baseline=base["mouth_l1"],
                                        passed=bool(ours["mouth_l1"] < base["mouth_l1"]))
  acc = ((train_results.get("syncnet") or {}).get("last_eval") or {}).get("eval/pair_accuracy")
  if acc is not None:
    out["syncnet_beats_chance"] = dict(ours=float(acc), baseline=SYNC_CHANCE,
                                       passed=bool(acc > SYNC_CHANCE))
  return out


def verdicts(rows: dict, motion: dict, checks: Optional[dict] = None) -> list[str]:
  """Plain statements of what the numbers of this run show (pass or fail), for the report."""
  ours, base = rows["jaxtalk (tiny)"], rows["source repeated"]
  checks = checks or {}
  out = []
  if ours["ssim"] > base["ssim"]:
    out.append(f"The renderer beats repeating the source frame on held-out frames (SSIM "
               f"{ours['ssim']:.3f} vs {base['ssim']:.3f}): it moves the face towards the real "
               "frames.")
  else:
    out.append(f"The renderer does NOT yet beat repeating the source frame on held-out frames "
               f"(SSIM {ours['ssim']:.3f} vs {base['ssim']:.3f}): with this budget it mostly "
               "reproduces the source, blurred; head and lip motion are weak.")
  if "mouth_l1_beats_source" in checks:
    c = checks["mouth_l1_beats_source"]
    out.append(f"The mouth region {'is' if c['passed'] else 'is NOT'} closer to the real frames "
               f"than the still source's (mouth L1 {c['ours']:.4f} vs {c['baseline']:.4f}).")
  if "syncnet_beats_chance" in checks:
    c = checks["syncnet_beats_chance"]
    out.append(f"The lip-sync expert {'tells' if c['passed'] else 'does NOT tell'} in-sync from "
               f"shifted audio better than chance on held-out windows (pair accuracy "
               f"{c['ours']:.3f}, chance {c['baseline']:.1f}).")
  if "lmd" in ours and "lmd" in base:
    better = ours["lmd"] < base["lmd"]
    out.append(f"Mouth shapes {'follow' if better else 'do NOT follow'} the real ones better "
               f"than the still source (mouth landmark distance {ours['lmd']:.2f} vs "
               f"{base['lmd']:.2f} px).")
  if "gt_lse_c" in ours:
    if ours["gt_lse_c"] < 1.0:
      out.append(f"The tiny SyncNet barely separates in-sync from shifted audio even on real "
                 f"frames (LSE-C {ours['gt_lse_c']:.2f}), so LSE-C/D here say little about lip "
                 "sync.")
    else:
      out.append(f"Lip sync: LSE-C {ours.get('lse_c', float('nan')):.2f} generated vs "
                 f"{ours['gt_lse_c']:.2f} for the real clips.")
  r = motion.get("text_audio") or motion.get("audio")
  if isinstance(r, dict):
    lo, hi = r["var_ratio_min"], r["var_ratio_max"]
    if 0.3 <= lo and hi <= 3.0:
      out.append(f"PLD head motion has per-dimension variance {lo:.2f}x..{hi:.2f}x the real "
                 "clips': neither collapsed to a mean pose nor exaggerated.")
    else:
      out.append(f"PLD head motion has per-dimension variance {lo:.2f}x..{hi:.2f}x the real "
                 "clips', outside 0.3x..3x: with so few clips and steps it is not yet "
                 "realistic (collapsed below 0.3x, exaggerated above 3x).")
  return out


def _method_markdown(method: str, res: dict) -> list[str]:
  """The "## GoHD" / "## PC-Talk" section of `method` (METHOD_REPORTS): its videos,
  reenactment rows and learning checks (`res`: `method_results`)."""
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  what = METHOD_REPORTS[method]
  lines = [f"## {what['title']}", "",
           f"Bundle `{res['export']}` (`jaxtalk generate --method {method}`).", ""]
  for g in res["videos"].values():
    how = (f"pose template {g['pose_template']}" if "pose_template" in g
           else f"driven by `{g['drive_from']}`" if "drive_from" in g else g.get("motion", ""))
    lines.append(f"- `{g['path']}`: {how}; {g['frames']} frames for {g['audio_seconds']:.2f} s "
                 f"of audio (video stream {g['video_seconds']:.2f} s)")
  lines += [f"- `{p}`: {what['name']} self-reenactment of a held-out clip" for p in
            res["reenactment_videos"]]
  lines += ["", "Self-reenactment on the same held-out clips (source = frame 0; driving: "
            f"{what['driving']}):", "", reenactment.format_table(res["reenactment"]), ""]
  for name, c in res["learning"].items():
    lines.append(f"- {name}: {'passed' if c['passed'] else 'NOT passed'} ({what['name']} "
                 f"{c['ours']:.4f}, baseline {c['baseline']:.4f})")
  return lines + [""]


def _markdown(report: dict, trained: dict, rows: dict, motion: dict) -> str:
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  t = report["timings"]
  lines = [
      "# jaxtalk demo report", "",
      f"Created {report['created']} from `{report['clips']}` ({report['resolution']} px, "
      f"budget {report['minutes']:.0f} min; took {sum(t.values()) / 60:.1f} min).", "",
      "## Training (size=tiny)", "", _train_table(report["training"], trained), "",
      "## Videos", ""]
  for name, g in report["videos"].items():
    what = f"text {g['text']!r}" if "text" in g else f"pose template {g.get('pose_template')}"
    lines.append(f"- `{g['path']}`: {what}; {g['frames']} frames for {g['audio_seconds']:.2f} s "
                 f"of audio (video stream {g['video_seconds']:.2f} s)")
  for p in report["reenactment_videos"]:
    lines.append(f"- `{p}`: self-reenactment of a held-out clip")
  lines += ["", f"![contact sheet]({report['contact_sheet']})", "",
            "## Self-reenactment on held-out clips (PoseTalk Tables 1-2 columns)", "",
            f"Clips: {', '.join(report['held_out'])} (first {EVAL_SECONDS:.0f} s each; source = "
            "frame 0). LPIPS* backbone: "
            f"{rows['jaxtalk (tiny)'].get('lpips_backbone', '-')}; LSE-C/D use the demo's own "
            "tiny SyncNet (real clips score "
            f"{rows['jaxtalk (tiny)'].get('gt_lse_c', float('nan')):.2f}).", "",
            reenactment.format_table(rows), ""]
  for method in METHOD_REPORTS:
    if report.get(method):
      lines += _method_markdown(method, report[method])
  if motion:
    lines += ["## Head motion from PLD on held-out clips (PoseTalk Table 3 columns)", "",
              f"Feature windows of {motion['window']} frames; few clips, so FD is noisy.", "",
              _motion_table(motion), ""]
  lines += [
      "## What these models can and cannot do", "",
      "Every stage was trained for minutes at `size=tiny` on a handful of clips on a CPU; the "
      "numbers are not comparable with the papers' tables (256 px networks trained for days on "
      "HDTF, MEAD and VoxCeleb). Measured in this run:", ""]
  lines += [f"- {v}" for v in verdicts(rows, motion, report.get("learning"))]
  lines += [
      "", "Train each stage with `size=paper` on real data for real results (README).",
      "", "## Timings (s)", "",
      "| step | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in t.items()] + [""]
  return "\n".join(lines)
