r"""Time to sample GoHD's head pose + gaze for 10 s of audio (section 3.1), tiny and paper size.

  python benchmarks/gohd_motion.py [--sizes=tiny,paper] [--seconds=10]
      [--variants=ddpm150,ddim50,ddim25] [--repeats=3] [--paper_repeats=1]
      [--end_to_end=tiny:ddpm150,tiny:ddim50,tiny:ddim25,paper:ddim25]
      [--out=benchmarks/results/gohd_motion.json]

Networks: `jaxtalk.models.gohd.pose_denoiser` built from configs/gohd/pose.py (pose, 6 channels)
and configs/gohd/gaze.py (gaze, 2 channels) at `size=tiny` (4 layers x 32 channels, windows of
50 frames, overlap 12) and `size=paper` (GoHD's release: 20 layers x 256 channels, windows of
100, overlap 25), with RANDOM params (normal, 1/sqrt(fan-in); sampling cost does not depend on
the weights, so nothing here says anything about sample quality). Audio: random log-mel windows
`[T, 16, 80]` (the network's mel front end; computing the mel itself is not timed). Schedule:
the config's 150-step linear 1e-4 .. 0.05; γ = 0.4 (eq. 3, both predictions in one 2B batch).

Variants: "ddpm150" (GoHD's sampler: all 150 ancestral steps), "ddimK" (K deterministic DDIM
steps, η = 0, the same eq.-3 guidance: `generators.gohd.sample_window(sampler="ddim")`).

Per (size, target, variant), on the window function `sample_window` jitted with the params as an
ARGUMENT:
  compile_s       lower + compile of one window (XLA:CPU)
  window_s        one window after compilation (median of the repeats; `--paper_repeats` at
                  paper size, where one DDPM window takes over a minute on 2 cores)
  step_s          window_s / steps (one guided denoiser call, batch 2 x window frames)
  windows         windows covering `--seconds` at 25 fps (`motion.windows.window_starts`)
  total_s         windows x window_s: EXTRAPOLATED from the measured window (window i > 0
                  differs only by its inpainted overlap, which costs nothing extra)
  frames_per_s    frames / total_s
  peak_temp_mb    XLA's memory analysis of the compiled window (temp + output buffers)
and `pose_plus_gaze` sums the two targets. `end_to_end` rows time `generators.gohd.
sample_sequence` as a caller uses it (first call and a second call): MEASURED over all windows,
including the compile of the first call of a variant (see `note_compile`). Also records the
process peak RSS.

Expression (GoHD section 3.2, eq. 8): `time_expression` times Φ_a -> G_lstm -> E_map over the
whole sequence in one jitted call (random params; the LSTM needs no windows), per size.
Prints and writes JSON; nothing is asserted.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import speed_runs  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs.gohd import pose as pose_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk import diffusion  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.generators import gohd as gohd_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.models.gohd import pose_denoiser  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.motion import windows as windows_lib  # pylint: disable=g-import-not-at-top,wrong-import-position

FPS = 25
DIMS = {"pose": 6, "gaze": 2}
GAMMA = 0.4


def parse_variant(name: str):
  """"ddpm150" -> ("ddpm", 150); "ddim25" -> ("ddim", 25)."""
  for sampler in ("ddpm", "ddim"):
    if name.startswith(sampler) and name[len(sampler):].isdigit():
      return sampler, int(name[len(sampler):])
  raise ValueError(f"variant {name!r}: expected ddpm<steps> or ddim<steps>")


def random_params(shapes, seed: int = 0):
  """Host-made random params for a tree of shapes: normal / sqrt(fan-in), norm scales 1, biases
  0 (timing only)."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = str(path[-1])
    if "bias" in name:
      return np.zeros(s.shape, s.dtype)
    if "scale" in name:
      return np.ones(s.shape, s.dtype)
    fan_in = max(int(np.prod(s.shape[:-1])), 1)
    return (rng.standard_normal(s.shape) / math.sqrt(fan_in)).astype(s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def build(size: str, target: str, seed: int = 0):
  """`(net, params, schedule, config)` with random params (normal / sqrt(fan-in), norm scales 1,
  biases 0), made on the host from `jax.eval_shape` (a jitted init of the paper network takes
  over a minute here)."""
  c = pose_config.get_config(f"size={size},target={target}")
  w, d = int(c.input.window), DIMS[target]
  net = pose_denoiser.from_config(c.model, c.dtype, out_dim=d)
  shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, w, d)),
                          jnp.zeros((1,), jnp.int32), jnp.zeros((1, w, 16, 80)),
                          jnp.zeros((1, d)), jnp.ones((1,), bool), jnp.ones((1, w), bool))
  return net, random_params(shapes, seed), diffusion.schedule_from_config(c.diffusion), c


def _memory_mb(compiled) -> float:
  try:
    ma = compiled.memory_analysis()
    return round((ma.temp_size_in_bytes + ma.output_size_in_bytes) / 2**20, 1)
  except Exception:  # pylint: disable=broad-except
    return float("nan")


def time_window(net, params, sched, config, target, variant, repeats, frames) -> dict:
  """One row: compile and run one guided window (module docstring)."""
  sampler, steps = parse_variant(variant)
  w, ov, d = int(config.input.window), int(config.sampling.overlap), DIMS[target]
  fn = jax.jit(lambda p, a, p0, noise, known, km, rng: gohd_lib.sample_window(
      net, p, sched, a, p0, noise, gamma=GAMMA, sampler=sampler, steps=steps, known=known,
      known_mask=km, rng=rng))
  g = np.random.default_rng(1)
  args = (params, jnp.asarray(g.standard_normal((1, w, 16, 80)), jnp.float32),
          jnp.zeros((1, d)), jnp.asarray(g.standard_normal((1, w, d)), jnp.float32),
          jnp.zeros((1, w, d)), jnp.asarray(np.arange(w)[None] < ov), jax.random.PRNGKey(0))
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(max(repeats, 1)):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  window_s = statistics.median(times)
  n_win = len(windows_lib.window_starts(max(frames, w), w, ov))
  total = n_win * window_s
  row = {"target": target, "variant": variant, "sampler": sampler, "steps": steps,
         "window": w, "overlap": ov, "windows": n_win, "compile_s": round(compile_s, 2),
         "window_s": round(window_s, 3), "window_s_all": [round(t, 3) for t in times],
         "step_s": round(window_s / steps, 4), "total_s": round(total, 2),
         "total_is_extrapolated": True, "frames_per_s": round(frames / total, 2),
         "peak_temp_mb": _memory_mb(compiled)}
  print(json.dumps(row), flush=True)
  return row


def time_end_to_end(net, params, sched, config, target, variant, frames, calls=2) -> dict:
  """`sample_sequence` over `frames` of random audio, called `calls` times (the first call of a
  variant compiles its window function; later calls reuse it)."""
  sampler, steps = parse_variant(variant)
  audio = np.random.default_rng(2).standard_normal((frames, 16, 80)).astype(np.float32)
  times = []
  for seed in range(calls):
    t0 = time.perf_counter()
    out = gohd_lib.sample_sequence(net, params, sched, audio, np.zeros(DIMS[target], np.float32),
                                   window=int(config.input.window),
                                   overlap=int(config.sampling.overlap), gamma=GAMMA,
                                   sampler=sampler, steps=steps, seed=seed)
    times.append(time.perf_counter() - t0)
  row = {"target": target, "variant": variant, "frames": int(out.shape[0]),
         "calls_s": [round(t, 2) for t in times], "total_is_extrapolated": False,
         "frames_per_s_last_call": round(frames / times[-1], 2)}
  print(json.dumps(row), flush=True)
  return row


def time_expression(size: str, frames: int):
  """GoHD's expression predictor (section 3.2, eq. 8) over the whole sequence in one jitted call:
  Φ_a (the mel encoder, no expert) -> G_lstm (eqs. 6-7) -> E_map (eq. 5), random params from
  `jax.eval_shape` like `build`. Returns one row (compile_s, total_s, frames_per_s, not
  extrapolated: the LSTM takes any length)."""
  from configs.gohd import exp_eye as eye_config  # pylint: disable=g-import-not-at-top
  from configs.gohd import exp_lip as lip_config  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.gohd import expression as exp_models  # pylint: disable=g-import-not-at-top
  c1, c2 = lip_config.get_config(f"size={size}"), eye_config.get_config(f"size={size}")
  audio = exp_models.audio_from_config(c1.model, c1.dtype)
  mapper = exp_models.mapper_from_config(c1.model, c1.dtype)
  gen = exp_models.generator_from_config(c2.model, c2.dtype)
  mel = jnp.zeros((1, frames, 16, 80))
  a_shape = jax.eval_shape(lambda: audio.apply(audio.init(jax.random.PRNGKey(0), mel), mel))
  a = jnp.zeros(a_shape.shape)
  e0, f0 = jnp.zeros((1, exp_models.NUM_COEFFS)), jnp.zeros((1, exp_models.NUM_EYE))
  z = jnp.zeros((1, frames, gen.noise_dim))
  f = jnp.zeros((1, frames, exp_models.NUM_EYE))
  rng = np.random.default_rng(0)
  init = lambda m, *xs: random_params(jax.eval_shape(m.init, jax.random.PRNGKey(0), *xs))
  params = {"audio": init(audio, mel), "mapper": init(mapper, a, e0, f),
            "gen": init(gen, a, f0, e0, z)}

  def predict(p, mel, e0, f0, z):
    feats = audio.apply(p["audio"], mel)
    f_hat, _ = gen.apply(p["gen"], feats, f0, e0, z)
    return mapper.apply(p["mapper"], feats, e0, f_hat)

  args = (params, jnp.asarray(rng.standard_normal(mel.shape), jnp.float32), e0, f0,
          jnp.asarray(rng.standard_normal(z.shape), jnp.float32))
  t0 = time.perf_counter()
  compiled = jax.jit(predict).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  total = statistics.median(times)
  row = {"target": "expression", "variant": "one pass", "frames": frames,
         "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
         "compile_s": round(compile_s, 2), "total_s": round(total, 3),
         "total_s_all": [round(t, 3) for t in times], "total_is_extrapolated": False,
         "frames_per_s": round(frames / total, 1), "peak_temp_mb": _memory_mb(compiled)}
  print(json.dumps(row), flush=True)
  return [row]


def _sum_targets(rows, frames: int) -> dict:
  out = {}
  for v in sorted({r["variant"] for r in rows}):
    rs = [r for r in rows if r["variant"] == v]
    total = sum(r["total_s"] for r in rs)
    out[v] = {"targets": [r["target"] for r in rs], "total_s": round(total, 2),
              "compile_s": round(sum(r["compile_s"] for r in rs), 2),
              "frames_per_s": round(frames / total, 2)}
  return out


def run_size(size, args, frames, e2e) -> dict:
  """Every variant for pose and gaze at `size` (and the requested end-to-end rows)."""
  rows, e2e_rows, num_params = [], [], {}
  repeats = args.paper_repeats if size == "paper" else args.repeats
  for target in ("pose", "gaze"):
    net, params, sched, c = build(size, target)
    num_params[target] = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    for v in args.variants.split(","):
      rows.append(time_window(net, params, sched, c, target, v, repeats, frames))
    for v in e2e.get(size, []):
      if target == "pose" or size == "tiny":  # paper: pose only (one call is > 40 s)
        e2e_rows.append(time_end_to_end(net, params, sched, c, target, v, frames,
                                        calls=1 if size == "paper" else 2))
    del params
  return {"size": size, "num_params": num_params, "rows": rows, "end_to_end": e2e_rows,
          "pose_plus_gaze": _sum_targets(rows, frames), "expression": time_expression(size, frames)}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sizes", default="tiny,paper")
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--variants", default="ddpm150,ddim50,ddim25")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--paper_repeats", type=int, default=1)
  parser.add_argument("--end_to_end", default="tiny:ddpm150,tiny:ddim50,tiny:ddim25,paper:ddim25",
                      help="size:variant pairs timed through sample_sequence ('' for none)")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results",
                                                    "gohd_motion.json"))
  args = parser.parse_args(argv)
  frames = int(round(args.seconds * FPS))
  e2e = {}
  for item in filter(None, args.end_to_end.split(",")):
    s, v = item.split(":")
    e2e.setdefault(s, []).append(v)
  t_start = time.perf_counter()
  sizes = [run_size(s, args, frames, e2e) for s in args.sizes.split(",")]
  result = {
      "benchmark": "gohd_motion", "seconds_of_audio": args.seconds, "frames": frames,
      "gamma": GAMMA, "params": "random init (timing only)", "sizes": sizes,
      "note_compile": ("generators.gohd.sample_sequence jits one window function per network "
                       "and sampler for the process (params are arguments): the first "
                       "end_to_end call of a variant includes its compile, later ones do not"),
  }
  speed_runs.write(args.out, result, t_start)
  print(json.dumps({s["size"]: s["pose_plus_gaze"] for s in sizes}, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
