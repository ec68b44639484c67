"""Stage `pctalk_stitching` (jaxtalk/tasks/pctalk/stitching.py): keypoint ratios, the retargeting
target, one compile of loss + gradients + eval + infer over a frozen renderer, and a short fit of
the retargeting MLPs on one batch."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.pctalk import renderer as renderer_config
from configs.pctalk import stitching as stitching_config
from jaxtalk.core import checkpointing, sharding
from jaxtalk.models.pctalk import keypoints as kp_lib
from jaxtalk.models.pctalk import renderer as renderer_lib
from jaxtalk.tasks.pctalk import stitching as stage


def test_keypoint_ratios_equal_the_landmark_ratios_of_the_tied_landmarks():
  """Keypoints placed on their landmarks (crop units -> keypoint units) give FaceMesh's lip-open
  ratio exactly, and the eye ratio up to the eye-width constant."""
  rng = np.random.default_rng(0)
  lm = rng.uniform(0.2, 0.8, (3, 478, 3)).astype(np.float32)
  kp = np.zeros((3, kp_lib.NUM_KEYPOINTS, 3), np.float32)
  kp[:, list(kp_lib.LANDMARK_KEYPOINTS), :2] = lm[:, list(kp_lib.LANDMARK_INDICES), :2] * 2 - 1
  np.testing.assert_allclose(np.asarray(kp_lib.keypoint_lip_ratio(jnp.asarray(kp))),
                             np.asarray(kp_lib.lip_open_ratio(jnp.asarray(lm))), rtol=1e-5)
  width = kp_lib.EYE_WIDTH_PER_LID_SPAN * np.linalg.norm(lm[:, 159, :2] - lm[:, 386, :2], axis=-1)
  gap = np.linalg.norm(lm[:, 159, :2] - lm[:, 145, :2], axis=-1)
  np.testing.assert_allclose(np.asarray(kp_lib.keypoint_eye_ratio(jnp.asarray(kp)))[:, 0],
                             gap / width, rtol=1e-5)


def test_retarget_target_is_the_source_head_with_the_driving_expression():
  rng = np.random.default_rng(1)
  mk = lambda: {"canonical": jnp.asarray(rng.normal(size=(2, 21, 3)) * 0.3, jnp.float32),  # noqa
                "angles": jnp.asarray(rng.normal(size=(2, 3)) * 0.2, jnp.float32),
                "translation": jnp.asarray(rng.normal(size=(2, 3)) * 0.1, jnp.float32),
                "scale": jnp.asarray(rng.uniform(0.5, 0.8, (2,)), jnp.float32),
                "delta": jnp.asarray(rng.normal(size=(2, 21, 3)) * 0.05, jnp.float32)}
  ms, md = mk(), mk()
  k_s, k_tgt = stage.retarget_target(ms, md)
  np.testing.assert_allclose(np.asarray(k_s), np.asarray(renderer_lib.keypoints_of(ms)), atol=1e-6)
  same_expr = dict(ms, delta=md["delta"])
  np.testing.assert_allclose(np.asarray(k_tgt), np.asarray(renderer_lib.keypoints_of(same_expr)),
                             atol=1e-6)
  _, k_own = stage.retarget_target(ms, ms)
  np.testing.assert_allclose(np.asarray(k_own), np.asarray(k_s), atol=1e-6)


@pytest.fixture(scope="module")
def frozen_renderer(tmp_path_factory):
  """A randomly initialised tiny renderer at 32 px saved as a pctalk_renderer stage would be
  (params/ + config.json): the stitching stage only needs its interface here."""
  rc = renderer_config.get_config("size=tiny,synthetic=true")
  rc.model.image_size = rc.input.resolution = 32
  model = renderer_lib.renderer_from_config(rc.model)
  img = jnp.zeros((1, 32, 32, 3))
  params = jax.jit(model.init)(jax.random.key(0), img, img)["params"]
  d = tmp_path_factory.mktemp("pctalk_renderer")
  checkpointing.save_params(os.path.join(d, "params"), params)
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(rc.to_dict(), f, default=list)
  return os.path.join(d, "params")


def _config(renderer):
  c = stitching_config.get_config(f"size=tiny,synthetic=true,renderer={renderer}")
  c.input.resolution = 32
  return c


def _batch(c, b: int = 2):
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  c = c.copy_and_resolve_references()
  c.batch_size = b
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  return jax.tree.map(jnp.asarray, next(input_pipeline.create_iterator(c, mesh=mesh)))


def test_missing_renderer_or_other_resolution_is_a_clear_error(frozen_renderer):
  with pytest.raises(ValueError, match="init_from.renderer is empty"):
    stage.get_task(stitching_config.get_config("size=tiny,synthetic=true"), mesh=None)
  c = _config(frozen_renderer)
  c.input.resolution = 64
  with pytest.raises(ValueError, match="image_size=32"):
    stage.get_task(c, mesh=None)


def test_stage_loss_gradients_eval_infer_and_the_mlps_fit_one_batch(frozen_renderer):
  """Every term finite, every MLP gets a gradient (the zero-initialised output layers first),
  eval reports the no-retargeting baselines, infer keeps shapes; 40 Adam steps on one batch
  lower the lip and eye terms below their value without retargeting."""
  c = _config(frozen_renderer)
  task = stage.get_task(c, mesh=None)
  batch = _batch(c)
  params = task.init(jax.random.key(0), batch)
  opt = optax.adam(3e-3)

  @jax.jit
  def train_step(p, s):
    (_, aux), g = jax.value_and_grad(task.loss, has_aux=True)(p, batch, None, task.frozen, 0)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, aux, g

  p, s = params, opt.init(params)
  p, s, aux0, g0 = train_step(p, s)
  for k in ("loss_lip", "loss_eye", "loss_stitch", "loss_stitch_reg"):
    assert np.isfinite(float(aux0[k])), k
  for name in ("lip_mlp", "eye_mlp", "stitching_mlp"):
    assert float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(g0[name]["out"]))) > 0, name
  for _ in range(39):
    p, s, aux, _ = train_step(p, s)
  assert float(aux["loss_lip"]) < 0.7 * float(aux0["loss_lip"])
  assert float(aux["loss_eye"]) < 0.7 * float(aux0["loss_eye"])
  ev = jax.jit(task.evaluate)(p, batch, task.frozen)
  for k in ("lip_ratio_err", "lip_ratio_err_none", "eye_ratio_err", "stitch_l1",
            "stitch_l1_none"):
    assert np.isfinite(float(ev[k])), k
  ex = stage.example_inputs(kp_lib.NUM_KEYPOINTS, b=2)
  out = jax.jit(task.infer)(p, task.frozen, ex)["kp_driving"]
  assert out.shape == (2, kp_lib.NUM_KEYPOINTS, 3)
