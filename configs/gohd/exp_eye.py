r"""python -m jaxtalk.main --config=configs/gohd/exp_eye.py:size=tiny,data_dir=/tmp/shards,exp_lip=/tmp/gohd_exp_lip/params --workdir=/tmp/gohd_exp_eye

GoHD's expression predictor, stage 2 (section 3.2, eqs. 6-8; supplementary B.2, eqs. 25-27):
an LSTM generates the eye-motion features f̂ from audio, f_0, e_0 and noise, through the frozen
stage 1 (`exp_lip=PATH`), against three least-squares discriminators (D_eye, D_te, D_tf).

Args (`--config=configs/gohd/exp_eye.py:<args>`):
  size=paper: the paper's values: Adam, lr 1e-4 (generator), 1e-6 (discriminators), windows of
    300 frames; λ_ssim 2, λ'_1 2, λ_ad 1, λ_te 1, λ_tf 1, λ_stage1 1 (stage 1's λs inside).
    GoHD gives no layer sizes: ω and the LSTM are 256 wide, z 16 (jaxtalk's choice).
  size=tiny: ω 64, z 8, windows of 100 frames, discriminators at lr 1e-4 (at 1e-6 they would
    not move in a few hundred steps); trains in minutes here.
  synthetic=true / data_dir=DIR: as configs/gohd/exp_lip.py.
  exp_lip=PATH: the trained stage 1's `<workdir>/params` (required).
  lipreader=PATH: as configs/gohd/exp_lip.py (L_read inside L_stage1).
"""

from configs import common
from configs.gohd import exp_lip

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", exp_lip="",
                          lipreader="", max_av_offset=-1)
  c = exp_lip.get_config(f"size={args.size},synthetic={args.synthetic},"
                         f"data_dir={args.data_dir},max_av_offset={args.max_av_offset},"
                         f"lipreader={args.lipreader}")
  c.task = "jaxtalk.tasks.gohd.exp_eye"
  c.input.keys = ("mel", "expression", "eye_features", "source_expression",
                  "source_eye_features", "mask")
  c.init_from.exp_lip = args.exp_lip
  stage1_terms = {k: c.loss[k] for k in ("lms", "eye", "shut", "read", "l1", "landmark_px")}
  c.loss = dict(ssim=2.0, l1=2.0, ad=1.0, te=1.0, tf=1.0, stage1=1.0, stage1_terms=stage1_terms)
  c.disc_optax.lr = 1e-6
  c.disc_optax.name = "adam"
  c.disc_optax.schedule = "constant"
  c.select_best = ""
  if args.size == "paper":
    c.model = dict(omega_dim=256, noise_dim=16, embed_hidden=(256,), out_hidden=(256,))
    c.disc = dict(width=128, depth=2, num_heads=4, channels=(64, 128, 256))
    c.input.window = 300
    c.batch_size = 16
  else:
    c.model = dict(omega_dim=64, noise_dim=8, embed_hidden=(64,), out_hidden=(64,))
    c.disc = dict(width=32, depth=1, num_heads=2, channels=(32, 64))
    c.input.window = 100
    c.batch_size = 8
    c.disc_optax.lr = 1e-4
  return c
