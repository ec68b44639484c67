r"""python -m jaxtalk.main --config=configs/gohd/exp_lip.py:size=tiny,data_dir=/tmp/shards --workdir=/tmp/gohd_exp_lip

GoHD's expression predictor, stage 1 (section 3.2, eq. 5; supplementary B.2, eqs. 18-24):
audio-to-lip distillation, ẽ_t = MLP(Φ_a(a_t) ⊕ e_0 ⊕ f_t), on the shards' expression
coefficients (`jaxtalk expression-basis --data_dir SHARDS` writes them).

Args (`--config=configs/gohd/exp_lip.py:<args>`):
  size=paper: the paper's training values: Adam, lr 1e-4, windows of 30 frames; λ_lms 0.01,
    λ_eye 2, λ_shut 1, λ_read 2 (L_read only with lipreader=PATH), λ_1 2. GoHD gives
    no layer sizes: E_map is a 3 x 512 LeakyReLU MLP (jaxtalk's choice).
  size=tiny: a 2 x 128 MLP and a 64-wide mel encoder; trains on the 64 px shards in minutes.
  synthetic=true: synthetic batches. data_dir=DIR: shards + dataset_info.json.
  syncnet=PATH: the trained lip-sync expert's `<workdir>/params`: its audio encoder is Φ_a,
    frozen (as GoHD uses Wav2Lip's). Empty: a trainable mel encoder, announced once.
  lipreader=PATH: a lip reader serialized with jax.export (`jaxtalk.pretrained.lip_reader`: grey
    mouths [N, T, h, w] in [0, 1] -> features [N, T, D]) for L_read (eq. 23). Empty: L_read off,
    announced once.
  max_av_offset=N: train only on clips whose residual audio-visual offset is at most N frames
    (the paper's "re-synced videos"; -1 = every clip).
"""

from configs import common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", syncnet="",
                          lipreader="", max_av_offset=1)
  c = common.base_config()
  c.task = "jaxtalk.tasks.gohd.exp_lip"
  c.input.keys = ("mel", "expression", "eye_features", "source_expression", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.random_crop = False
  if args.max_av_offset >= 0:
    c.input.max_av_offset = args.max_av_offset
  c.init_from.syncnet = args.syncnet
  c.init_from.lipreader = args.lipreader
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.optax.lr = 1e-4
  c.loss = dict(lms=0.01, eye=2.0, shut=1.0, read=2.0, l1=2.0,
                landmark_px=90.0)  # pixels per IOD: a face filling a 224 px render (estimate).
  c.select_best = "eval/mld"
  if args.size == "paper":
    c.model = dict(hidden=(512, 512, 512), audio_width=256)
    c.input.window = 30
    c.batch_size = 64
    c.total_steps = 100000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  elif args.size == "tiny":
    c.model = dict(hidden=(128, 128), audio_width=64)
    c.input.window = 30
    c.batch_size = 16
    c.total_steps = 400
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 20
    c.log_every = 50
    c.eval_every = 200
    c.eval_batches = 2
    c.checkpoint_every = 400
    c.progress = False
  else:
    raise ValueError(f"gohd exp_lip config: size={args.size!r}; expected paper or tiny")
  return c
