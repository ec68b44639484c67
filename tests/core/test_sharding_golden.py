"""Golden parameter shardings of each stage's paper-size model (maxtext's idea).

For every trained network at `size=paper`, the PartitionSpec of each parameter on a
`(data=2, fsdp=2, tensor=2)` mesh under the default logical-axis rules (`jax.eval_shape`, no
compute) is compared with `tests/golden/sharding_<model>.json`, so a change of layout, logical
names or rules is a visible diff in review. After an intended change, regenerate the files with
`JAXTALK_UPDATE_GOLDEN=1 python -m pytest tests/core/test_sharding_golden.py`.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import pytest

from configs import syncnet as syncnet_config
from configs.gohd import pose as gohd_pose_config
from configs.posetalk import coarse as coarse_config
from configs.posetalk import enhancer as enhancer_config
from configs.posetalk import pld as pld_config
from configs.posetalk import pose_vae as vae_config
from configs.posetalk import refine as refine_config
from jaxtalk.core import sharding
from jaxtalk.models.gohd import pose_denoiser as gohd_denoiser
from jaxtalk.models.posetalk import pose_denoiser as den_lib
from jaxtalk.models import syncnet as syncnet_lib
from jaxtalk.tasks import syncnet as syncnet_task
from jaxtalk.tasks.posetalk import coarse as coarse_task
from jaxtalk.tasks.posetalk import pose_vae as vae_task

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
KEY = jax.random.key(0, impl="rbg")


def _renderer(name, module):
  def boxed():
    config = module.get_config("size=paper")
    t, r = int(config.input.window), int(config.input.resolution)
    src, pose, gaze, mel, sp = coarse_task.init_inputs(coarse_task.example_inputs(t, r))
    model = coarse_task.build(name, coarse_task.model_kwargs(config, name), "float32")
    if name == "coarse":
      return jax.eval_shape(model.init, KEY, src, pose, gaze, mel, sp)
    if name == "refine":
      return jax.eval_shape(model.init, KEY, jnp.zeros((1, t, r, r, 3)),
                            jnp.zeros((1, t, r, r, 2)), pose, gaze, mel, sp)
    return jax.eval_shape(model.init, KEY, src, jnp.zeros((1, t, r, r, 3)))
  return boxed


def _syncnet():
  config = syncnet_config.get_config("size=paper")
  model = syncnet_task.build_model(config)
  s = int(config.model.image_size)
  faces = jnp.zeros((1, syncnet_task.NF, s, s, 3))
  mel = jnp.zeros((1, syncnet_lib.MEL_STEPS, syncnet_lib.NUM_MELS))
  return jax.eval_shape(model.init, KEY, faces, mel)


def _pose_vae():
  config = vae_config.get_config("size=paper")
  model = vae_task.build_model(config.model)
  t = int(config.input.window)
  return jax.eval_shape(lambda: model.init({"params": KEY, "latent": KEY},
                                           jnp.zeros((1, t, 8)), jnp.ones((1, t), bool)))


def _pld():
  config = pld_config.get_config("size=paper")
  vae = vae_config.get_config("size=paper").model
  den = den_lib.from_config(config.model, int(vae.latent_tokens), int(vae.latent_dim))
  t = int(config.input.window)
  z = jnp.zeros((1, int(vae.latent_tokens), int(vae.latent_dim)))
  return jax.eval_shape(lambda: den.init(
      KEY, z, jnp.zeros((1,), jnp.int32), audio=jnp.zeros((1, t, 16, 80)),
      audio_mask=jnp.ones((1, t), bool), text_ids=jnp.zeros((1, 16), jnp.int32),
      text_mask=jnp.ones((1, 16), bool)))


def _gohd_pose():
  config = gohd_pose_config.get_config("size=paper")
  net = gohd_denoiser.from_config(config.model)
  t = int(config.input.window)
  return jax.eval_shape(net.init, KEY, jnp.zeros((1, t, 6)), jnp.zeros((1,), jnp.int32),
                        jnp.zeros((1, t, 16, 80)), jnp.zeros((1, 6)))


MODELS = {"syncnet": _syncnet, "gohd_pose": _gohd_pose, "pose_vae": _pose_vae, "pld": _pld,
          "coarse": _renderer("coarse", coarse_config),
          "refine": _renderer("refine", refine_config),
          "enhancer": _renderer("enhancer", enhancer_config)}


def param_specs(boxed) -> dict:
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  shard = sharding.logical_to_sharding(boxed, mesh, sharding.get_rules())
  flat = jax.tree_util.tree_flatten_with_path(shard)[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): [
      list(a) if isinstance(a, tuple) else a for a in s.spec] for path, s in flat}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_paper_param_shardings_match_golden(name):
  try:
    boxed = MODELS[name]()
  except AttributeError as e:
    pytest.fail(f"{name}: cannot build the paper model abstractly ({e})")
  specs = param_specs(boxed)
  path = GOLDEN / f"sharding_{name}.json"
  if os.environ.get("JAXTALK_UPDATE_GOLDEN"):
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(specs.items())]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n")
  golden = json.loads(path.read_text())
  changed = {k: (golden.get(k), v) for k, v in specs.items() if golden.get(k) != v}
  removed = sorted(set(golden) - set(specs))
  assert not changed and not removed, (
      f"{name}: shardings differ from {path} (regenerate with JAXTALK_UPDATE_GOLDEN=1 if "
      f"intended): changed {dict(list(changed.items())[:10])}, removed {removed[:10]}")
  assert any(any(a is not None for a in s) for s in specs.values()), f"{name}: nothing sharded"
