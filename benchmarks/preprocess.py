"""Preprocessing speed per stage: seconds of video processed per CPU-second.

  python benchmarks/preprocess.py [--input=../shared/data/manifest.jsonl] [--resolution=256]
      [--out=benchmarks/results/preprocess.json]

Runs `data_pipelines.pipeline.process_video` on every input video in this process (no Beam, so
the numbers are the per-worker cost a runner multiplies out), then serialises and writes the
records as the pipeline does. CPU time is `time.process_time()` (all threads of this process;
mediapipe and FFmpeg use several). Stages:
  decode          PyAV decoding + 25 fps resampling (two passes: landmarks, then crops)
  face            mediapipe FaceMesh (478 landmarks) on every frame
  landmarks_pose  gap filling, smoothed crop boxes, PnP head pose, gaze, mouth boxes
  audio           audio decode + resample to 16 kHz, int16, Wav2Lip log-mel
  encode          crop + resize + JPEG encode of every frame
  write           msgpack record encoding + ArrayRecord write
Prints and saves JSON: per stage CPU seconds and video-seconds per CPU-second, and the total.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import readers  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import schema  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--input", default=os.path.join(REPO, "..", "shared", "data",
                                                      "manifest.jsonl"))
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "preprocess.json"))
  args = parser.parse_args(argv)
  opts = pipeline.Options(resolution=args.resolution)
  items = readers.read_items(args.input)
  timings = {}
  video_seconds = 0.0
  per_video = []
  payloads = []
  wall0, cpu0 = time.time(), time.process_time()
  for item in items:
    t0 = time.process_time()
    try:
      records, _ = pipeline.process_video(item, opts, timings)
    except pipeline.StageError as e:
      per_video.append(dict(id=item.id, error=f"{e.stage}: {e.reason}"))
      continue
    secs = sum(r["num_frames"] for r in records) / 25.0
    video_seconds += secs
    c0 = time.process_time()
    payloads += [schema.encode_record(r) for r in records]
    timings["write"] = timings.get("write", 0.0) + time.process_time() - c0
    per_video.append(dict(id=item.id, video_seconds=secs, cpu_seconds=time.process_time() - t0))
  with tempfile.TemporaryDirectory() as tmp:
    c0 = time.process_time()
    pipeline.write_shard(os.path.join(tmp, "bench.array_record"), payloads)
    timings["write"] = timings.get("write", 0.0) + time.process_time() - c0
  total_cpu = time.process_time() - cpu0
  result = dict(
      input=os.path.abspath(args.input), resolution=args.resolution, videos=len(items),
      video_seconds=video_seconds, cpu_seconds_total=total_cpu,
      wall_seconds_total=time.time() - wall0,
      video_seconds_per_cpu_second_total=video_seconds / max(total_cpu, 1e-9),
      stages={k: dict(cpu_seconds=v, video_seconds_per_cpu_second=video_seconds / max(v, 1e-9))
              for k, v in sorted(timings.items())},
      per_video=per_video, cpu_count=os.cpu_count())
  print(json.dumps(result, indent=1))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
