r"""python -m jaxtalk.main --config=configs/posetalk/coarse.py:size=tiny,data_dir=SHARDS --workdir=/tmp/coarse

Stage 1 of PoseTalk's video generator: CoarseNet (Motion2Latent + AdaIN hourglass, coarse flow),
loss eq. 9 (PoseTalk supplementary A.3; `jaxtalk/tasks/posetalk/coarse.py`).

Args (`--config=configs/posetalk/coarse.py:<args>`):
  size=paper: 256 px, random crops, windows of 5 frames, batch 20, 200k iterations, Adam 1e-4,
    5 Conformer blocks (width 256), hourglass widths 32..256; loss = L_sync + 0.5 L_perc +
    0.5 L_perc^mouth (eq. 9; the sync term needs `syncnet=<syncnet workdir>/params`).
  size=tiny: 64 px, batch 8 windows of 5 frames, widths 16..32, 2 Conformer blocks of width 32;
    adds L1 and mouth L1 terms; trains on the 64 px shards of ../shared/data in minutes on a CPU.
  synthetic=true: synthetic batches (smoke runs without shards).
  data_dir=DIR: ArrayRecord shards from `jaxtalk preprocess`.
Every eval also runs `config.evals.reenactment` (held-out clips rendered from their first frame;
`jaxtalk.evaluators.reenactment.HeldOutReenactment`).
  syncnet=PATH: params of the trained lip-sync expert (sets init_from.syncnet).
  vgg=PATH: converted VGG19 .npz for the perceptual loss (else the random-feature substitute).
"""

from configs import common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")

ARG_DEFAULTS = dict(size="paper", synthetic=False, data_dir="", syncnet="", vgg="", coarse="",
                    refine="")

M2L_PAPER = dict(latent_dim=256, model_dim=256, num_blocks=5, num_heads=4, conv_kernel=15,
                 audio_channels=(32, 64, 128, 128), audio_dim=128)
M2L_TINY = dict(latent_dim=32, model_dim=32, num_blocks=2, num_heads=2, conv_kernel=5,
                audio_channels=(8, 16, 16, 16), audio_dim=16)


def generator_config(stage: str, arg=None):
  """The shared config of the three generator stages (`coarse`, `refine`, `enhancer`)."""
  args = common.parse_arg(arg, **ARG_DEFAULTS)
  c = common.base_config()
  c.task = f"jaxtalk.tasks.posetalk.{stage}"
  c.input.keys = ("frames", "source", "source_pose", "pose", "gaze", "mel", "mouth_box", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.window = 5
  c.vgg_weights = args.vgg
  c.init_from.syncnet = args.syncnet
  c.init_from.coarse = args.coarse
  c.init_from.refine = args.refine
  c.optax.name = "adam"
  c.optax.clip_grad_norm = 1.0
  c.loss = dict(l1=0.0, mouth_l1=0.0, perceptual=0.5, mouth_perceptual=0.5, sync=1.0,
                perceptual_scales=(1.0, 0.5), mouth_size=64, mouth_box_scale=1.5)
  # Self-reenactment of held-out clips from their first frame, rendered as generation renders
  # (eval/reenactment/{ssim,psnr,mouth_l1} and the repeat-the-source baseline *_source).
  c.evals.reenactment = dict(type="reenactment", method="posetalk", max_clips=2, seconds=4.0)

  if args.size == "paper":
    c.input.resolution = 256
    c.batch_size = 20
    c.total_steps = 200_000
    c.optax.lr = 1e-4
    c.optax.schedule = "constant"
    c.eval_every = 5000
    c.log_every = 100
    c.checkpoint_every = 5000
    c.model = dict(
        coarse=dict(channels=(32, 64, 128, 256, 256), flow_scale=1.0, **M2L_PAPER),
        refine=dict(channels=(32, 64, 128, 256, 256, 256), flow_scale=1.0, **M2L_PAPER),
        enhancer=dict(channels=(32, 64, 128, 256, 256), num_bottleneck=2))
  elif args.size == "tiny":
    c.input.resolution = 64
    c.batch_size = 8
    c.total_steps = 300
    c.optax.lr = 2e-3
    c.optax.schedule = "cosine"
    c.optax.warmup_steps = 20
    c.optax.end_lr_factor = 0.1
    c.eval_every = 150
    c.eval_batches = 2
    c.log_every = 25
    c.checkpoint_every = 300
    c.loss.l1 = 1.0
    c.loss.mouth_l1 = 1.0
    c.loss.mouth_size = 32
    c.loss.sync = 1.0 if args.syncnet else 0.0
    c.model = dict(
        coarse=dict(channels=(16, 32, 32, 32), flow_scale=1.0, **M2L_TINY),
        refine=dict(channels=(16, 32, 32, 32), flow_scale=1.0, **M2L_TINY),
        enhancer=dict(channels=(16, 32, 32), num_bottleneck=1))
  else:
    raise ValueError(f"{stage} config: size={args.size!r}; expected paper or tiny")
  if stage in ("refine", "enhancer") and args.size == "tiny":
    # These stages start as the identity on their input frame; large Adam steps on the
    # zero-initialised output heads first move them away from it.
    c.optax.lr = 3e-4 if stage == "refine" else 1e-4
  if stage == "refine":
    c.total_steps = 400_000 if args.size == "paper" else c.total_steps
  if stage == "enhancer":
    c.total_steps = 200_000 if args.size == "paper" else c.total_steps
    c.loss.sync = 0.0           # Stage 3 uses only the perceptual loss (A.3).
    c.loss.mouth_perceptual = 0.0
    c.loss.perceptual = 1.0
  return c


def get_config(arg=None):
  return generator_config("coarse", arg)
