r"""Speed of GoHD's face animator decode (section 3.3): frames/s, compile time, XLA FLOPs/frame.

  python benchmarks/gohd_animator.py [--sizes=tiny,paper] [--resolution=256] [--batches=1,8]
      [--dtype=float32] [--repeats=3] [--paper_repeats=2]
      [--peaks=h200_bf16_dense=989e12,this_cpu_matmul=418e9]
      [--out=benchmarks/results/gohd_animator.json]

Network: `jaxtalk.models.gohd.animator` built from `configs/gohd/common.py::animator_model_config`
at `size=tiny` and `size=paper` (the release: latent 512, 20 directions, channel multiplier 1),
both at `--resolution` (256² by default, so tiny's widths follow channel_base / resolution, capped
at 32) with RANDOM params (normal / sqrt(fan-in); the cost does not depend on the weights).

Per (size, batch B): one portrait, B frames per call, the way inference renders a clip: the
source is encoded once (`Animator.encode`, timed separately as `encode_s`) and
`Animator.decode(feats, z_r, windows [1, B, 2r+1, 70], gaze [1, B, 2])` runs the driving branch,
eq. 9 and the decoder for the B frames in one jitted call, params as an argument:

  compile_s              lower + compile of the decode (XLA:CPU)
  seconds_per_call       median of the timed calls after a warm-up (`--repeats`; `--paper_repeats`
                         at paper size, where one call of 8 frames takes seconds on 2 cores)
  frames_per_s           B / seconds_per_call, measured here
  gflops_per_frame       XLA's cost analysis of the compiled decode ("flops") / B
  implied_fps_at_<peak>  peak FLOP/s / flops per frame for each `--peaks` entry: the ceiling at
                         full utilisation (H200 dense bf16: 989 TFLOP/s; this CPU's measured f32
                         matmul peak: 418 GFLOP/s); conv nets with gathers (the warps) reach a
                         fraction of it
  peak_temp_mb           XLA's memory analysis (temp + output buffers)

A PyTorch LIA comparison is not run: torch is not installed in this environment. Prints and
writes JSON; nothing is asserted.
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import linen as nn  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks.gohd_motion import random_params  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import speed_runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs.gohd import common as gohd_common  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.models.gohd import animator  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_peaks(text: str) -> dict:
  """"name=989e12,other=418e9" -> {"name": 9.89e14, "other": 4.18e11} (FLOP/s)."""
  out = {}
  for item in filter(None, text.split(",")):
    name, _, value = item.partition("=")
    if not name or not value:
      raise ValueError(f"--peaks: expected name=flops_per_s, got {item!r}")
    out[name] = float(value)
  return out


def _cost(compiled) -> dict:
  out = {}
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else {}
  out["flops"] = float(ca.get("flops", float("nan")))
  try:
    ma = compiled.memory_analysis()
    out["temp_mb"] = (ma.temp_size_in_bytes + ma.output_size_in_bytes) / 2**20
  except Exception as e:  # pylint: disable=broad-except
    out["memory_error"] = repr(e)
  return out


def _timed(compiled, args, repeats: int) -> float:
  jax.block_until_ready(compiled(*args))   # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def build(size: str, resolution: int, dtype: str):
  """(net, model config, random params) of one size at `resolution`."""
  cfg = gohd_common.animator_model_config(size, image_size=resolution)
  net = animator.animator_from_config(cfg, dtype=dtype)
  r = cfg.radius
  shapes = jax.eval_shape(lambda: net.init(
      jax.random.key(0), jnp.zeros((1, resolution, resolution, 3)),
      jnp.zeros((1, 1, 2 * r + 1, animator.NUM_COEFFS)), jnp.zeros((1, 1, animator.NUM_GAZE))))
  params = jax.device_put(random_params(nn.unbox(shapes["params"])))
  return net, cfg, params


def run_size(size: str, args, peaks: dict) -> list:
  net, cfg, params = build(size, args.resolution, args.dtype)
  n_params = animator.num_params(params)
  res, r = args.resolution, cfg.radius
  key = jax.random.split(jax.random.key(1), 3)
  src = jax.random.uniform(key[0], (1, res, res, 3), minval=-1.0, maxval=1.0)
  enc = jax.jit(lambda p, s: net.apply({"params": p}, s, method=animator.Animator.encode))
  t0 = time.perf_counter()
  enc_c = enc.lower(params, src).compile()
  enc_compile = time.perf_counter() - t0
  repeats = args.paper_repeats if size == "paper" else args.repeats
  encode_s = _timed(enc_c, (params, src), repeats)
  z_r, feats = enc_c(params, src)
  dec = jax.jit(lambda p, f, z, w, g: net.apply({"params": p}, f, z, w, g,
                                                method=animator.Animator.decode)[0])
  rows = []
  for b in [int(x) for x in args.batches.split(",")]:
    coeffs = jax.random.normal(key[1], (1, b, animator.NUM_COEFFS))
    windows = animator.driving_windows(coeffs, r)
    gaze = jax.random.normal(key[2], (1, b, animator.NUM_GAZE))
    call = (params, feats, z_r, windows, gaze)
    t0 = time.perf_counter()
    compiled = dec.lower(*call).compile()
    compile_s = time.perf_counter() - t0
    sec = _timed(compiled, call, repeats)
    cost = _cost(compiled)
    gf = cost["flops"] / b / 1e9
    row = {"size": size, "resolution": res, "dtype": args.dtype, "params": n_params,
           "batch_frames": b, "radius": r, "compile_s": round(compile_s, 2),
           "seconds_per_call": round(sec, 4), "frames_per_s": round(b / sec, 3),
           "gflops_per_frame": round(gf, 3), "repeats": repeats,
           "encode_compile_s": round(enc_compile, 2), "encode_s": round(encode_s, 4)}
    for name, peak in peaks.items():
      row[f"implied_fps_at_{name}"] = round(peak / (gf * 1e9), 1) if gf > 0 else None
    if "temp_mb" in cost:
      row["peak_temp_mb"] = round(cost["temp_mb"], 1)
    row.update({k: v for k, v in cost.items() if k.endswith("_error")})
    print(json.dumps(row), flush=True)
    rows.append(row)
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="tiny,paper")
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--batches", default="1,8", help="frames per decode call")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--paper_repeats", type=int, default=2)
  parser.add_argument("--peaks", default="h200_bf16_dense=989e12,this_cpu_matmul=418e9",
                      help="name=FLOP/s pairs for implied frames/s")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "gohd_animator.json"))
  args = parser.parse_args(argv)
  peaks = parse_peaks(args.peaks)
  t_start = time.perf_counter()
  rows = [row for s in args.sizes.split(",") for row in run_size(s, args, peaks)]
  result = {
      "benchmark": "gohd_animator", "params": "random init (timing only)", "rows": rows,
      "peaks_flops_per_s": peaks,
      "note": ("decode = driving branch + eq. 9 + decoder for B frames of one portrait, encoded "
               "once (encode_s); torch not installed: no LIA (PyTorch) comparison"),
  }
  speed_runs.write(args.out, result, t_start)
  return 0


if __name__ == "__main__":
  sys.exit(main())
