r"""python -m jaxtalk.main --config=configs/pctalk/renderer.py:size=tiny,data_dir=/tmp/shards --workdir=/tmp/pctalk_renderer

PC-Talk's implicit-keypoint renderer (section 3.1, eqs. 1-3; LivePortrait's F, M, W, G), trained
by self-reenactment with the cascaded perceptual loss, equivariance, keypoint prior, head-pose,
deformation-prior and landmark-guided losses (`jaxtalk/tasks/pctalk/renderer.py`; networks
`jaxtalk/models/pctalk/renderer.py`).

Args (`--config=configs/pctalk/renderer.py:<args>`):
  size=paper: LivePortrait's modules at 256² (`configs/pctalk/common.py`), Adam lr 2e-4
    (LivePortrait's), batch 16, 2 driving frames per window, 400k steps (jaxtalk's choice),
    perceptual scales 256 / 128 / 64, face / eye / lip crops at 64 px.
  size=tiny: 64², batch 8, lr 1e-3, 2 driving frames per window, scales 64 / 32, crops 16 px.
    Minutes on a CPU.
  synthetic=true / data_dir=DIR: synthetic batches, or shards + dataset_info.json.
  vgg=PATH: converted VGG19 .npz for the perceptual loss (else the random-feature substitute).
  eval_fraction=F: fraction of clips held out for eval (input pipeline default when -1).
  gan=W: λ_gan of the multi-scale patch GAN (λ_fm = 10 W). Default 0.1 for size=paper
    (face-vid2vid's λs / 10), 0 for size=tiny (no discriminator: the tiny learning runs in
    benchmarks/results are without GAN).
"""

from configs import common
from configs.pctalk import common as pctalk_common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true",
                   "size=tiny,synthetic=true,gan=0.1")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", vgg="",
                          eval_fraction=-1.0, gan=-1.0)
  c = common.base_config()
  c.task = "jaxtalk.tasks.pctalk.renderer"
  c.model = pctalk_common.renderer_model_config(args.size)
  c.input.keys = ("frames", "source", "pose", "source_pose", "landmarks", "source_landmarks",
                  "mouth_box", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.resolution = c.model.image_size
  c.input.crop_adjusts_pose = True   # the pose head regresses tx, ty, scale of the crop seen
  if args.eval_fraction >= 0:
    c.input.eval_fraction = args.eval_fraction
  c.vgg_weights = args.vgg
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.optax.lr = 2e-4
  # face-vid2vid's λs / 10 (λ_perc = 1); λ_guide and λ_rec: jaxtalk's (module docstring).
  c.loss = dict(rec=1.0, perc=1.0, eq=2.0, prior=1.0, pose=2.0, delta=0.5, guide=5.0,
                perc_face=1.0, perc_eyes=1.0, perc_lips=1.0, perc_scales=(1.0, 0.5, 0.25),
                crop_size=64, eq_strength=0.1, mouth_size=32, mouth_box_scale=1.5,
                gan=0.1, fm=1.0, gan_start=0)
  c.disc = dict(scales=2, features=64, layers=3)
  c.disc_optax = c.optax.copy_and_resolve_references()
  c.render_frames = 2
  if args.size == "paper":
    c.batch_size = 16
    c.total_steps = 400_000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  elif args.size == "tiny":
    c.batch_size = 8
    c.total_steps = 600
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 20
    c.loss.perc_scales = (1.0, 0.5)
    c.loss.crop_size = 16
    c.loss.mouth_size = 16
    c.loss.gan = c.loss.fm = 0.0
    c.disc = dict(scales=2, features=16, layers=2)
    c.disc_optax.lr = 1e-3
    c.log_every = 50
    c.eval_every = 300
    c.eval_batches = 4
    c.checkpoint_every = 600
    c.progress = False
  else:
    raise ValueError(f"pctalk renderer config: size={args.size!r}; expected paper or tiny")
  if args.gan >= 0:
    c.loss.gan, c.loss.fm = args.gan, 10.0 * args.gan
  c.input.window = c.render_frames
  return c
