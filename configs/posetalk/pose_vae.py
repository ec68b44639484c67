r"""python -m jaxtalk.main --config=configs/posetalk/pose_vae.py:size=tiny,data_dir=/tmp/shards --workdir=/tmp/pose_vae

PoseTalk's pose VAE (paper "Pose Generation", eq. 1; MLD-style transformer VAE): normalised
pose + gaze windows `[B, T, 8]` -> latent `[B, N, D]` -> `[B, T, 8]`.

Args (`--config=configs/posetalk/pose_vae.py:<args>`):
  size=paper: PoseTalk's schedule (100 epochs, batch 16) with MLD's VAE (N = 1 latent token of
    D = 256, width 256, 9 blocks, 4 heads); windows of T = 100 frames (4 s; the paper does not give
    the window). total_steps = ceil(100 * train_windows / 16).
  size=tiny: N = 8, D = 16, width 64, 2 blocks; T = 50; 2000 steps; the linear moment path
    (model.moment_skip) and window augmentation (offsets 1.0, gains exp(+-0.5), channel mix 0.5);
    trains on the 64 px shards of ../shared/data in about four minutes on a 2-core CPU (how this
    setting was chosen: benchmarks/results/tuning_notes.md).
  synthetic=true: synthetic batches (smoke runs without shards).
  data_dir=DIR: shards + dataset_info.json written by `jaxtalk preprocess`.
  train_windows=N: training windows per epoch (size=paper step count; default 70000 ~ CelebV-Text).
"""

import math

from configs import common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", train_windows=70000)
  c = common.base_config()
  c.task = "jaxtalk.tasks.posetalk.pose_vae"
  c.input.keys = ("pose", "gaze", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.optax.name = "adamw"
  c.optax.schedule = "cosine"
  c.optax.weight_decay = 0.0
  # Eq. 1 (Huber) + MLD's small KL; variable_length_prob: fraction of training windows whose valid
  # length is cut to a random T' in [T/2, T] (mask), so the decoder learns to decode any length.
  # offset_std: std (normalised units) of a random constant offset added to each training window
  # (jaxtalk's augmentation: held-out speakers sit at other mean poses than a few training clips).
  # gain_std / channel_mix_prob / reverse_prob: see `jaxtalk.tasks.posetalk.pose_vae.augment`.
  c.loss = dict(huber_delta=1.0, recon_weight=1.0, kl_weight=1e-4, variable_length_prob=0.5,
                offset_std=0.0, gain_std=0.0, channel_mix_prob=0.0, reverse_prob=0.0)

  if args.size == "paper":
    c.model = dict(latent_tokens=1, latent_dim=256, width=256, depth=9, num_heads=4, mlp_mult=4,
                   dropout=0.1, basis_degree=15)
    c.input.window = 100
    c.batch_size = 16
    c.epochs = 100
    c.total_steps = int(math.ceil(c.epochs * args.train_windows / c.batch_size))
    c.optax.lr = 1e-4
    c.optax.warmup_steps = 1000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  elif args.size == "tiny":
    c.model = dict(latent_tokens=8, latent_dim=16, width=64, depth=2, num_heads=4, mlp_mult=2,
                   dropout=0.0, basis_degree=11, moment_skip=True)
    c.loss.update(offset_std=1.0, gain_std=0.5, channel_mix_prob=0.5)
    c.input.window = 50
    c.batch_size = 16
    c.epochs = 0  # step-based
    c.total_steps = 2000
    c.optax.lr = 3e-3
    c.optax.warmup_steps = 20
    c.log_every = 50
    c.eval_every = 500
    c.eval_batches = 2
    c.checkpoint_every = 1000
    c.progress = False
  else:
    raise ValueError(f"pose_vae config: size={args.size!r}; expected paper or tiny")
  return c
