r"""python -m jaxtalk.main --config=configs/posetalk/refine.py:size=tiny,data_dir=SHARDS,coarse=/tmp/coarse/params --workdir=/tmp/refine

Stage 2 of PoseTalk's video generator: RefineNet (own Motion2Latent, multi-resolution motion
refinement 8x8 -> full resolution, eqs. 4-5) trained with CoarseNet frozen; loss eq. 10
(`jaxtalk/tasks/posetalk/refine.py`).

Args (`--config=configs/posetalk/refine.py:<args>`):
  size=paper: 256 px, random crops, windows of 5 frames, batch 20, 400k iterations, Adam 1e-4;
    loss = L_sync + 0.5 L_perc + 0.5 L_perc^mouth (eq. 10).
  size=tiny: 64 px (levels 8, 16, 32, 64), batch 8, widths 16..32; adds L1 terms; minutes on a CPU.
  coarse=PATH: `<coarse workdir>/params` (required to train; sets init_from.coarse).
  syncnet=PATH: the lip-sync expert's params (without it the sync weight is 0, with a warning).
  synthetic=true, data_dir=DIR, vgg=PATH: as in configs/posetalk/coarse.py.
"""

from configs.posetalk import coarse

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  return coarse.generator_config("refine", arg)
