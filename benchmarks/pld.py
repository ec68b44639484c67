r"""Time to sample head poses with PoseTalk's PLD: 10 s of audio, 50 DDIM steps, guidance 7.5.

  python benchmarks/pld.py [--size=tiny|paper] [--pld=<pld workdir>/params] [--seconds=10]
      [--steps=50] [--guidance=7.5] [--repeats=3] [--out=benchmarks/results/pld_tiny.json]

Without `--pld`, the tiny/paper architectures of configs/posetalk/pose_vae.py and
configs/posetalk/pld.py are
initialised randomly (sampling cost does not depend on the weights). Reports the compile time
(first call, per window shape) and the wall time of `jaxtalk.generators.pld.sample_motion` after
compilation (median of the repeats), with the number of windows. Target on this CPU: < 1.5 s for
10 s of poses. Prints and writes JSON; nothing is asserted.
"""

import argparse
import json
import os
import platform
import sys
import time


def random_bundle(size: str, steps: int):
  """A `PLDParams` with randomly initialised tiny/paper VAE and denoiser."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs.posetalk import pld as pld_config  # pylint: disable=g-import-not-at-top
  from configs.posetalk import pose_vae as vae_config  # pylint: disable=g-import-not-at-top
  from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top,g-multiple-import
  from jaxtalk.features import text  # pylint: disable=g-import-not-at-top,g-multiple-import
  from jaxtalk.models.posetalk import pose_denoiser as den_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks.posetalk import pose_vae as vae_task  # pylint: disable=g-import-not-at-top
  vc = vae_config.get_config(f"size={size}")
  pc = pld_config.get_config(f"size={size}")
  w = int(pc.input.window)
  vae = vae_task.build_model(vc.model)
  vp = nn.unbox(jax.jit(lambda r: vae.init({"params": r, "latent": r},
                                           jnp.zeros((1, w, 8))))(jax.random.PRNGKey(0))["params"])
  den = den_lib.from_config(pc.model, vae.latent_tokens, vae.latent_dim)
  lt = int(pc.input.text_len)
  dp = nn.unbox(jax.jit(lambda r: den.init(
      r, jnp.zeros((1, vae.latent_tokens, vae.latent_dim)), jnp.zeros((1,), jnp.int32),
      text_ids=jnp.zeros((1, lt), jnp.int32), text_mask=jnp.ones((1, lt), bool),
      audio=jnp.zeros((1, w, 16, 80))))(jax.random.PRNGKey(1))["params"])
  dp = dict(dp)
  dp["stats"] = {"latent_mean": np.float32(0), "latent_std": np.float32(1),
                 "feat_mean": np.zeros(8, np.float32), "feat_std": np.ones(8, np.float32)}
  diff = dict(pc.diffusion)
  diff["sample_steps"] = steps
  vocab = text.build_vocab(["the man talks and nods slowly while looking left"])
  return pld_lib.PLDParams(
      vae=vp, denoiser=dp, vae_model=dict(vc.model), model=dict(pc.model), diffusion=diff,
      window=w, overlap=int(pc.sampling.overlap), text_len=lt,
      tokenizer=text.make_tokenizer(vocab=vocab))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", default="tiny", choices=("tiny", "paper"))
  parser.add_argument("--pld", default="", help="<pld workdir>/params (default: random init)")
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--guidance", type=float, default=7.5)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, root)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxtalk.generators import pld as pld_lib  # pylint: disable=g-import-not-at-top,g-multiple-import
  from jaxtalk.motion import windows  # pylint: disable=g-import-not-at-top,g-multiple-import

  if args.pld:
    bundle = pld_lib.load_pld(args.pld)
    bundle.diffusion["sample_steps"] = args.steps
    source = args.pld
  else:
    bundle = random_bundle(args.size, args.steps)
    source = f"random init, size={args.size}"
  n = int(args.seconds * 16000)
  wav = (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
  frames = n // 640
  text = "the man talks and nods slowly" if bundle.tokenizer is not None else None

  t0 = time.perf_counter()
  pld_lib.sample_motion(bundle, wav[:bundle.window * 640], text=text, guidance=args.guidance)
  compile_s = time.perf_counter() - t0          # includes one window of sampling
  times = []
  for r in range(args.repeats):
    t0 = time.perf_counter()
    m = pld_lib.sample_motion(bundle, wav, text=text, guidance=args.guidance, seed=r)
    jax.block_until_ready(m.pose)
    times.append(time.perf_counter() - t0)
  result = {
      "benchmark": "pld_sample_motion",
      "source": source,
      "seconds_of_audio": args.seconds,
      "frames": frames,
      "windows": len(windows.window_starts(
          max(frames + 2 * pld_lib.preroll_frames(bundle.window, bundle.overlap), bundle.window),
          bundle.window, bundle.overlap)),
      "window": bundle.window,
      "overlap": bundle.overlap,
      "ddim_steps": args.steps,
      "guidance": args.guidance,
      "compile_plus_first_window_s": round(compile_s, 3),
      "sample_s_median": round(float(np.median(times)), 3),
      "sample_s_all": [round(t, 3) for t in times],
      "target_s": 1.5,
      "devices": [str(d) for d in jax.devices()[:1]],
      "cpu_count": os.cpu_count(),
      "load_average": os.getloadavg(),
      "platform": platform.platform(),
  }
  print(json.dumps(result, indent=2))
  out = args.out or os.path.join(root, "benchmarks", "results", f"pld_{args.size}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
  os.replace(out + ".tmp", out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
