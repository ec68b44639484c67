"""Input pipeline throughput: training examples (windows) per second, synthetic and real.

  python benchmarks/input_pipeline.py [--data_dir=DIR] [--resolution=64] [--window=20]
      [--batch_size=8] [--batches=20] [--read_threads=2] [--out=benchmarks/results/input.json]

Without --data_dir only the synthetic source is measured. Prints and saves JSON: seconds to the
first batch and steady-state examples/s and batches/s for every source.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _measure(config, batches):
  t0 = time.time()
  it = input_pipeline.create_iterator(config, mesh=None)
  next(it)
  first = time.time() - t0
  t0 = time.time()
  for _ in range(batches):
    next(it)
  dt = time.time() - t0
  return dict(first_batch_seconds=first, batches_per_second=batches / dt,
              examples_per_second=batches * config.batch_size / dt)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default="")
  parser.add_argument("--resolution", type=int, default=64)
  parser.add_argument("--window", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--batches", type=int, default=20)
  parser.add_argument("--read_threads", type=int, default=2)
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "input.json"))
  args = parser.parse_args(argv)
  config = common.base_config()
  config.batch_size = args.batch_size
  config.input.window = args.window
  config.input.resolution = args.resolution
  config.input.read_threads = args.read_threads
  result = dict(resolution=args.resolution, window=args.window, batch_size=args.batch_size,
                read_threads=args.read_threads, cpu_count=os.cpu_count())
  config.input.synthetic = True
  result["synthetic"] = _measure(config, args.batches)
  if args.data_dir:
    config.input.synthetic = False
    config.input.data_dir = args.data_dir
    result["real"] = _measure(config, args.batches)
    config.input.keys = ("pose", "gaze", "mel", "text_ids", "text_mask", "mask")
    result["real_no_frames"] = _measure(config, args.batches)
  print(json.dumps(result, indent=1))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
