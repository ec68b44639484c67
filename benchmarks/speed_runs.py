"""The results file of the speed benchmarks (`benchmarks/gohd_motion.py`, `gohd_animator.py`,
`pctalk_renderer.py`): `write(out, result, t_start)` adds what the run ran on (wall time, peak
RSS, platform, CPU count, load average, device, jax version) and writes the JSON atomically, so
runs compare side by side."""

import json
import os
import platform
import resource
import time

import jax


def write(out: str, result: dict, t_start: float) -> dict:
  """`result` plus the run's environment, written to `out` (temp file + rename); returns it."""
  result = dict(
      result, wall_s=round(time.perf_counter() - t_start, 1),
      process_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      platform=platform.platform(), cpu_count=os.cpu_count(), load_average=os.getloadavg(),
      devices=[str(d) for d in jax.devices()[:1]], jax=jax.__version__)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=1)
  os.replace(out + ".tmp", out)
  print(f"wrote {out}")
  return result
