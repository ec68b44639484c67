r"""Trains one jaxtalk stage.

  python -m jaxtalk.main --config=configs/<stage>.py:<args> --workdir=DIR [--config.x.y=v ...]
  jaxtalk train --config=configs/<stage>.py:<args> --workdir=DIR [--config.x.y=v ...]

Examples:
  jaxtalk train --config=configs/posetalk/pose_vae.py:size=tiny --workdir=runs/pose_vae \
      --config.input.synthetic=True --config.total_steps=200

Re-running the same command resumes from the latest checkpoint in DIR. On a TPU pod or a SLURM
cluster run the same command in every process (see `launch/`); `jax.distributed.initialize()` is
called when the environment says the job has several processes.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Stage config file, e.g. configs/posetalk/pose_vae.py:size=tiny",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and params.")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError(
        "--config is required (e.g. --config=configs/posetalk/pose_vae.py:size=tiny)")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  # Imported here so that `--help` stays fast.
  from jaxtalk import train  # pylint: disable=g-import-not-at-top
  train.maybe_initialize_distributed()
  import jax  # pylint: disable=g-import-not-at-top
  logging.info("jax %s: process %d/%d, %d devices (%s)", jax.__version__, jax.process_index(),
               jax.process_count(), jax.device_count(), jax.default_backend())
  result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    if result["preempted"]:
      print(f"stopped at step {result['step']}; checkpoint saved in "
            f"{os.path.join(_WORKDIR.value, 'checkpoints')}; re-run the same command to resume")
    else:
      print(f"done: step {result['step']}; params in {os.path.join(_WORKDIR.value, 'params')}")


class _QuietLibraries:
  """absl log filter: drops INFO records of orbax/grain (dozens per checkpoint)."""

  def filter(self, record) -> bool:
    path = getattr(record, "pathname", "")
    return record.levelno > 20 or not any(f"/{lib}/" in path for lib in ("orbax", "grain"))


def run(argv) -> int:
  """Entry point of `jaxtalk train` (argv[0] is the program name)."""
  if any(a in ("-h", "--help", "--helpshort") for a in argv[1:]):
    print(__doc__.strip())
    print("\nflags:\n  --config: stage config file with optional :args, then"
          " --config.<field>=<value> overrides\n  --workdir: directory for checkpoints, logs and"
          " params"
          "\n  --helpfull: all flags (incl. absl logging flags)")
    return 0
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    app.run(_main, argv=list(argv))
  except SystemExit as e:
    return int(e.code or 0) if not isinstance(e.code, str) else 1
  return 0


if __name__ == "__main__":
  sys.exit(run(sys.argv))
