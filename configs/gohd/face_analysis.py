r"""python -m jaxtalk.main --config=configs/gohd/face_analysis.py:size=tiny,data_dir=/tmp/shards --workdir=/tmp/gohd_face_analysis

jaxtalk's substitutes for the frozen networks of GoHD's animator losses (supplementary B.1):
Φ_exp (DECA/EMOCA, eq. 13), Φ_gaze (L2CS-Net, eq. 14) and Φ_pars (BiSeNet, eq. 15), one network
with three heads trained on the shards' own labels: expression coefficients (`jaxtalk
expression-basis --data_dir SHARDS` writes them), FaceMesh iris gaze and region masks rasterised
from the FaceMesh landmarks (jaxtalk/tasks/gohd/face_analysis.py). The animator stage loads the
result with `jaxtalk.pretrained.face_analysis.load_face_analysis` (its `<workdir>/params`).

Args (`--config=configs/gohd/face_analysis.py:<args>`):
  size=paper: 256 px, widths (32, 64, 128, 256, 512) (13.4M params), Adam lr 1e-4, batch 32
    windows x 2 frames, 100k steps. None of these come from GoHD (its networks are pretrained
    third-party ones): jaxtalk's choices.
  size=tiny: 64 px, widths (16, 32, 64, 128) (0.75M params), 600 steps at lr 1e-3; minutes on
    a CPU.
  synthetic=true: synthetic batches. data_dir=DIR: shards + dataset_info.json.
  eval_tail=F: > 0 evaluates on the last fraction F of every training clip (frames never trained
    on, same people); 0 (default) on the held-out clips (other people).
"""

from configs import common

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true",
                   "size=tiny,eval_tail=0.2")


def get_config(arg=None):
  args = common.parse_arg(arg, size="paper", synthetic=False, data_dir="", eval_tail=0.0)
  c = common.base_config()
  c.task = "jaxtalk.tasks.gohd.face_analysis"
  c.input.keys = ("frames", "expression", "gaze", "landmarks", "mask")
  c.input.synthetic = args.synthetic
  c.input.data_dir = args.data_dir
  c.input.eval_tail = args.eval_tail
  c.input.window = 2
  c.optax.name = "adam"
  c.optax.schedule = "constant"
  c.loss = dict(exp=1.0, gaze=1.0, pars=1.0)
  c.stats_batches = 8              # training batches measured for the eval baselines
  c.select_best = ""
  if args.size == "paper":
    c.model = dict(widths=(32, 64, 128, 256, 512), head_width=512, head_reduce=32)
    c.input.resolution = 256
    c.batch_size = 32
    c.optax.lr = 1e-4
    c.total_steps = 100000
    c.log_every = 100
    c.eval_every = 5000
    c.checkpoint_every = 5000
  elif args.size == "tiny":
    c.model = dict(widths=(16, 32, 64, 128), head_width=128, head_reduce=16)
    c.input.resolution = 64
    c.batch_size = 16
    c.optax.lr = 1e-3
    c.optax.warmup_steps = 20
    c.total_steps = 600
    c.log_every = 50
    c.eval_every = 300
    c.eval_batches = 4
    c.checkpoint_every = 600
    c.progress = False
  else:
    raise ValueError(f"gohd face_analysis config: size={args.size!r}; expected paper or tiny")
  return c
