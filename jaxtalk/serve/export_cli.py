"""`jaxtalk export`: a trained stage (params + StableHLO, `jaxtalk.serve.export`) or, given a
folder of stage workdirs, the generation bundle of a method (`jaxtalk.serve.bundle`).

  jaxtalk export --workdir RUNS_OR_STAGE --out DIR [--method posetalk] [--bf16]
                 [--platforms cpu,cuda]
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp

from jaxtalk.serve import export as export_lib


def run(argv) -> int:
  """Entry point of `jaxtalk export` (argv[0] is the program name)."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog=argv[0] if argv else "jaxtalk export",
      description="Params-only + StableHLO export of a trained stage (jaxtalk/serve/export.py), "
                  "or the generation bundle of a folder of stages (jaxtalk/serve/bundle.py).")
  parser.add_argument("--workdir", required=True,
                      help="training workdir with config.json and params/ (one stage), or a "
                           "folder of stage workdirs (<stage>/ or train/<stage>/, e.g. a demo "
                           "workdir): then the generation bundle for `jaxtalk generate`")
  parser.add_argument("--out", required=True, help="export directory to write")
  parser.add_argument("--method", default=None,
                      help="method whose stages a folder of stage workdirs holds (default: "
                           "posetalk if its stages are there, else the first method whose "
                           "required stages are; see jaxtalk/methods.py)")
  parser.add_argument("--bf16", action="store_true", help="store params in bfloat16")
  parser.add_argument("--platforms", default="",
                      help="comma-separated lowering platforms (default: this backend), "
                           "e.g. cpu,cuda,tpu")
  args = parser.parse_args(list(argv[1:]))

  platforms = [p for p in args.platforms.split(",") if p] or None
  from jaxtalk import methods  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  method = args.method or next((m for m in (methods.DEFAULT,) + methods.available()
                                if bundle_lib.is_runs_dir(args.workdir, m)), None)
  if method is not None and bundle_lib.is_runs_dir(args.workdir, method):
    try:
      manifest = bundle_lib.export_bundle(args.workdir, args.out, method=method,
                                          platforms=platforms,
                                          dtype=jnp.bfloat16 if args.bf16 else None)
    except (ValueError, OSError) as e:
      print(f"jaxtalk export: {e}", file=sys.stderr)
      return 2
    what = manifest["method"] + ": " + ", ".join(sorted(manifest.get("source", {})))
    print(f"exported the generation bundle ({what}) to {os.path.abspath(args.out)}; "
          f"use it with `jaxtalk generate --model {args.out}`")
    return 0

  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import sharding  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(args.workdir, "config.json")
  params_path = os.path.join(args.workdir, "params")
  for path in (config_path, params_path):
    if not os.path.exists(path):
      print(f"jaxtalk export: {path} not found (is {args.workdir} a finished training workdir?)",
            file=sys.stderr)
      return 2
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  task = tasks.get_task(config, mesh=mesh)
  params = checkpointing.load_params(params_path)
  sig = export_lib.export_stage(task, params, args.out, dtype=jnp.bfloat16 if args.bf16 else None,
                     platforms=platforms)
  what = "params + StableHLO" if "infer" in sig else "params only (stage has no infer function)"
  print(f"exported {what} of {config.task} to {os.path.abspath(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(run(sys.argv))
