r"""Expands a config module's `get_sweep()` into training runs.

  python launch/sweep.py --config=configs/posetalk/pld.py:size=tiny --root=runs/pld_sweep [--run]
      [--launcher=main|slurm] [-- --config.total_steps=500 ...]

`get_sweep()` (or `get_sweep(arg)`) in `configs/<stage>.py` returns a list of override dicts,
e.g. `[{"optax.lr": 1e-4}, {"optax.lr": 3e-4, "model.depth": 8}]`. Each becomes one run with
`--config.<key>=<value>` flags and its own workdir `<root>/<index>-<key=value,...>`. Every key is
checked against `get_config(arg)` first, so a typo fails before anything starts.

Without `--run` the commands are printed (pipe them into your scheduler); with `--run` they are
executed one after another (stopping at the first failure). `--launcher=slurm` prints/submits
`sbatch launch/slurm/train.sbatch CONFIG WORKDIR FLAGS...` instead of `python -m jaxtalk.main`.
Flags after `--` are appended to every run.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import re
import shlex
import subprocess
import sys
from typing import Any, Sequence


def load_config_module(path: str):
  """Imports a config file by path (the part of `--config` before ':')."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"sweep: config file {path} not found")
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:
    sys.path.insert(0, root)  # so `from configs import common` works
  spec = importlib.util.spec_from_file_location(
      "sweep_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _format_value(v: Any) -> str:
  if isinstance(v, bool):
    return "True" if v else "False"
  if isinstance(v, (list, tuple)):
    return "(" + ",".join(_format_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
  return str(v)


def _has_field(config, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    try:
      if part not in node:
        return False
      node = node[part]
    except TypeError:
      return False
  return True


def _slug(overrides: dict) -> str:
  text = ",".join(f"{k.split('.')[-1]}={_format_value(v)}" for k, v in overrides.items())
  return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", text)[:120] or "base"


def expand(config_arg: str, root: str, extra: Sequence[str] = (),
           launcher: str = "main") -> list[dict]:
  """Returns runs `[{"workdir", "overrides", "argv"}]` for the sweep of `config_arg`.

  Raises:
    ValueError: if the module has no `get_sweep`, or an override names a field the config
      does not have.
  """
  path, _, arg = config_arg.partition(":")
  module = load_config_module(path)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"sweep: {path} has no get_sweep()")
  takes_arg = bool(inspect.signature(module.get_sweep).parameters)
  sweep = module.get_sweep(arg or None) if takes_arg else module.get_sweep()
  base = module.get_config(arg or None)
  runs = []
  for i, overrides in enumerate(sweep):
    for key in overrides:
      if not _has_field(base, key):
        raise ValueError(f"sweep: {path} get_sweep()[{i}] sets unknown field {key!r}")
    workdir = os.path.join(root, f"{i:03d}-{_slug(overrides)}")
    flags = [f"--config.{k}={_format_value(v)}" for k, v in overrides.items()] + list(extra)
    if launcher == "main":
      argv = [sys.executable, "-m", "jaxtalk.main", f"--config={config_arg}",
              f"--workdir={workdir}"] + flags
    elif launcher == "slurm":
      argv = ["sbatch", "launch/slurm/train.sbatch", config_arg, workdir] + flags
    else:
      raise ValueError(f"sweep: launcher={launcher!r}; expected main or slurm")
    runs.append({"workdir": workdir, "overrides": dict(overrides), "argv": argv})
  return runs


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  extra: list[str] = []
  if "--" in argv:
    extra = argv[argv.index("--") + 1:]
    argv = argv[:argv.index("--")]
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="configs/<stage>.py[:args]")
  parser.add_argument("--root", required=True, help="parent directory of the runs' workdirs")
  parser.add_argument("--run", action="store_true", help="execute the runs (else print them)")
  parser.add_argument("--launcher", default="main", choices=("main", "slurm"))
  args = parser.parse_args(argv)
  runs = expand(args.config, args.root, extra, args.launcher)
  for run in runs:
    line = shlex.join(run["argv"])
    print(line, flush=True)
    if args.run:
      code = subprocess.call(run["argv"])
      if code:
        print(f"sweep: run {run['workdir']} failed with exit code {code}", file=sys.stderr)
        return code
  return 0


if __name__ == "__main__":
  sys.exit(main())
