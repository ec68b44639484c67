"""The gohd method (jaxtalk/renderers/gohd.py): export, load, rendering and its controls, on tiny
synthetic-trained stages (tests/renderers/gohd_runs.py; no real data needed)."""

import json
import logging
import os

import numpy as np
import pytest

from jaxtalk import methods
from jaxtalk import motion as motion_lib
from jaxtalk.core import checkpointing
from jaxtalk.features import audio as audio_lib
from jaxtalk.motion import controls
from jaxtalk.renderers import gohd
from jaxtalk.serve import bundle as bundle_lib
from jaxtalk.serve.video_io import InputError

T = 11  # frames: one full chunk of 8 and a padded one


@pytest.fixture(scope="module")
def model(gohd_bundle):
  return bundle_lib.load_bundle(gohd_bundle)


def _moving_motion(seed=0, t=T, with_expression=True):
  rng = np.random.default_rng(seed)
  pose = np.zeros((1, t, 6), np.float32)
  pose[0, :, :3] = 0.3 * rng.standard_normal((t, 3))
  return motion_lib.Motion(
      pose=pose, gaze=0.2 * rng.standard_normal((1, t, 2)).astype(np.float32),
      expression=(rng.standard_normal((1, t, 64)).astype(np.float32) if with_expression
                  else None))


def _source(resolution=32):
  y, x = np.mgrid[0:resolution, 0:resolution] / resolution
  return np.stack([x, y, x * y], -1).astype(np.float32) * 2 - 1


def _mel(t=T):
  wav = 0.1 * np.sin(np.arange(t * 640) * 0.05).astype(np.float32)
  return audio_lib.mel_windows(audio_lib.log_mel(wav), t)


def test_gohd_is_registered_beside_posetalk():
  assert {"posetalk", "gohd"} <= set(methods.available())
  m = methods.get("gohd")
  assert m.required == ("gohd_animator",) and m.stage_model is gohd.stage_model
  names = {c.name for c in m.controls}
  assert {"lam", "pose_scale", "exp_scale", "gaze_mode", "pose_from", "gaze_from",
          "expression_from"} <= names


def test_bundle_layout_stablehlo_reload_and_self_contained(gohd_bundle, gohd_runs_dir):
  from jaxtalk.serve import export as export_lib  # pylint: disable=g-import-not-at-top
  manifest = json.loads((gohd_bundle / "bundle.json").read_text())
  assert manifest["method"] == "gohd" and manifest["resolution"] == 32
  assert manifest["radius"] == 2 and manifest["chunk"] == gohd.CHUNK
  assert sorted(manifest["motion_stages"]) == sorted(gohd.MOTION_STAGES)
  for f in ("data/dataset_info.json", "data/expression_basis.npz", "animator/infer.stablehlo",
            "gohd_exp_lip/params", "gohd_exp_eye/config.json"):
    assert (gohd_bundle / f).exists(), f
  # The animator reloads with jax + orbax only and reproduces its stored example outputs.
  exported, params, frozen = export_lib.load_exported(str(gohd_bundle / "animator"))
  ex = dict(np.load(gohd_bundle / "animator" / "example_inputs.npz"))
  assert ex["windows"].shape == (1, gohd.CHUNK, 5, 70) and ex["lam"].shape == (1, gohd.CHUNK)
  want = np.load(gohd_bundle / "animator" / "example_outputs.npz")["frames"]
  np.testing.assert_allclose(np.asarray(exported.call(params, frozen, ex)["frames"]), want,
                             atol=1e-5)
  two = {k: np.concatenate([v, v]) for k, v in ex.items()}
  assert exported.call(params, frozen, two)["frames"].shape == (2, gohd.CHUNK, 32, 32, 3)
  # Nothing but bundle.json's "source" record refers back to the training folders.
  roots = (str(gohd_runs_dir.parent),)
  for dirpath, _, names in os.walk(gohd_bundle):
    for name in names:
      if name.endswith(".json") and name != "bundle.json":
        text = open(os.path.join(dirpath, name)).read()
        assert not any(r in text for r in roots), os.path.join(dirpath, name)
  eye = json.loads((gohd_bundle / "gohd_exp_eye" / "config.json").read_text())
  assert eye["init_from"]["exp_lip"] == "../gohd_exp_lip/params"


def test_relative_init_from_resolves_against_the_stage_folder(tmp_path):
  (tmp_path / "a" / "params").mkdir(parents=True)
  (tmp_path / "b").mkdir()
  cfg = {"init_from": {"x": "../a/params", "y": "runs/not_here/params", "z": ""}}
  (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
  got = checkpointing.stage_config(tmp_path / "b" / "params")["init_from"]
  assert got == {"x": str(tmp_path / "a" / "params"), "y": "runs/not_here/params", "z": ""}


def test_render_lam_zero_is_the_source_latent_on_every_frame(model):
  src, motion, mel = _source(), _moving_motion(), _mel()
  driven = model.render_motion(src, motion, mel=mel, source_pose=np.zeros(6))
  still = model.render_motion(src, motion, mel=mel, source_pose=np.zeros(6), lam=0.0)
  assert driven.shape == (T, 32, 32, 3) and driven.dtype == np.float32
  assert np.abs(driven).max() < 1.0
  np.testing.assert_array_equal(still, np.broadcast_to(still[:1], still.shape))
  assert np.abs(driven - driven[:1]).max() > 1e-3  # the motion moves the frames
  # Per-frame lam: frames with lam 0 are the still frame.
  lam = np.where(np.arange(T) % 2 == 0, 0.0, 1.0).astype(np.float32)
  mixed = model.render_motion(src, motion, mel=mel, source_pose=np.zeros(6), lam=lam)
  np.testing.assert_allclose(mixed[::2], still[::2], atol=1e-6)
  np.testing.assert_allclose(mixed[1::2], driven[1::2], atol=1e-6)
  with pytest.raises(ValueError, match="lam"):
    model.render_motion(src, motion, mel=mel, source_pose=np.zeros(6), lam=np.ones(3))


def test_chunk_borders_do_not_change_frames(model):
  """Windows are computed over the whole motion, so a chunk starting at another frame (here
  frames 3-10 in one renderer call, against render_motion's 0-7 + 8-10) gives the same frames."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.gohd import animator as animator_lib  # pylint: disable=g-import-not-at-top
  src, motion, mel = _source(), _moving_motion(seed=1), _mel()
  eight = model.render_motion(src, motion, mel=mel, source_pose=np.zeros(6))
  norm = lambda x, k: (np.asarray(x[0]) - np.asarray(model.manifest[f"{k}_mean"])) / np.asarray(
      model.manifest[f"{k}_std"])  # noqa: E731
  coeffs = np.concatenate([norm(motion.pose, "pose"), motion.expression[0]], -1)[None]
  windows = np.asarray(animator_lib.driving_windows(jnp.asarray(coeffs, jnp.float32), 2))
  sl = slice(3, 3 + gohd.CHUNK)
  inputs = {"source": src[None], "windows": windows[:, sl],
            "gaze": norm(motion.gaze, "gaze")[None, sl].astype(np.float32),
            "lam": np.ones((1, gohd.CHUNK), np.float32)}
  shifted = np.asarray(model._call(model._params, {}, inputs)["frames"][0])  # pylint: disable=protected-access
  np.testing.assert_allclose(shifted, eight[sl], atol=1e-5)
  # ...while the frames do depend on their neighbours (the windows reach 2 frames out).
  moved = _moving_motion(seed=1)
  expr = np.array(moved.expression)
  expr[0, 5] += 3.0
  other = model.render_motion(src, moved.replace(expression=expr), mel=mel,
                              source_pose=np.zeros(6))
  changed = np.abs(other - eight).reshape(T, -1).max(-1) > 1e-6
  assert changed[3:8].all() and not changed[:3].any() and not changed[8:].any()


def test_stage_model_renders_as_the_bundle(model, gohd_bundle, gohd_runs_dir):
  """The in-training model (the stage's own infer, for reenactment evals) renders what the
  exported bundle renders."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks  # pylint: disable=g-import-not-at-top
  workdir = gohd_runs_dir / "gohd_animator"
  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
  config.input.data_dir = str(gohd_bundle / "data")
  task = tasks.get_task(config, mesh=None)
  params = checkpointing.load_params(workdir / "params")
  staged = methods.get("gohd").stage_model(config, jax.jit(task.infer), params, task.frozen)
  src, motion, mel = _source(), _moving_motion(seed=2), _mel()
  np.testing.assert_allclose(
      staged.render_motion(src, motion, mel=mel, source_pose=np.zeros(6)),
      model.render_motion(src, motion, mel=mel, source_pose=np.zeros(6)), atol=1e-5)


def test_sample_motion_starts_from_the_portraits_pose(model):
  wav = 0.1 * np.sin(np.arange(16000) * 0.05).astype(np.float32)
  p0 = np.array([0.1, -0.05, 0.02, 0.01, -0.01, 0.6], np.float32)
  src = motion_lib.Motion(pose=p0[None, None], gaze=np.zeros((1, 1, 2), np.float32),
                          expression=np.zeros((1, 1, 64), np.float32))
  m = model.sample_motion(wav, num_frames=25, source_motion=src, seed=0)
  assert m.pose.shape == (1, 25, 6) and m.gaze.shape == (1, 25, 2)
  assert m.expression.shape == (1, 25, 64)
  assert all(np.isfinite(np.asarray(x)).all() for x in (m.pose, m.gaze, m.expression))
  with pytest.raises(InputError, match="--pose-model"):
    model.sample_motion(wav, num_frames=25, source_motion=src, text="he nods")
  # Without a portrait: from the training data's mean pose (as `jaxtalk eval` samples).
  mean = np.asarray(model.manifest["pose_mean"], np.float32)
  np.testing.assert_allclose(model.sample_motion(wav, num_frames=25).pose,
                             model.sample_motion(wav, num_frames=25, source_motion=src.replace(
                                 pose=mean[None, None])).pose, atol=1e-6)


def test_expression_from_the_predictor_or_e0_held(model, gohd_renderer_bundle, caplog):
  motion = _moving_motion(with_expression=False)
  predicted = model.add_expression(motion, mel=_mel(), seed=0)
  assert predicted.expression.shape == (1, T, 64)
  assert np.isfinite(predicted.expression).all()
  bare = bundle_lib.load_bundle(gohd_renderer_bundle)
  assert bare.sample_motion is None and bare.expression_stage is None
  e0 = np.linspace(-1, 1, 64).astype(np.float32)
  with caplog.at_level(logging.INFO):
    held = bare.add_expression(motion, mel=_mel(), source_expression=e0)
  np.testing.assert_array_equal(held.expression, np.broadcast_to(e0, (1, T, 64)))
  assert "e_0 is held" in caplog.text
  # The renderer alone renders a Motion without expression (e_0 = 0 held).
  frames = bare.render_motion(_source(), motion, mel=_mel(), source_pose=np.zeros(6))
  assert frames.shape == (T, 32, 32, 3)


def test_portrait_expression_as_preprocessing_measures_it(model):
  """One frame is its own median shape: e_0 = 0; a clip's frames get their deviations."""
  from jaxtalk.features import expression  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  lm = (np.asarray(expression.synthetic_basis().mean, np.float32).reshape(1, -1, 3) * 0.1 + 0.5
        + 0.002 * rng.standard_normal((5, 478, 3))).astype(np.float32)
  np.testing.assert_allclose(model.expression_coefficients(lm[:1]), 0.0, atol=1e-6)
  e = model.expression_coefficients(lm)
  np.testing.assert_allclose(e, expression.coefficients(model.basis, lm), atol=1e-6)
  assert e.shape == (5, 64) and np.abs(e).max() > 1e-4


def test_export_errors_name_the_folder(gohd_runs_dir, tmp_path):
  runs = tmp_path / "runs"
  runs.mkdir()
  with pytest.raises(ValueError, match="no trained gohd_animator"):
    bundle_lib.export_bundle(str(runs), str(tmp_path / "b0"), method="gohd")
  os.symlink(gohd_runs_dir / "gohd_animator", runs / "gohd_animator")
  # An expression stage whose stage 1 is gone.
  eye = runs / "gohd_exp_eye"
  eye.mkdir()
  os.symlink(gohd_runs_dir / "gohd_exp_eye" / "params", eye / "params")
  cfg = json.loads((gohd_runs_dir / "gohd_exp_eye" / "config.json").read_text())
  cfg["init_from"]["exp_lip"] = str(tmp_path / "gone" / "params")
  (eye / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="gohd_exp_lip"):
    bundle_lib.export_bundle(str(runs), str(tmp_path / "b1"), method="gohd")
  assert not (tmp_path / "b1").exists() and not (tmp_path / "b1.tmp").exists()
  # A pose stage trained on other data than the animator.
  os.unlink(eye / "params")
  os.unlink(eye / "config.json")
  eye.rmdir()
  pose = runs / "gohd_pose"
  pose.mkdir()
  os.symlink(gohd_runs_dir / "gohd_pose" / "params", pose / "params")
  cfg = json.loads((gohd_runs_dir / "gohd_pose" / "config.json").read_text())
  cfg["input"].update(synthetic=False, data_dir=str(tmp_path / "other_shards"))
  (pose / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="different data"):
    bundle_lib.export_bundle(str(runs), str(tmp_path / "b2"), method="gohd")


def test_gaze_modes():
  m = _moving_motion()
  src = np.array([0.05, -0.1], np.float32)
  assert controls.gaze_mode(m, "generated") is m
  np.testing.assert_allclose(controls.gaze_mode(m, "freeze", src).gaze,
                             np.broadcast_to(src, (1, T, 2)))
  np.testing.assert_array_equal(controls.gaze_mode(m, "centre").gaze, 0.0)
  left, right = controls.gaze_mode(m, "left").gaze, controls.gaze_mode(m, "right").gaze
  assert np.all(np.asarray(left)[..., 1] > 0.2) and np.all(np.asarray(right)[..., 1] < -0.2)
  np.testing.assert_array_equal(np.asarray(left)[..., 0], 0.0)
  with pytest.raises(ValueError, match="unknown gaze mode"):
    controls.gaze_mode(m, "up")
  with pytest.raises(ValueError, match="source portrait"):
    controls.gaze_mode(m, "freeze")
