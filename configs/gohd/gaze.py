r"""python -m jaxtalk.main --config=configs/gohd/gaze.py:size=tiny,data_dir=/tmp/shards --workdir=/tmp/gohd_gaze

GoHD's gaze generator: the network of configs/gohd/pose.py with 2 output channels (gaze pitch,
yaw), trained the same way (GoHD section 3.1: "the same network generates gaze"). Args as
configs/gohd/pose.py (target is fixed to gaze).
"""

from configs.gohd import pose

DOCUMENTED_ARGS = ("", "size=paper", "size=tiny", "size=tiny,synthetic=true")


def get_config(arg=None):
  arg = f"{arg},target=gaze" if arg else "target=gaze"
  return pose.get_config(arg)
