r"""python -m jaxtalk.main --config=configs/posetalk/pld.py:size=tiny,data_dir=/tmp/shards,vae=/tmp/pose_vae/params --workdir=/tmp/pld

PoseTalk's Pose Latent Diffusion denoiser (paper "Pose Generation", eqs. 2-3): a transformer with
MLD long skips predicts the noise of frozen pose-VAE latents, conditioned on the timestep, the text
description and per-frame audio; text and audio are dropped independently in training, so
text+audio, text-only, audio-only and unconditional sampling (Table 3) come from one model.

Args (`--config=configs/posetalk/pld.py:<args>`):
  size=paper: PoseTalk's schedule (100 epochs, batch 128, guidance s = 7.5) with an MLD-sized
    denoiser (width 256, 9 blocks, 4 heads); 1000 scaled-linear diffusion steps, DDIM 50 steps.
  size=tiny: width 64, 3 blocks; trains on the 64 px shards of ../shared/data in minutes.
  vae=DIR: params of the trained pose VAE (`<pose_vae workdir>/params`); its `config.json` one
    directory up gives the VAE architecture.
  clip=DIR: local CLIP folder (FlaxCLIPTextModel + tokenizer); default: a trainable text encoder
    over the word vocabulary of dataset_info.json (a fallback, announced once).
  synthetic=true: synthetic batches. data_dir=DIR: shards + dataset_info.json.
  train_windows=N: training windows per epoch (size=paper step count; default 70000).
  audio=mel (default): the per-frame log-mel windows through a trainable audio encoder (the
    no-download fallback for wav2vec 2.0; announced once).
  audio=wav2vec: PoseTalk's audio condition: the per-frame wav2vec 2.0 features stored in the
    shards by `jaxtalk preprocess --wav2vec_path=DIR` (batch key `wav2vec [B, T, C]`) through
    `FeatureAudioEncoder` (`model.audio_input="features"`). C (`model.audio_dim`) and the wav2vec
    folder (`model.wav2vec_path`, used by `jaxtalk.generators.pld` to compute the same features from
    new audio; `sampling.wav2vec_seconds`: the clips' length) are read from the data_dir's
    dataset_info.json when training starts (`jaxtalk.tasks.posetalk.pld.resolve_config`, stored
    in the stage's config.json); shards without the feature are an error naming the data_dir.
    Synthetic data: C = `input.synthetic_wav2vec_dim`.
  wav2vec=DIR: the wav2vec 2.0 folder to record (default: the one preprocessing used).
"""

import math
import os

from configs import common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true",
                   "size=tiny,synthetic=true,audio=wav2vec", "size=paper,audio=wav2vec")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", vae="", clip="",
                          train_windows=70000, audio="mel", wav2vec="")
  if args.audio not in ("mel", "wav2vec"):
    raise ValueError(f"pld config: audio={args.audio!r}; expected mel or wav2vec")
  c = common.base_config()
  c.task = "jaxtalk.tasks.posetalk.pld"
  c.input.keys = ("pose", "gaze", "mel", "text_ids", "text_mask", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.text_len = 32
  c.init_from.pose_vae = args.vae
  # Latent/feature normalisation statistics live in the params ("stats") and are never trained.
  c.optax.freeze = ("^stats/",)
  c.optax.name = "adamw"
  c.optax.schedule = "cosine"
  c.optax.weight_decay = 0.0
  c.diffusion = dict(schedule="scaled_linear", num_steps=1000, beta_start=8.5e-4, beta_end=0.012,
                     sampler="ddim", sample_steps=50, eta=0.0, guidance=7.5)
  # Independent condition dropout (classifier-free guidance training).
  c.cond = dict(p_drop_text=0.2, p_drop_audio=0.2)
  c.sampling = dict(overlap=12, eval_modes=("text_audio", "text", "audio", "none"))

  if args.size == "paper":
    c.model = dict(width=256, depth=9, num_heads=4, mlp_mult=4, dropout=0.1, text_vocab_size=4096,
                   text_width=256, text_depth=2, audio_input="mel", audio_width=256,
                   audio_channels=32, clip_path=args.clip)
    c.input.window = 100
    c.batch_size = 128
    c.epochs = 100
    c.total_steps = int(math.ceil(c.epochs * args.train_windows / c.batch_size))
    c.optax.lr = 1e-4
    c.optax.warmup_steps = 1000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
    c.sampling.overlap = 25
  elif args.size == "tiny":
    c.model = dict(width=64, depth=3, num_heads=4, mlp_mult=2, dropout=0.0, text_vocab_size=1024,
                   text_width=64, text_depth=1, audio_input="mel", audio_width=64,
                   audio_channels=8, clip_path=args.clip)
    c.input.window = 50
    c.batch_size = 32
    c.epochs = 0  # step-based
    c.total_steps = 600
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 30
    c.log_every = 50
    c.eval_every = 600
    c.eval_batches = 1
    c.checkpoint_every = 600
    c.progress = False
  else:
    raise ValueError(f"pld config: size={args.size!r}; expected paper or tiny")
  if args.synthetic:
    c.input.synthetic_vocab_size = c.model.text_vocab_size
  if args.audio == "wav2vec":
    _use_wav2vec(c, args)
  return c


def _use_wav2vec(c, args):
  """Conditions on stored wav2vec 2.0 features instead of log-mel (see the module docstring)."""
  c.input.keys = ("pose", "gaze", "wav2vec", "text_ids", "text_mask", "mask")
  c.model.audio_input = "features"
  c.model.audio_feature = "wav2vec"
  # C when nothing says otherwise: wav2vec2-large / XLSR (1024) at paper size; small for tiny.
  c.model.audio_dim = 1024 if args.size == "paper" else 32
  c.model.wav2vec_path = os.path.abspath(args.wav2vec) if args.wav2vec else ""
  c.model.wav2vec_layer = -1  # last_hidden_state, what `jaxtalk preprocess` stores.
  # Sampling runs wav2vec on at most this much audio at once (the training clips' length).
  c.sampling.wav2vec_seconds = 10.0
  if args.synthetic:
    c.input.synthetic_wav2vec_dim = c.model.audio_dim
  # Real data: C, the folder (when not given), the layer and wav2vec_seconds come from the
  # data_dir's dataset_info.json at train time (`jaxtalk.tasks.posetalk.pld.resolve_config`);
  # a config never reads the disk.


def get_sweep(arg=None):
  """Learning rate x denoiser depth x classifier-free-guidance dropout (`launch/sweep.py`)."""
  del arg
  return [{"optax.lr": lr, "model.depth": depth, "cond.p_drop_text": p, "cond.p_drop_audio": p}
          for lr in (3e-4, 1e-3) for depth in (3, 6) for p in (0.1, 0.2)]
