r"""python -m jaxtalk.main --config=configs/posetalk/enhancer.py:size=tiny,data_dir=SHARDS,coarse=/tmp/coarse/params,refine=/tmp/refine/params --workdir=/tmp/enhancer

Stage 3 of PoseTalk's video generator: the Portrait Enhancer (UNet in the style of PIRender's
editing network) trained with CoarseNet and RefineNet frozen, with the perceptual loss only
(PoseTalk supplementary A.3; `jaxtalk/tasks/posetalk/enhancer.py`).

Args (`--config=configs/posetalk/enhancer.py:<args>`):
  size=paper: 256 px, windows of 5 frames, batch 20, 200k iterations, Adam 1e-4, L_perc only.
  size=tiny: 64 px, batch 8, widths 16..32; adds L1 terms; minutes on a CPU.
  coarse=PATH, refine=PATH: `<workdir>/params` of the two earlier stages (required to train).
  synthetic=true, data_dir=DIR, vgg=PATH: as in configs/posetalk/coarse.py.
"""

from configs.posetalk import coarse

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  return coarse.generator_config("enhancer", arg)
