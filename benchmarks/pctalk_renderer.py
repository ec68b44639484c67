r"""Speed of PC-Talk's implicit-keypoint renderer (LivePortrait's F, M, W, G): frames/s per module
and for the whole per-frame path, compile time, XLA FLOPs/frame.

  python benchmarks/pctalk_renderer.py [--sizes=tiny,paper] [--resolution=256] [--batches=1,8]
      [--dtype=float32] [--repeats=3] [--paper_repeats=2]
      [--peaks=h200_bf16_dense=989e12,this_cpu_matmul=418e9]
      [--out=benchmarks/results/pctalk_renderer.json]

Networks: `jaxtalk.models.pctalk.renderer` built from
`configs/pctalk/common.py::renderer_model_config` at `size=tiny` and `size=paper` (LivePortrait's
modules), both at `--resolution` (256² by default) with RANDOM params (normal / sqrt(fan-in), as
benchmarks/gohd_animator.py; the cost does not depend on the weights).

Per (size, batch B), each jitted with params as an argument and timed on B frames:

  appearance   F(image [B, R, R, 3]) -> feature volume (once per portrait at inference)
  motion       M(image) -> K_c, R, t, s, δ (once per driving frame)
  warping      W(volume, K_s, K_d) -> warped 2-D feature + occlusion
  decoder      G(feature) -> frame
  per_frame    M + W + G: what each frame of a driven video costs after the portrait's F and M
               (LivePortrait reports 14.8 ms per frame on an RTX 4090 for its modules)

Row fields: compile_s, seconds_per_call (median of `--repeats` after a warm-up), frames_per_s,
gflops_per_frame (XLA cost analysis / B), implied_fps_at_<peak> (peak / flops per frame: the
ceiling at full utilisation), peak_temp_mb. torch is not installed here: no LivePortrait
(PyTorch) run on this machine. Prints and writes JSON; nothing is asserted.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from flax import linen as nn  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks.gohd_animator import _cost, _timed, parse_peaks  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.gohd_motion import random_params  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import speed_runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs.pctalk import common as pctalk_common  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.models.pctalk import renderer as renderer_lib  # pylint: disable=g-import-not-at-top,wrong-import-position


def build(size: str, resolution: int, dtype: str):
  """(net, random params, parameter count per module) of one size at `resolution`."""
  cfg = pctalk_common.renderer_model_config(size)
  cfg.image_size = resolution
  net = renderer_lib.renderer_from_config(cfg, dtype)
  img = jnp.zeros((1, resolution, resolution, 3))
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), img, img))
  params = jax.device_put(random_params(nn.unbox(shapes["params"])))
  counts = {k: int(sum(x.size for x in jax.tree.leaves(v))) for k, v in params.items()}
  return net, params, counts


def _modules(net):
  """name -> (function of (params, inputs dict), the input names it takes)."""
  r = renderer_lib.Renderer

  def appearance(p, x):
    return net.apply({"params": p}, x["image"], method=lambda m, i: m.appearance(i))

  def motion(p, x):
    return net.apply({"params": p}, x["image"], method=r.motion)

  def warping(p, x):
    return net.apply({"params": p}, x["volume"], x["kp_s"], x["kp_d"],
                     method=lambda m, v, a, b: m.warping(v, a, b))

  def decoder(p, x):
    return net.apply({"params": p}, x["feature"], method=lambda m, f: m.decoder(f))

  def per_frame(p, x):
    md = net.apply({"params": p}, x["image"], method=r.motion)
    kp_d = renderer_lib.keypoints_of(md, canonical=x["canonical"])
    return net.apply({"params": p}, x["volume"], x["kp_s"], kp_d, method=r.render)[0]
  return {"appearance": appearance, "motion": motion, "warping": warping, "decoder": decoder,
          "per_frame": per_frame}


def run_size(size: str, args, peaks: dict) -> list:
  net, params, counts = build(size, args.resolution, args.dtype)
  res = args.resolution
  repeats = args.paper_repeats if size == "paper" else args.repeats
  rows = []
  for b in [int(x) for x in args.batches.split(",")]:
    img = jax.random.uniform(jax.random.key(b), (b, res, res, 3), minval=-1.0, maxval=1.0)
    volume = jax.jit(lambda p, i: net.apply({"params": p}, i, method=lambda m, x: m.appearance(x)))(
        params, img)
    ms = jax.jit(lambda p, i: net.apply({"params": p}, i, method=renderer_lib.Renderer.motion))(
        params, img)
    kp_s = renderer_lib.keypoints_of(ms)
    feature, _ = jax.jit(lambda p, v, k: net.apply(
        {"params": p}, v, k, k, method=lambda m, a, c, d: m.warping(a, c, d)))(params, volume, kp_s)
    inputs = {"image": img, "volume": volume, "kp_s": kp_s, "kp_d": kp_s + 0.01,
              "feature": feature, "canonical": ms["canonical"]}
    for name, fn in _modules(net).items():
      t0 = time.perf_counter()
      compiled = jax.jit(fn).lower(params, inputs).compile()
      compile_s = time.perf_counter() - t0
      sec = _timed(compiled, (params, inputs), repeats)
      cost = _cost(compiled)
      gf = cost["flops"] / b / 1e9
      row = {"size": size, "module": name, "resolution": res, "dtype": args.dtype,
             "batch_frames": b, "params": counts, "compile_s": round(compile_s, 2),
             "seconds_per_call": round(sec, 4), "frames_per_s": round(b / sec, 3),
             "gflops_per_frame": round(gf, 3), "repeats": repeats}
      for pname, peak in peaks.items():
        row[f"implied_fps_at_{pname}"] = round(peak / (gf * 1e9), 1) if gf > 0 else None
      if "temp_mb" in cost:
        row["peak_temp_mb"] = round(cost["temp_mb"], 1)
      print(json.dumps(row), flush=True)
      rows.append(row)
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="tiny,paper")
  parser.add_argument("--resolution", type=int, default=256)
  parser.add_argument("--batches", default="1,8", help="frames per call")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--paper_repeats", type=int, default=2)
  parser.add_argument("--peaks", default="h200_bf16_dense=989e12,this_cpu_matmul=418e9",
                      help="name=FLOP/s pairs for implied frames/s")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "pctalk_renderer.json"))
  args = parser.parse_args(argv)
  peaks = parse_peaks(args.peaks)
  t_start = time.perf_counter()
  rows = [row for s in args.sizes.split(",") for row in run_size(s, args, peaks)]
  result = {
      "benchmark": "pctalk_renderer", "params": "random init (timing only)", "rows": rows,
      "peaks_flops_per_s": peaks,
      "note": ("per_frame = M + W + G for B driving frames of one portrait whose F and M ran "
               "once; torch not installed: no LivePortrait (PyTorch) run here; LivePortrait "
               "reports 14.8 ms/frame on an RTX 4090"),
  }
  speed_runs.write(args.out, result, t_start)
  return 0


if __name__ == "__main__":
  sys.exit(main())
