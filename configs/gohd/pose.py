r"""python -m jaxtalk.main --config=configs/gohd/pose.py:size=tiny,data_dir=/tmp/shards --workdir=/tmp/gohd_pose

GoHD's head-pose generator (section 3.1, eqs. 1-4, Fig. 3): a conformer-structured residual
denoiser predicts the noise of Δp = p − p_0 from per-frame audio, with and without p_0 (one
network, p_0 dropped in training; eq. 3 combines both with γ).

Args (`--config=configs/gohd/pose.py:<args>`):
  size=paper: GoHD's released network: 20 residual layers x 256 channels, dilation cycle 10;
    150-step linear schedule 1e-4 .. 0.05 sampled by DDPM; γ = 0.4; Adam, lr 6e-4; windows of
    100 frames (the paper does not give the window; 4 s as PoseTalk's).
  size=tiny: 4 layers x 32 channels, windows of 50 frames; trains on the 64 px shards of
    ../shared/data in minutes on a 2-core CPU; evals sample with 20 DDIM steps.
  synthetic=true: synthetic batches. data_dir=DIR: shards + dataset_info.json.
  target=pose (default) or gaze: the same network generates gaze (2 channels; configs/gohd/gaze.py).
  audio=mel (default; log-mel windows through a trainable encoder, the no-download fallback) or
    audio=wav2vec (the stored wav2vec 2.0 features of `jaxtalk preprocess --wav2vec_path`).
  train_windows=N: training windows per epoch (size=paper step count; default 70000).
"""

import math

from configs import common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true",
                   "size=tiny,synthetic=true,target=gaze")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", target="pose",
                          audio="mel", train_windows=70000)
  if args.target not in ("pose", "gaze"):
    raise ValueError(f"gohd pose config: target={args.target!r}; expected pose or gaze")
  if args.audio not in ("mel", "wav2vec"):
    raise ValueError(f"gohd pose config: audio={args.audio!r}; expected mel or wav2vec")
  c = common.base_config()
  c.task = "jaxtalk.tasks.gohd.motion_diffusion"
  audio_key = "mel" if args.audio == "mel" else "wav2vec"
  c.input.keys = (args.target, audio_key, "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.optax.freeze = ("^stats/",)  # the residuals' std, measured at init (never trained).
  c.diffusion = dict(schedule="linear", num_steps=150, beta_start=1e-4, beta_end=0.05,
                     sampler="ddpm", sample_steps=50, gamma=0.4)
  c.cond = dict(p_drop_p0=0.2)
  c.sampling = dict(overlap=25)

  if args.size == "paper":
    c.model = dict(channels=256, num_layers=20, dilation_cycle=10, num_heads=4, conv_kernel=15,
                   dropout=0.1, audio_width=256)
    c.input.window = 100
    c.batch_size = 32
    c.epochs = 100
    c.total_steps = int(math.ceil(c.epochs * args.train_windows / c.batch_size))
    c.optax.lr = 6e-4
    c.optax.warmup_steps = 0
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  elif args.size == "tiny":
    c.model = dict(channels=32, num_layers=4, dilation_cycle=2, num_heads=2, conv_kernel=7,
                   dropout=0.0, audio_width=32)
    c.input.window = 50
    c.batch_size = 16
    c.epochs = 0  # step-based
    c.total_steps = 600
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 20
    c.log_every = 50
    c.eval_every = 300
    c.eval_batches = 1
    c.checkpoint_every = 600
    c.diffusion.sample_steps = 20
    c.sampling.overlap = 12
    c.progress = False
  else:
    raise ValueError(f"gohd pose config: size={args.size!r}; expected paper or tiny")
  c.model.target = args.target
  c.model.audio_input = "mel" if args.audio == "mel" else "features"
  if args.audio == "wav2vec":
    c.model.audio_dim = 1024 if args.size == "paper" else 32
    if args.synthetic:
      c.input.synthetic_wav2vec_dim = c.model.audio_dim
  return c
