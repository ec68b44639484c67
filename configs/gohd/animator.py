r"""python -m jaxtalk.main --config=configs/gohd/animator.py:size=tiny,data_dir=/tmp/shards,face_analysis=/tmp/gohd_face_analysis/params --workdir=/tmp/gohd_animator

GoHD's face animator (section 3.3, eq. 9; supplementary B.1, eqs. 11-17): the latent-navigation
renderer driven by pose ⊕ expression windows and gaze, trained by self-reenactment against the
real frame with L_rec, L_perc, L_exp, L_gaze, L_pars and a non-saturating GAN loss
(`jaxtalk/tasks/gohd/animator.py`; networks `jaxtalk/models/gohd/animator.py`,
`jaxtalk/models/gohd/discriminator.py`).

Args (`--config=configs/gohd/animator.py:<args>`):
  size=paper: the release's animator (256², latent 512, 20 directions, radius 13: windows of
    27 frames; `configs/gohd/common.py`), Adam lr 1e-4 for the animator and its discriminator
    (GoHD implementation details), λ_rec 1, λ_perc 1, λ_exp 1, λ_gaze 100, λ_pars 1, GAN 1 (eq. 17),
    perceptual scales 256 / 128 / 64 / 32. Batch 16, 1 rendered frame per window, 400k steps
    (GoHD gives neither: jaxtalk's choice).
  size=tiny: 64², latent 64, radius 4 (windows of 9 frames), 3 rendered frames per window,
    batch 8, lr 1e-3, scales 64 / 32; λ_gaze 10 (the substitute's gaze is in normalised units,
    about 10x the radians L2CS returns); GAN after half the steps. Minutes on a CPU.
  synthetic=true / data_dir=DIR: synthetic batches, or shards + dataset_info.json with the
    expression coefficients (`jaxtalk expression-basis --data_dir DIR` adds them).
  face_analysis=PATH: the `gohd_face_analysis` stage's `<workdir>/params` (Φ_exp, Φ_gaze,
    Φ_pars substitutes); exp_export / gaze_export / parsing_export=FILE: a user's DECA / L2CS /
    BiSeNet exported with jax.export (`jaxtalk/pretrained/face_analysis.py`). None given: eqs.
    13-15 are off (announced).
  vgg=PATH: converted VGG19 .npz for L_perc (else the random-feature substitute).
  eval_fraction=F: fraction of clips held out for eval (input pipeline default when -1).
"""

from configs import common
from configs.gohd import common as gohd_common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", face_analysis="",
                          exp_export="", gaze_export="", parsing_export="", vgg="",
                          eval_fraction=-1.0)
  c = common.base_config()
  c.task = "jaxtalk.tasks.gohd.animator"
  c.model = gohd_common.animator_model_config(args.size)
  c.input.keys = ("frames", "source", "pose", "expression", "gaze", "landmarks", "mouth_box",
                  "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.resolution = c.model.image_size
  if args.eval_fraction >= 0:
    c.input.eval_fraction = args.eval_fraction
  c.vgg_weights = args.vgg
  c.init_from.face_analysis = args.face_analysis
  c.init_from.exp_export = args.exp_export
  c.init_from.gaze_export = args.gaze_export
  c.init_from.parsing_export = args.parsing_export
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.optax.lr = 1e-4
  c.disc_optax = c.optax.copy_and_resolve_references()
  # eq. 17's λs; lip/eye weights: M_lip&eye inside the boxes (GoHD gives no value; 1 doubles
  # the weight there). Mouth crop for the eval's mouth L1.
  c.loss = dict(rec=1.0, perc=1.0, exp=1.0, gaze=100.0, pars=1.0, gan=1.0, gan_start=0,
                lip_weight=1.0, eye_weight=1.0, perc_scales=(1.0, 0.5, 0.25, 0.125),
                mouth_size=32, mouth_box_scale=1.5)
  c.select_best = ""
  if args.size == "paper":
    c.render_frames = 1
    c.batch_size = 16
    c.total_steps = 400_000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  elif args.size == "tiny":
    c.render_frames = 3
    c.batch_size = 8
    c.total_steps = 600
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 20
    c.disc_optax.lr = 1e-3
    c.loss.gaze = 10.0
    c.loss.gan_start = 300
    c.loss.perc_scales = (1.0, 0.5)
    c.loss.mouth_size = 16
    c.log_every = 50
    c.eval_every = 300
    c.eval_batches = 4
    c.checkpoint_every = 600
    c.progress = False
  else:
    raise ValueError(f"gohd animator config: size={args.size!r}; expected paper or tiny")
  c.input.window = 2 * c.model.radius + c.render_frames
  return c
