r"""Measures the trainer on one stage config: sharded init time, compile time and steps/s.

  python benchmarks/train_step.py --config=configs/syncnet.py:size=tiny,synthetic=true \
      [--steps=20] [--devices=8] [--mesh=data=2,fsdp=2,tensor=2] [--out=FILE.json]

Uses the real `jaxtalk.train.Trainer` (same jitted, donated update step as training) on batches
from `jaxtalk.core.input_pipeline` (synthetic unless the config says otherwise). `--devices=N`
simulates N CPU devices. Prints and writes JSON; nothing here is asserted.
"""

import argparse
import json
import os
import platform
import sys
import time


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--devices", type=int, default=0, help="simulated CPU devices (0: real)")
  parser.add_argument("--mesh", default="", help="e.g. data=2,fsdp=2,tensor=2")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  if args.devices:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()
  import jax  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,unused-import
  from jaxtalk.core import input_pipeline, logging_utils, sharding  # pylint: disable=g-import-not-at-top,g-multiple-import
  from jaxtalk import tasks, train  # pylint: disable=g-import-not-at-top,g-multiple-import
  from launch import sweep  # pylint: disable=g-import-not-at-top

  path, _, arg = args.config.partition(":")
  config = sweep.load_config_module(path).get_config(arg or None)
  mesh_cfg = dict(config.mesh)
  for item in filter(None, args.mesh.split(",")):
    k, v = item.split("=")
    mesh_cfg[k] = int(v)
  mesh = sharding.make_mesh(mesh_cfg)
  task = tasks.get_task(config, mesh=mesh)
  it = input_pipeline.create_iterator(config, mesh=mesh, split="train")
  batches = [input_pipeline.to_global(next(it), mesh) for _ in range(min(args.steps, 4))]
  frozen = jax.device_put(task.frozen or {}, sharding.replicated(mesh))

  t0 = time.perf_counter()
  trainer = train.Trainer(config, task, mesh, batches[0])
  state = trainer.init_state(batches[0])
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, metrics = trainer.train_step(state, batches[0], frozen)
  jax.block_until_ready(metrics)
  first_step_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for i in range(args.steps):
    state, metrics = trainer.train_step(state, batches[i % len(batches)], frozen)
  jax.block_until_ready(metrics)
  dt = time.perf_counter() - t0
  result = {
      "benchmark": "train_step", "config": args.config, "mesh": dict(mesh.shape),
      "devices": jax.device_count(), "backend": jax.default_backend(),
      "cpu": platform.processor() or platform.machine(), "batch_size": config.batch_size,
      "params": logging_utils.count_params(trainer.abstract_params),
      "init_seconds": round(init_s, 3), "first_step_seconds_incl_compile": round(first_step_s, 3),
      "steps": args.steps, "steps_per_second": round(args.steps / dt, 3),
      "examples_per_second": round(args.steps * config.batch_size / dt, 2),
      "final_loss": float(metrics["loss"]),
  }
  print(json.dumps(result, indent=2))
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
