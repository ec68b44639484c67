r"""Speed of PoseTalk's video generator: each network and the whole generator, per frame.

  python benchmarks/generator.py [--size=paper] [--resolution=256] [--batches=1,8] [--frames=5]
      [--dtype=float32] [--iters=3] [--peak_tflops=312] [--out=benchmarks/results/generator.json]

For CoarseNet, RefineNet, Enhancer and the chained generator (`renderers.posetalk.make_render`,
the function the bundle exports and `jaxtalk generate` runs) at
`--resolution` (paper: 256x256, paper-size widths from configs/posetalk/coarse.py) with random
(untrained) params, for each batch size B (windows of `--frames` frames, so B*T frames per call):

  compile_s            jit compile time
  frames_per_s         measured on this machine (median of `--iters` timed calls after warm-up)
  gflops_per_frame     XLA's cost analysis of the compiled function ("flops") / (B*T)
  bytes_per_frame      XLA's "bytes accessed" / (B*T)
  peak_temp_mb         XLA's memory analysis of the compiled function (temp + output buffers)
  implied_fps_at_peak  peak FLOP/s / flops per frame: the upper bound on an accelerator of
                       `--peak_tflops` (A100 dense bf16: 312; f32: 19.5; TF32: 156); real
                       utilisation of conv nets is often 30-50 % of that.
  implied_fps_at_bandwidth  `--peak_tbps` (A100: 2.0 TB/s HBM) / bytes per frame: the
                       memory-bound estimate (XLA:CPU's "bytes accessed" counts every operand of
                       every fused op, so this is pessimistic for a GPU's larger fusions).

Also records process peak RSS (resource.getrusage). PoseTalk reports > 100 fps on one A100.
Prints and writes JSON; nothing here is asserted.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import linen as nn  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs.posetalk import coarse as coarse_cfg  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.models.posetalk import coarse_net  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.models.posetalk import enhancer  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.models.posetalk import refine_net  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cost(compiled) -> dict:
  out = {}
  try:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
      ca = ca[0] if ca else {}
    out["flops"] = float(ca.get("flops", float("nan")))
    out["bytes"] = float(ca.get("bytes accessed", float("nan")))
  except Exception as e:  # pylint: disable=broad-except
    out["cost_error"] = repr(e)
  try:
    ma = compiled.memory_analysis()
    out["temp_mb"] = (ma.temp_size_in_bytes + ma.output_size_in_bytes) / 2**20
    out["argument_mb"] = ma.argument_size_in_bytes / 2**20
  except Exception as e:  # pylint: disable=broad-except
    out["memory_error"] = repr(e)
  return out


def bench(name, fn, args, n_frames, iters, peak_tflops, peak_tbps=2.0) -> dict:
  jitted = jax.jit(fn)
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(*args))   # warm-up
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  cost = _cost(compiled)
  row = {"network": name, "frames_per_call": n_frames, "compile_s": round(compile_s, 2),
         "seconds_per_call": round(med, 4), "frames_per_s": round(n_frames / med, 3)}
  if "flops" in cost:
    gf = cost["flops"] / n_frames / 1e9
    row["gflops_per_frame"] = round(gf, 3)
    row["bytes_per_frame_mb"] = round(cost["bytes"] / n_frames / 2**20, 2)
    row["implied_fps_at_peak"] = round(peak_tflops * 1e3 / gf, 1) if gf > 0 else None
    if cost["bytes"] > 0:
      row["implied_fps_at_bandwidth"] = round(peak_tbps * 1e12 * n_frames / cost["bytes"], 1)
  if "temp_mb" in cost:
    row["peak_temp_mb"] = round(cost["temp_mb"], 1)
    row["argument_mb"] = round(cost["argument_mb"], 1)
  row.update({k: v for k, v in cost.items() if k.endswith("_error")})
  print(json.dumps(row), flush=True)
  return row


def _served_generator(models, key, src, pose, gaze, mel, sp):
  """`(params, fn, inputs)` of `jaxtalk.renderers.posetalk.make_render` over the three networks
  (what the bundle exports and `jaxtalk generate` runs)."""
  from jaxtalk.renderers import posetalk  # pylint: disable=g-import-not-at-top
  (coarse, _), (refine, _), (enh, _) = models["coarse"], models["refine"], models["enhancer"]
  pc = nn.unbox(jax.jit(coarse.init)(key, src, pose, gaze, mel, sp))
  frames, caux = jax.jit(coarse.apply)(pc, src, pose, gaze, mel, sp)
  pr = nn.unbox(jax.jit(refine.init)(key, frames, caux["flow"], pose, gaze, mel, sp))
  pe = nn.unbox(jax.jit(enh.init)(key, src, frames))
  render = posetalk.make_render(coarse, refine, enh)
  params = {"coarse": pc["params"], "refine": pr["params"], "enhancer": pe["params"]}
  inputs = dict(source=src, pose=pose, gaze=gaze, mel=mel, source_pose=sp)
  return params, lambda p, x: render(p, x)[0], (inputs,)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", default="paper", help="paper | tiny (configs/posetalk/coarse.py)")
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--batches", default="1,8", help="batch sizes B (windows per call)")
  parser.add_argument("--frames", type=int, default=5, help="frames per window (T)")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--iters", type=int, default=3)
  parser.add_argument("--peak_tflops", type=float, default=312.0)
  parser.add_argument("--peak_tbps", type=float, default=2.0, help="memory bandwidth, TB/s")
  parser.add_argument("--networks", default="coarse,refine,enhancer,generator")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "generator.json"))
  args = parser.parse_args(argv)
  cfg = coarse_cfg.get_config(f"size={args.size}")
  mk = lambda name: {k: tuple(v) if isinstance(v, (list, tuple)) else v
                     for k, v in dict(cfg.model[name]).items()}
  dtype = jnp.dtype(args.dtype)
  r, t = args.resolution, args.frames
  key = jax.random.key(0, impl="rbg")
  nets = args.networks.split(",")
  rows = []
  for b in [int(x) for x in args.batches.split(",")]:
    ks = jax.random.split(key, 6)
    src = jax.random.uniform(ks[0], (b, r, r, 3), minval=-1, maxval=1)
    pose = jax.random.normal(ks[1], (b, t, 6))
    gaze = jax.random.normal(ks[2], (b, t, 2))
    mel = jax.random.normal(ks[3], (b, t, 16, 80))
    sp = jax.random.normal(ks[4], (b, 6))
    frames = jax.random.uniform(ks[5], (b, t, r, r, 3), minval=-1, maxval=1)
    flow = jnp.zeros((b, t, r, r, 2))
    n = b * t
    models = {
        "coarse": (coarse_net.CoarseNet(**mk("coarse"), dtype=dtype), (src, pose, gaze, mel, sp)),
        "refine": (refine_net.RefineNet(**mk("refine"), dtype=dtype),
                   (frames, flow, pose, gaze, mel, sp)),
        "enhancer": (enhancer.Enhancer(**mk("enhancer"), dtype=dtype), (src, frames)),
    }
    for name in nets:
      if name == "generator":  # the served chain, timed exactly as `jaxtalk generate` runs it.
        params, fn, inputs = _served_generator(models, key, src, pose, gaze, mel, sp)
      else:
        model, inputs = models[name]
        params = nn.unbox(jax.jit(model.init)(key, *inputs))
        fn = lambda p, *x, m=model: m.apply(p, *x)[0]
      row = bench(name, fn, (params,) + inputs, n, args.iters, args.peak_tflops, args.peak_tbps)
      row.update(batch=b, frames_per_window=t, resolution=r, dtype=args.dtype, size=args.size,
                 num_params=int(sum(x.size for x in jax.tree_util.tree_leaves(params))))
      rows.append(row)
      del params
  result = {
      "benchmark": "generator", "rows": rows, "peak_tflops": args.peak_tflops,
      "peak_tbps": args.peak_tbps,
      "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "platform": platform.platform(), "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
      "reference": "PoseTalk reports > 100 fps on one A100 (whole generator).",
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  tmp = args.out + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, args.out)
  print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
