"""The pctalk method (jaxtalk/renderers/pctalk.py): LivePortrait's relative motion, export, load,
rendering a `Motion`, the lip / eye ratios and video-driven reenactment, on the tiny renderer
(32 px) and stitching MLPs with synthetic params (random weights of the stages' parameter
shapes: flax's own init of the renderer takes about a minute on a busy CPU; what the trained
stages learn is their own tests, tests/tasks/test_pctalk_*_stage.py)."""

import importlib
import json

import jax
import numpy as np
import pytest

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.core import checkpointing
from jaxtalk.models.pctalk import keypoints as kp_lib
from jaxtalk.renderers import pctalk
from jaxtalk.renderers import posetalk
from jaxtalk.serve import bundle as bundle_lib
from jaxtalk.serve import generate
from jaxtalk.serve.video_io import InputError
from tests.serve import bad_inputs

R, K = 32, kp_lib.NUM_KEYPOINTS
# Output scales of the motion extractor's pose heads: angles ~0.3 rad, t ~0.1, s = 0.6 ± 0.05.
HEAD_SCALE = {"angles": 0.3, "translation": 0.1, "scale": 0.05}


def _renderer_config():
  from configs.pctalk import renderer  # pylint: disable=g-import-not-at-top
  c = renderer.get_config("size=tiny,synthetic=true")
  c.model.image_size = c.input.resolution = R   # the smallest the motion extractor takes
  return c


def _fill(shapes, seed: int, gain=lambda names: 1.0):
  """Arrays of `shapes` (a params tree of ShapeDtypeStructs): kernels N(0, gain² / fan_in),
  norm scales 1, everything else (biases, GRN gamma / beta) 0."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    names = [getattr(p, "key", "") for p in path]
    if names[-1] == "scale":
      return np.ones(s.shape, np.float32)
    if names[-1] != "kernel":
      return np.zeros(s.shape, np.float32)
    fan_in = int(np.prod(s.shape[:-1]))
    return (gain(names) * rng.standard_normal(s.shape) / np.sqrt(fan_in)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def synthetic_params(model_cfg, seed: int = 0):
  """Renderer params of the stage's shapes (`_fill`; the pose heads scaled by HEAD_SCALE)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import renderer as renderer_lib  # pylint: disable=g-import-not-at-top
  x = jax.ShapeDtypeStruct((1, R, R, 3), np.float32)
  shapes = nn.unbox(jax.eval_shape(renderer_lib.renderer_from_config(model_cfg).init,
                                   jax.random.key(0), x, x)["params"])
  return _fill(shapes, seed, lambda names: HEAD_SCALE.get(names[1], 1.0) if names[0] == (
      "motion_extractor") else 1.0)


@pytest.fixture(scope="module")
def pctalk_runs(tmp_path_factory):
  """`runs/pctalk_renderer/` and `runs/pctalk_stitching/` (trained with that renderer; random
  MLP weights) with config.json and params/, as train.py writes them."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from configs.pctalk import stitching as st_config  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import stitching as st_lib  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("pctalk") / "runs"
  workdir, st = root / pctalk.RENDERER, root / pctalk.STITCHING
  workdir.mkdir(parents=True)
  config = _renderer_config()
  tasks.resolve_config(config)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))
  checkpointing.save_params(workdir / "params", synthetic_params(config.model))
  st.mkdir()
  st_cfg = st_config.get_config(f"size=tiny,synthetic=true,renderer={workdir}/params")
  (st / "config.json").write_text(st_cfg.to_json_best_effort(indent=2))
  kp = jax.ShapeDtypeStruct((1, K, 3), np.float32)
  one, two = jax.ShapeDtypeStruct((1,), np.float32), jax.ShapeDtypeStruct((1, 2), np.float32)
  module = st_lib.StitchingRetargeting(K, int(config.model.stitching_hidden_scale))
  shapes = nn.unbox(jax.eval_shape(module.init, jax.random.key(0), kp, kp, one, one, two,
                                   one)["params"])
  checkpointing.save_params(st / "params", _fill(shapes, 1))
  return root


@pytest.fixture(scope="module")
def bundle_dir(pctalk_runs, tmp_path_factory):
  out = tmp_path_factory.mktemp("pctalk_export") / "bundle"
  bundle_lib.export_bundle(str(pctalk_runs), str(out), method="pctalk")
  return out


@pytest.fixture(scope="module")
def model(bundle_dir):
  return bundle_lib.load_bundle(bundle_dir)


def _images(n, seed=0):
  y, x = np.mgrid[0:R, 0:R] / R
  base = np.stack([x, y, x * y], -1).astype(np.float32) * 2 - 1
  rng = np.random.default_rng(seed)
  return np.clip(base[None] + 0.5 * rng.standard_normal((n, R, R, 3)), -1, 1).astype(np.float32)


def _random_motion(t, seed):
  rng = np.random.default_rng(seed)
  return {"canonical": rng.standard_normal((t, K, 3)), "angles": 0.4 * rng.standard_normal((t, 3)),
          "translation": np.concatenate([0.1 * rng.standard_normal((t, 2)), np.zeros((t, 1))], -1),
          "scale": 0.6 + 0.05 * rng.standard_normal(t),
          "delta": 0.1 * rng.standard_normal((t, K, 3))}


def _raw_pose(m):
  return np.concatenate([m["angles"], m["translation"][:, :2] / 2, m["scale"][:, None]], -1)


def _rot(angles):
  return np.asarray(kp_lib.rotation_matrix(angles[..., 0], angles[..., 1], angles[..., 2]))


# ----------------------------------------------------------------------------------------------
# Relative motion (no model).
# ----------------------------------------------------------------------------------------------
def test_relative_motion_is_livePortraits_composition():
  src, drv = _random_motion(1, 0), _random_motion(6, 1)
  pose, delta = pctalk.relative_motion(src, drv, "all")
  assert pose.shape == (6, 6) and delta.shape == (6, K, 3) and pose.dtype == np.float32
  want_r = _rot(drv["angles"]) @ np.swapaxes(_rot(drv["angles"][:1]), -1, -2) @ _rot(
      src["angles"])
  np.testing.assert_allclose(_rot(pose[:, :3]), want_r, atol=1e-5)   # R_i = R_di R_d0ᵀ R_s
  np.testing.assert_allclose(pose[:, 3:5], (src["translation"][0, :2] + drv["translation"][:, :2]
                                            - drv["translation"][:1, :2]) / 2, atol=1e-6)
  np.testing.assert_allclose(pose[:, 5], src["scale"][0] * drv["scale"] / drv["scale"][0],
                             rtol=1e-6)
  np.testing.assert_allclose(delta, src["delta"] + drv["delta"] - drv["delta"][:1], atol=1e-6)
  # Frame 0 (d0) gives back the source exactly; eq. 1 with the relative pose is a rigid motion.
  np.testing.assert_allclose(pose[0], _raw_pose(src)[0], atol=1e-5)
  np.testing.assert_allclose(delta[0], src["delta"][0], atol=1e-6)


def test_driving_with_the_sources_own_motion_gives_back_the_source():
  src = _random_motion(1, 2)
  drv = {k: np.repeat(v, 5, axis=0) for k, v in src.items()}
  for region in pctalk.REGIONS:
    pose, delta = pctalk.relative_motion(src, drv, region)
    np.testing.assert_allclose(pose, np.repeat(_raw_pose(src), 5, 0), atol=1e-5, err_msg=region)
    np.testing.assert_allclose(delta, np.repeat(src["delta"], 5, 0), atol=1e-6, err_msg=region)


def test_animation_regions_transfer_only_their_part():
  src, drv = _random_motion(1, 3), _random_motion(4, 4)
  full_pose, full_delta = pctalk.relative_motion(src, drv, "all")
  src_pose = np.repeat(_raw_pose(src), 4, 0)
  pose, delta = pctalk.relative_motion(src, drv, "pose")
  np.testing.assert_allclose(pose, full_pose, atol=1e-6)
  np.testing.assert_array_equal(delta, np.repeat(src["delta"], 4, 0).astype(np.float32))
  pose, delta = pctalk.relative_motion(src, drv, "exp")
  np.testing.assert_allclose(pose, src_pose, atol=1e-6)
  np.testing.assert_allclose(delta, full_delta, atol=1e-6)
  for region, rows in (("lip", kp_lib.LIP_KEYPOINTS),
                       ("eyes", kp_lib.EYE_KEYPOINTS + kp_lib.BROW_KEYPOINTS)):
    pose, delta = pctalk.relative_motion(src, drv, region)
    np.testing.assert_allclose(pose, src_pose, atol=1e-6)
    moved = np.abs(delta - src["delta"]).max((0, 2)) > 1e-6
    assert sorted(np.flatnonzero(moved)) == sorted(rows), region
    np.testing.assert_allclose(delta[:, list(rows)], full_delta[:, list(rows)], atol=1e-6)
  with pytest.raises(ValueError, match="unknown animation region 'mouth'"):
    pctalk.relative_motion(src, drv, "mouth")


# ----------------------------------------------------------------------------------------------
# The method, the bundle, the loaded model.
# ----------------------------------------------------------------------------------------------
def test_pctalk_is_registered_with_its_controls():
  m = methods.get("pctalk")
  assert "pctalk" in methods.available() and m.stages == ("pctalk_renderer", "pctalk_stitching")
  assert m.required == ("pctalk_renderer",) and m.stage_model is pctalk.stage_model
  assert m.train_stages == (("pctalk_renderer", "configs.pctalk.renderer"),
                            ("pctalk_stitching", "configs.pctalk.stitching"))
  for _, module in m.train_stages:
    assert callable(importlib.import_module(module).get_config)
  c = {x.name: x for x in m.controls}
  assert c["lip_ratio"].range == (0.0, 0.8) and c["eye_ratio"].range == (0.0, 0.5)
  assert c["lip_ratio"].default is None and c["eye_ratio"].default is None
  assert c["animation_region"].choices == ("exp", "pose", "lip", "eyes", "all")
  assert c["animation_region"].default == "all"
  assert {"drive_from", "pose_from", "pose_template", "pose_scale"} <= set(c)


def test_bundle_layout_and_load(bundle_dir, model):
  from jaxtalk.serve import export as export_lib  # pylint: disable=g-import-not-at-top
  manifest = json.loads((bundle_dir / "bundle.json").read_text())
  assert manifest["method"] == "pctalk" and manifest["resolution"] == R
  assert manifest["crop_scale"] == pctalk.DEFAULT_CROP_SCALE and manifest["chunk"] == pctalk.CHUNK
  assert manifest["num_keypoints"] == K
  assert manifest["stitching"] == {"dir": "stitching", "num_keypoints": K, "hidden_scale": 4}
  for f in ("renderer/infer.stablehlo", "renderer/params", "motion_extractor/infer.stablehlo",
            "motion_extractor/configs/pctalk_renderer.json", "stitching/params"):
    assert (bundle_dir / f).exists(), f
  assert manifest["renderer"]["inputs"]["delta"]["shape"] == ["b", pctalk.CHUNK, K, 3]
  # The motion extractor reloads with jax + orbax only; its batch is symbolic.
  exported, params, frozen = export_lib.load_exported(str(bundle_dir / "motion_extractor"))
  out = exported.call(params, frozen, {"image": _images(3)})
  assert {k: np.shape(v) for k, v in out.items()} == {
      "canonical": (3, K, 3), "angles": (3, 3), "translation": (3, 3), "scale": (3,),
      "delta": (3, K, 3)}
  assert isinstance(model, pctalk.PCTalkModel) and model.sample_motion is None
  assert model.stitching is not None and model.resolution == R
  # The copied stitching config no longer points to the training folders.
  st_cfg = json.loads((bundle_dir / "stitching" / "config.json").read_text())
  assert st_cfg["init_from"]["renderer"] == "" and st_cfg["input"]["data_dir"] == ""


def test_render_motion_shapes_range_and_the_sources_delta_by_default(model):
  src = _images(1)[0]
  ms = model.read_motion(src[None])
  pose = np.repeat(_raw_pose(ms), 3, 0)
  pose[1, 0] += 0.5                                     # frame 1 turned by 0.5 rad of yaw
  motion = motion_lib.Motion(pose=pose[None], gaze=np.zeros((1, 3, 2), np.float32))
  frames = model.render_motion(src, motion, mel=None, source_pose=np.zeros(6))
  assert frames.shape == (3, R, R, 3) and frames.dtype == np.float32
  assert np.isfinite(frames).all() and np.abs(frames).max() < 1.0
  assert np.abs(frames[1] - frames[0]).max() > 1e-4    # the pose moves the frame
  np.testing.assert_allclose(frames[2], frames[0], atol=1e-6)
  # keypoints None = the source's own δ on every frame.
  own = motion.replace(keypoints=np.repeat(ms["delta"], 3, 0)[None])
  np.testing.assert_allclose(model.render_motion(src, own, mel=None, source_pose=None), frames,
                             atol=1e-6)
  moved = np.array(own.keypoints)
  moved[0, 2, kp_lib.LIP_KEYPOINTS] += 0.3
  other = model.render_motion(src, own.replace(keypoints=moved), mel=None, source_pose=None)
  assert np.abs(other[2] - frames[2]).max() > 1e-4 and np.abs(other[:2] - frames[:2]).max() < 1e-6
  with pytest.raises(ValueError, match="keypoints"):
    model.render_motion(src, own.replace(keypoints=moved[:, :2]), mel=None, source_pose=None)


def test_ratios_without_the_stitching_stage_name_it(model):
  import dataclasses  # pylint: disable=g-import-not-at-top
  src, model = _images(1)[0], dataclasses.replace(model, stitching=None)
  motion = motion_lib.Motion(pose=np.tile([0, 0, 0, 0, 0, 0.6], (1, 3, 1)).astype(np.float32),
                             gaze=np.zeros((1, 3, 2), np.float32))
  with pytest.raises(InputError, match="pctalk_stitching"):
    model.render_motion(src, motion, mel=None, source_pose=None, lip_ratio=0.3)
  with pytest.raises(ValueError, match="eye_ratio"):
    model.render_motion(src, motion, mel=None, source_pose=None, eye_ratio=0.9)


def test_drive_motion_from_the_renderers_own_reading(model):
  src, frames = _images(1)[0], _images(5, seed=1)
  ms = model.read_motion(src[None])
  # Driven by the portrait itself: the portrait's own pose and δ on every frame.
  still = model.drive_motion(src, np.repeat(src[None], 4, 0))
  np.testing.assert_allclose(still.pose[0], np.repeat(_raw_pose(ms), 4, 0), atol=1e-5)
  np.testing.assert_allclose(still.keypoints[0], np.repeat(ms["delta"], 4, 0), atol=1e-5)
  full = model.drive_motion(src, frames)
  assert full.pose.shape == (1, 5, 6) and full.keypoints.shape == (1, 5, K, 3)
  assert np.abs(full.pose[0] - full.pose[0, :1]).max() > 1e-3   # the driving frames move it
  head = model.drive_motion(src, frames, region="pose")
  np.testing.assert_allclose(head.pose, full.pose, atol=1e-6)
  np.testing.assert_allclose(head.keypoints[0], np.repeat(ms["delta"], 5, 0), atol=1e-6)
  with pytest.raises(ValueError, match="animation region"):
    model.drive_motion(src, frames, region="nose")


def test_stage_model_renders_as_the_bundle(model, pctalk_runs):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks  # pylint: disable=g-import-not-at-top
  workdir = pctalk_runs / pctalk.RENDERER
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  task = tasks.get_task(config, mesh=None)
  params = checkpointing.load_params(workdir / "params")
  staged = methods.get("pctalk").stage_model(config, jax.jit(task.infer), params, task.frozen)
  src, frames = _images(1, seed=5)[0], _images(3, seed=6)
  motion = model.drive_motion(src, frames)
  np.testing.assert_allclose(staged.drive_motion(src, frames).pose, motion.pose, atol=1e-5)
  np.testing.assert_allclose(staged.render_motion(src, motion, mel=None, source_pose=None),
                             model.render_motion(src, motion, mel=None, source_pose=None),
                             atol=1e-5)


def test_lip_and_eye_ratios_through_the_stitching_stage(model):
  """The bundle's pctalk_stitching stage (random MLP weights): asking for the source's own lip
  ratio changes nothing, other ratios move the driven keypoints and so the frames."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import renderer as renderer_lib  # pylint: disable=g-import-not-at-top
  src = _images(1, seed=7)[0]
  ms = model.read_motion(src[None])
  motion = motion_lib.Motion(pose=np.repeat(_raw_pose(ms), 2, 0)[None],
                             gaze=np.zeros((1, 2, 2), np.float32))
  plain = model.render_motion(src, motion, mel=None, source_pose=None)
  own = float(kp_lib.keypoint_lip_ratio(renderer_lib.keypoints_of(
      {k: jnp.asarray(v) for k, v in ms.items()}))[0])
  np.testing.assert_allclose(model.retargeting(ms, lip_ratio=own), 0.0, atol=1e-6)
  assert np.abs(model.retargeting(ms, lip_ratio=own + 0.3)).max() > 1e-4
  closed = model.render_motion(src, motion, mel=None, source_pose=None, lip_ratio=0.0)
  wide = model.render_motion(src, motion, mel=None, source_pose=None, lip_ratio=0.8)
  assert np.abs(wide - closed).max() > 1e-4
  eyes = model.render_motion(src, motion, mel=None, source_pose=None, eye_ratio=0.0)
  assert np.abs(eyes - plain).max() > 1e-4


def test_stitching_trained_with_another_renderer_is_refused(pctalk_runs, tmp_path):
  import os  # pylint: disable=g-import-not-at-top
  runs = tmp_path / "runs"
  runs.mkdir()
  os.symlink(pctalk_runs / pctalk.RENDERER, runs / pctalk.RENDERER)
  st = runs / pctalk.STITCHING
  st.mkdir()
  os.symlink(pctalk_runs / pctalk.STITCHING / "params", st / "params")
  cfg = json.loads((pctalk_runs / pctalk.STITCHING / "config.json").read_text())
  cfg["init_from"]["renderer"] = str(tmp_path / "other_renderer" / "params")
  (st / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="trained with the renderer .*other_renderer"):
    bundle_lib.export_bundle(str(runs), str(tmp_path / "bundle"), method="pctalk")
  assert not (tmp_path / "bundle").exists() and not (tmp_path / "bundle.tmp").exists()


def _pipeline(bundle, method):
  """A `TalkingHeadPipeline` over an already loaded model (no bundle folder needed)."""
  p = generate.TalkingHeadPipeline.__new__(generate.TalkingHeadPipeline)
  p.bundle, p.method, p.resolution, p.pose_model = bundle, methods.get(method), R, None
  return p


def test_drive_options_are_checked_before_any_work(model):
  pose_talk = posetalk.PoseTalkModel(path="/models/posetalk", resolution=R, window=4,
                                     crop_scale=1.6, manifest={}, sample_motion=None)
  with pytest.raises(InputError, match="--drive drive.mp4: the posetalk method has no"):
    _pipeline(pose_talk, "posetalk").check_drive("drive.mp4", None)
  with pytest.raises(InputError, match="--animation-region exp: the posetalk method"):
    _pipeline(pose_talk, "posetalk").check_drive(None, "exp")
  pc = _pipeline(model, "pctalk")
  pc.check_drive("drive.mp4", "lip")
  pc.check_drive(None, "all")                          # the default: harmless without --drive
  with pytest.raises(InputError, match="'mouth': expected one of exp, pose, lip, eyes, all"):
    pc.check_drive("drive.mp4", "mouth")
  with pytest.raises(InputError, match="give --drive VIDEO"):
    pc.check_drive(None, "eyes")
  with pytest.raises(InputError, match="--pose-from"):
    pc.check_drive("drive.mp4", None, pose_from="other.mp4")
  with pytest.raises(InputError, match="--lip-ratio 0.9: outside 0 .. 0.8"):
    pc.render_controls(lip_ratio=0.9)
  assert pc.render_controls(lip_ratio=0.2, eye_ratio=0.3) == {"lip_ratio": 0.2,
                                                               "eye_ratio": 0.3}
  with pytest.raises(InputError, match="--lam 0.5: the pctalk method has no λ"):
    pc.render_controls(lam=0.5)
  with pytest.raises(InputError, match="--eye-ratio 0.2: the posetalk method"):
    _pipeline(pose_talk, "posetalk").render_controls(eye_ratio=0.2)


# ----------------------------------------------------------------------------------------------
# `jaxtalk generate --method pctalk --drive` on a real face (../shared/data).
# ----------------------------------------------------------------------------------------------
@pytest.mark.needs_data
def test_generate_drive_uses_the_videos_sound(bundle_dir, shared_data, tmp_path, capsys):
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  from tests import media  # pylint: disable=g-import-not-at-top
  speech = bad_inputs._speech(shared_data, 1.0)  # pylint: disable=protected-access
  drive = media.write_mp4(tmp_path / "drive.mp4", media.face_frames(shared_data, 25, 1.0), 25,
                          audio=speech)
  out = tmp_path / "driven.mp4"
  base = ["jaxtalk generate", "--image", str(shared_data / "images" / "musk.png"), "--model",
          str(bundle_dir), "--method", "pctalk", "--quiet", "--out", str(out)]
  code = generate.run(base + ["--drive", str(drive), "--animation-region", "pose",
                              "--lip-ratio", "0.4", "--eye-ratio", "0.2"])
  assert code == 0, capsys.readouterr().err[-2000:]
  meta = video_io.probe(out)
  assert meta["video_frames"] == 25 and (meta["width"], meta["height"]) == (R, R)
  assert abs(meta["audio_duration"] - 1.0) <= 1 / 25
  out.unlink()
  assert generate.run(base + ["--drive", str(drive), "--eye-ratio", "0.7"]) == 2
  assert "--eye-ratio 0.7: outside 0 .. 0.5" in capsys.readouterr().err and not out.exists()
  assert generate.run(base + ["--pose-template", "nod"]) == 2   # no --audio, no --drive
  assert "no speech: give --audio" in capsys.readouterr().err
  assert generate.run(base + ["--audio", str(drive)]) == 2      # PC-Talk has no generator yet
  assert "or --drive (a driving video)" in capsys.readouterr().err and not out.exists()


@pytest.mark.needs_data
@pytest.mark.parametrize("case", bad_inputs.BAD_INPUTS)
def test_bad_inputs_are_rejected_as_for_posetalk(case, bundle_dir, shared_data, tmp_path, capsys):
  bad_inputs.assert_rejected(case, bundle_dir, shared_data, tmp_path, capsys,
                             ("--method", "pctalk"))
