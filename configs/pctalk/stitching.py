r"""python -m jaxtalk.main --config=configs/pctalk/stitching.py:size=tiny,data_dir=/tmp/shards,renderer=/tmp/pctalk_renderer/params --workdir=/tmp/pctalk_stitching

PC-Talk's stitching and eye / lip retargeting MLPs (LivePortrait's second stage) trained with the
implicit-keypoint renderer of `pctalk_renderer` frozen (`jaxtalk/tasks/pctalk/stitching.py`;
MLPs `jaxtalk/models/pctalk/stitching.py`).

Args (`--config=configs/pctalk/stitching.py:<args>`):
  size=paper: Adam lr 1e-4 (jaxtalk's choice), batch 16, 100k steps; MLP widths LivePortrait's
    (the renderer's `stitching_hidden_scale`).
  size=tiny: batch 8, lr 1e-3, 400 steps; minutes on a CPU.
  renderer=PATH: the trained pctalk_renderer's `<workdir>/params` (required; its config.json
    gives the renderer's size, which must match `size`'s resolution).
  synthetic=true / data_dir=DIR: synthetic batches, or shards + dataset_info.json.
  eval_fraction=F: fraction of clips held out for eval (input pipeline default when -1).
"""

from configs import common
from configs.pctalk import common as pctalk_common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", renderer="",
                          eval_fraction=-1.0)
  if args.size not in pctalk_common.RENDERER_SIZES:
    raise ValueError(f"pctalk stitching config: size={args.size!r}; expected one of "
                     f"{pctalk_common.RENDERER_SIZES}")
  c = common.base_config()
  c.task = "jaxtalk.tasks.pctalk.stitching"
  c.input.keys = ("frames", "source", "source_landmarks", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.resolution = pctalk_common.renderer_model_config(args.size).image_size
  c.input.window = 1
  if args.eval_fraction >= 0:
    c.input.eval_fraction = args.eval_fraction
  c.init_from.renderer = args.renderer
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.loss = dict(lip=1.0, eye=1.0, stitch=1.0, stitch_reg=0.5)
  if args.size == "paper":
    c.optax.lr = 1e-4
    c.batch_size = 16
    c.total_steps = 100_000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  else:
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 20
    c.batch_size = 8
    c.total_steps = 400
    c.log_every = 50
    c.eval_every = 200
    c.eval_batches = 4
    c.checkpoint_every = 400
    c.progress = False
  return c
