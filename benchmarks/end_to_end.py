r"""End-to-end generation speed: seconds of compute per second of output video, by stage.

  python benchmarks/end_to_end.py --model runs/demo/export [--image PORTRAIT] [--audio SPEECH]
      [--text "PROMPT"] [--seconds 10] [--out benchmarks/results/end_to_end.json]

Runs `jaxtalk.serve.generate.TalkingHeadPipeline` on one portrait and speech track (defaults: the
first
image and audio of `../shared/data` when present) and splits the wall time into

  face_alignment    FaceMesh on the portrait, crop, pose and gaze
  audio_load        decode + resample to 16 kHz mono
  audio_features    log-mel + per-frame windows
  pld               head motion from the Pose Latent Diffusion model (text + audio), if present
  coarse / refine / enhancer   each generator network alone, on the same windows, measured after
                    compilation (the networks are rebuilt from the bundle's configs)
  render            the exported StableHLO renderer over all windows (all three networks)
  encode            H.264 + AAC muxing

reported as seconds per second of video (`*_s_per_video_s`), plus first-call compile time of the
renderer, frames/s of the renderer, and the process's peak RSS. The first (warm-up) generation
compiles; the timed run is the second. Prints and writes JSON; nothing here is asserted.
"""

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "data")


def _first(folder: str, exts) -> str:
  if not os.path.isdir(folder):
    return ""
  names = sorted(n for n in os.listdir(folder) if n.lower().endswith(exts))
  return os.path.join(folder, names[0]) if names else ""


def _network_times(bundle, source, motion, mel, reps: int = 3) -> dict:
  """Seconds per window of each generator network alone (after compilation)."""
  from jaxtalk.tasks.posetalk import coarse as coarse_task  # pylint: disable=g-import-not-at-top
  rdir = os.path.join(bundle.path, bundle.manifest["renderer"]["dir"])
  params = bundle._params  # pylint: disable=protected-access
  w = bundle.window
  inputs = {"source": source[None], "pose": bundle._norm(motion.pose[0, :w], "pose")[None],  # pylint: disable=protected-access
            "gaze": bundle._norm(motion.gaze[0, :w], "gaze")[None], "mel": mel[None, :w],  # pylint: disable=protected-access
            "source_pose": bundle._norm(motion.pose[0, 0], "pose")[None]}  # pylint: disable=protected-access
  nets = {}
  for name in ("coarse", "refine", "enhancer"):
    cfg_path = os.path.join(rdir, "configs", f"{name}.json")
    if name in params and os.path.isfile(cfg_path):
      with open(cfg_path) as f:
        kwargs = coarse_task._tuples(json.load(f)["model"][name])  # pylint: disable=protected-access
      nets[name] = coarse_task.build(name, kwargs, "float32")
  args = coarse_task.render_inputs(inputs)
  fns = {"coarse": jax.jit(lambda p: nets["coarse"].apply({"params": p}, *args))}
  coarse_out, caux = fns["coarse"](params["coarse"])
  fns["refine"] = jax.jit(lambda p: nets["refine"].apply({"params": p}, coarse_out, caux["flow"],
                                                        *args[1:]))
  refined, _ = fns["refine"](params["refine"])
  if "enhancer" in nets:
    fns["enhancer"] = jax.jit(lambda p: nets["enhancer"].apply({"params": p}, inputs["source"],
                                                              refined))
  out = {}
  for name, fn in fns.items():
    jax.block_until_ready(fn(params[name]))
    t0 = time.perf_counter()
    for _ in range(reps):
      jax.block_until_ready(fn(params[name]))
    out[name] = (time.perf_counter() - t0) / reps
  return out


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True, help="bundle folder from `jaxtalk export`")
  p.add_argument("--image", default=_first(os.path.join(SHARED, "images"), (".jpg", ".png")))
  p.add_argument("--audio", default=_first(os.path.join(SHARED, "audio"), (".wav", ".mp3",
                                                                          ".flac", ".m4a")))
  p.add_argument("--text", default="The person nods slowly, then turns to the left.")
  p.add_argument("--seconds", type=float, default=10.0, help="cut the speech to this length")
  p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "end_to_end.json"))
  args = p.parse_args(argv)
  if not args.image or not args.audio:
    p.error("give --image and --audio (../shared/data not found)")

  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.motion import windows as windows_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.renderers import posetalk as posetalk_renderer  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import generate  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  pipe = generate.TalkingHeadPipeline(args.model)
  load_s = time.perf_counter() - t0
  timings = {}
  t0 = time.perf_counter()
  portrait = generate.align_portrait(args.image, pipe.resolution, pipe.bundle.crop_scale)
  timings["face_alignment"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  wav = generate.load_speech(args.audio)[:int(args.seconds * 16000)]
  timings["audio_load"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  frames_n = generate.num_frames_for(wav)
  mel = audio_lib.mel_windows(audio_lib.log_mel(wav), frames_n)
  timings["audio_features"] = time.perf_counter() - t0
  video_s = frames_n / 25.0

  has_pld = pipe.bundle.sample_motion is not None
  kw = dict(text=args.text) if has_pld else dict(pose_template="nod")
  t0 = time.perf_counter()
  motion = pipe.motion(wav, portrait, **kw)                          # warm-up (compiles)
  pld_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  motion = pipe.motion(wav, portrait, **kw)
  timings["pld" if has_pld else "pose_template"] = time.perf_counter() - t0

  source = portrait.crop.astype(np.float32) / 127.5 - 1.0
  t0 = time.perf_counter()
  pipe.bundle.render(source, motion.pose[0, :pipe.bundle.window],
                     motion.gaze[0, :pipe.bundle.window], mel[:pipe.bundle.window],
                     portrait.pose)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  frames = pipe.render(portrait, motion, wav, progress=False)
  timings["render"] = time.perf_counter() - t0
  overlap = posetalk_renderer.render_overlap(pipe.bundle.window)
  windows = len(windows_lib.window_starts(frames_n + 2 * overlap, pipe.bundle.window,
                                                   overlap))
  per_window = _network_times(pipe.bundle, source, motion, mel)
  for name, s in per_window.items():
    timings[name] = s * windows

  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    video_io.write_video(os.path.join(tmp, "out.mp4"), frames, audio=wav)
    timings["encode"] = time.perf_counter() - t0

  result = {
      "model": os.path.abspath(args.model), "image": args.image, "audio": args.audio,
      "resolution": pipe.resolution, "window": pipe.bundle.window, "video_seconds": video_s,
      "frames": frames_n, "windows": windows, "bundle_load_s": load_s,
      "renderer_compile_s": compile_s, "pld_first_call_s": pld_first if has_pld else None,
      "renderer_frames_per_s": frames_n / timings["render"],
      "seconds": timings,
      **{f"{k}_s_per_video_s": v / video_s for k, v in timings.items()},
      "total_s_per_video_s": sum(v for k, v in timings.items()
                                 if k not in ("coarse", "refine", "enhancer")) / video_s,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "backend": jax.default_backend(), "devices": jax.device_count(),
      "cpu_count": os.cpu_count(), "machine": platform.machine(),
      "time": time.strftime("%Y-%m-%d %H:%M:%S"),
      "note": "coarse/refine/enhancer are the networks alone on the same windows; render is "
              "all three through the exported StableHLO; total excludes the per-network split",
  }
  print(json.dumps(result, indent=2))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
