"""`jaxtalk demo --methods`: which methods train, how the budget is split over their stages, how
GoHD's and PC-Talk's stages are wired to the earlier ones, PC-Talk's report pieces; and (slow)
the demo with PoseTalk and GoHD, and with PoseTalk and PC-Talk, end to end."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxtalk import methods
from jaxtalk.demo import report as demo_report
from jaxtalk.demo import run as demo

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_default_methods_follow_the_budget():
  assert demo.demo_methods(None, 2) == ("posetalk",)
  assert demo.demo_methods(None, demo.GOHD_MIN_MINUTES) == ("posetalk", "gohd")
  assert demo.demo_methods("gohd,posetalk", 2) == ("posetalk", "gohd")
  for bad in ("gohd", "pctalk", "gohd,pctalk", "posetalk,liveportrait", ","):
    with pytest.raises(ValueError, match="--methods"):
      demo.demo_methods(bad, 20)


def test_pctalk_only_when_named():
  """The default `--methods` never adds PC-Talk (the README's main command stays PoseTalk alone
  at its default 20 minutes); named, it comes after PoseTalk (and GoHD) as given."""
  assert demo.demo_methods(None, 20) == ("posetalk",)
  assert demo.demo_methods(None, 600) == ("posetalk", "gohd")
  assert demo.demo_methods("pctalk,posetalk", 6) == ("posetalk", "pctalk")
  assert demo.demo_methods("posetalk,gohd,pctalk", 6) == ("posetalk", "gohd", "pctalk")
  with pytest.raises(ValueError, match="give --methods posetalk,pctalk"):
    demo.demo_methods("pctalk", 60)


def test_pctalk_plan_trains_the_renderer_then_stitching():
  plan = dict(demo.planned_stages(("posetalk", "pctalk")))
  assert [s for s, _ in demo.planned_stages(("posetalk", "pctalk"))][-2:] == [
      "pctalk_renderer", "pctalk_stitching"]
  assert [s for s, _ in methods.get("pctalk").train_stages] == [s for s, _ in demo.PCTALK_STAGES]
  assert sum(plan.values()) == pytest.approx(1.0)
  pc = plan["pctalk_renderer"] + plan["pctalk_stitching"]
  assert pc == pytest.approx(0.5) and plan["pctalk_renderer"] / pc == pytest.approx(0.85)
  three = demo.planned_stages(("posetalk", "gohd", "pctalk"))
  assert sum(s for _, s in three) == pytest.approx(1.0)
  assert dict(three)["pctalk_stitching"] == pytest.approx(0.15 / 3)


def test_pctalk_stages_at_the_demo_resolution_and_wired(tmp_path):
  trained = {"pctalk_renderer": "/runs/train/pctalk_renderer/params"}
  r = demo.stage_config("pctalk_renderer", str(tmp_path), 48, 30.0, trained, ("held",), seed=3)
  assert r.model.image_size == r.input.resolution == 48
  assert r.input.window == r.render_frames and r.input.holdout == ("held",) and r.seed == 3
  assert r.input.data_dir == str(tmp_path) and not r.input.synthetic
  st = demo.stage_config("pctalk_stitching", str(tmp_path), 48, 30.0, trained)
  assert st.init_from.renderer == "/runs/train/pctalk_renderer/params"
  assert st.input.resolution == 48 and st.time_budget_s == 30.0
  assert demo.stage_config("pctalk_stitching", str(tmp_path), 64, 30.0, {}).init_from.renderer \
      == ""


class _FakeDriven:
  """`drive_motion` / `render_motion` recording their inputs; renders the driving frames."""

  def __init__(self):
    self.calls = []

  def drive_motion(self, source, frames, *, region="all"):
    self.calls.append((source, frames, region))
    return frames

  def render_motion(self, source, motion, *, mel, source_pose):
    assert mel is None and source_pose is None
    return np.asarray(motion) * 0.5


def test_drive_render_fn_drives_each_clip_by_its_own_frames():
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  model = _FakeDriven()
  frames = np.random.default_rng(0).uniform(-1, 1, (2, 5, 8, 8, 3)).astype(np.float32)
  out = reenactment.drive_render_fn(model, region="lip")(frames[:, 0], {"frames": frames})
  np.testing.assert_allclose(out, frames * 0.5)
  assert [c[2] for c in model.calls] == ["lip", "lip"]
  for b, (source, driving, _) in enumerate(model.calls):
    np.testing.assert_array_equal(source, frames[b, 0])
    np.testing.assert_array_equal(driving, frames[b])


def test_drive_video_cuts_the_clip_from_its_source(tmp_path):
  """`inputs/drive_<clip>.mp4` holds the clip's frames of its source video at full size and the
  clip's sound; without a readable source, its crops upscaled."""
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  src = rng.integers(0, 255, (30, 96, 96, 3), np.uint8)
  video_io.write_video(tmp_path / "src.mp4", list(src))
  n = 10
  clip = dict(clip_id="c1", source_path=str(tmp_path / "src.mp4"), start_time=0.4,
              frames=np.zeros((n, 16, 16, 3), np.float32),
              wav=0.1 * np.sin(np.arange(n * 640) / 7.0).astype(np.float32))
  out = demo_report.drive_video(tmp_path, clip)
  info = video_io.probe(out)
  assert out == tmp_path / "inputs" / "drive_c1.mp4"
  assert info["video_frames"] == n and (info["width"], info["height"]) == (96, 96)
  assert info["audio_codec"] == "aac"
  missing = dict(clip, clip_id="c2", source_path=str(tmp_path / "gone.mp4"))
  info = video_io.probe(demo_report.drive_video(tmp_path, missing))
  assert info["video_frames"] == n and info["width"] == 256


def test_pctalk_markdown_section():
  rows = {"pctalk (tiny)": dict(ssim=0.6, psnr=20.0), "source repeated": dict(ssim=0.5,
                                                                               psnr=19.0)}
  res = dict(export="/w/export_pctalk", reenactment=rows, reenactment_videos=["/w/r.mp4"],
             learning=demo_report.learning_checks(rows, {}, ours="pctalk (tiny)"),
             videos={"pctalk_drive": dict(path="/w/d.mp4", frames=100, audio_seconds=4.0,
                                          video_seconds=4.0, drive_from="/w/in.mp4"),
                     "pctalk_nod": dict(path="/w/n.mp4", frames=50, audio_seconds=2.0,
                                        video_seconds=2.0, pose_template="nod")})
  md = "\n".join(demo_report._method_markdown("pctalk", res))  # pylint: disable=protected-access
  assert md.startswith("## PC-Talk") and "--method pctalk" in md
  assert "driven by `/w/in.mp4`" in md and "pose template nod" in md
  assert "ssim_beats_source: passed (PC-Talk 0.6000" in md and "pctalk (tiny)" in md


def test_plan_covers_every_method_stage_and_the_whole_budget():
  plan = demo.planned_stages(("posetalk", "gohd"))
  names = [s for s, _ in plan]
  want = [s for m in ("posetalk", "gohd") for s, _ in methods.get(m).train_stages]
  assert names == want  # the methods' training order, PoseTalk first
  assert sum(share for _, share in plan) == pytest.approx(1.0)
  assert demo.planned_stages(("posetalk",)) == demo.STAGES
  assert set(demo.config_modules()) >= set(names)


def test_gohd_stages_load_the_earlier_stages(tmp_path):
  trained = {"syncnet": "/runs/syncnet/params", "gohd_exp_lip": "/runs/lip/params",
             "gohd_face_analysis": "/runs/fa/params"}
  lip = demo.stage_config("gohd_exp_lip", str(tmp_path), 64, 30.0, trained)
  assert lip.init_from.syncnet == "/runs/syncnet/params"
  eye = demo.stage_config("gohd_exp_eye", str(tmp_path), 64, 30.0, trained)
  assert eye.init_from.exp_lip == "/runs/lip/params"
  anim = demo.stage_config("gohd_animator", str(tmp_path), 48, 30.0, trained)
  assert anim.init_from.face_analysis == "/runs/fa/params"
  assert anim.model.image_size == anim.input.resolution == 48
  assert anim.input.data_dir == str(tmp_path) and not anim.input.synthetic
  # A stage not trained yet is left as the config has it.
  assert demo.stage_config("gohd_exp_lip", str(tmp_path), 64, 30.0, {}).init_from.syncnet == ""


def _run_demo(tmp_path, names: tuple[str, ...]) -> tuple[pathlib.Path, dict]:
  """`jaxtalk demo --minutes 6 --methods <names>` on the built-in clips (one CPU device, as a
  user runs it); checks every stage trained and the method's bundle; returns (workdir, report)."""
  exe = pathlib.Path(sys.executable).parent / "jaxtalk"
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip()
  proc = subprocess.run([str(exe), "demo", "--workdir", "runs/demo", "--minutes", "6",
                         "--methods", ",".join(names)], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=3000, check=False)
  assert proc.returncode == 0, proc.stderr[-6000:]
  workdir = tmp_path / "runs" / "demo"
  report = json.loads((workdir / "report.json").read_text())
  assert list(report["training"]) == [s for s, _ in demo.planned_stages(names)]
  for name in names[1:]:
    bundle = json.loads((workdir / f"export_{name}" / "bundle.json").read_text())
    assert bundle["method"] == name
  return workdir, report


def _check_videos(videos: dict) -> None:
  """Each generated video has AAC sound and one frame per 40 ms of it."""
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  for g in videos.values():
    info = video_io.probe(g["path"])
    assert info["audio_codec"] == "aac" and g["frames"] == round(g["audio_seconds"] * 25)
    assert info["video_frames"] == g["frames"]
    assert abs(g["video_seconds"] - g["audio_seconds"]) < 0.1


@pytest.mark.slow
def test_demo_with_both_methods(tmp_path):
  """`jaxtalk demo --methods posetalk,gohd` on the built-in clips with a small budget: every
  stage of both methods trains, both bundles are exported, GoHD's videos are as long as their
  audio and its reenactment rows sit beside the same baselines in the report."""
  workdir, report = _run_demo(tmp_path, ("posetalk", "gohd"))
  gohd = report["gohd"]
  assert set(gohd["videos"]) == {"gohd_generated", "gohd_nod"}
  _check_videos(gohd["videos"])
  rows = gohd["reenactment"]
  assert {"gohd (tiny)", "source repeated", "real frames"} <= set(rows)
  assert "ssim" in rows["gohd (tiny)"] and "ssim_beats_source" in gohd["learning"]
  md = (workdir / "report.md").read_text()
  assert "## GoHD" in md and "gohd (tiny)" in md


@pytest.mark.slow
def test_demo_with_pctalk(tmp_path):
  """`jaxtalk demo --methods posetalk,pctalk`: PC-Talk's renderer and stitching stages train
  (the stitching stage on that renderer), its bundle has the stitching MLPs, the video driven by
  a held-out clip and the nod video are as long as their sound, and its video-driven
  self-reenactment rows are finite beside the same baselines."""
  workdir, report = _run_demo(tmp_path, ("posetalk", "pctalk"))
  assert "gohd" not in report and report["methods"] == ["posetalk", "pctalk"]
  st = json.loads((workdir / "train" / "pctalk_stitching" / "config.json").read_text())
  assert st["init_from"]["renderer"] == str(workdir / "train" / "pctalk_renderer" / "params")
  assert json.loads((workdir / "export_pctalk" / "bundle.json").read_text())["stitching"]
  pc = report["pctalk"]
  assert set(pc["videos"]) == {"pctalk_drive", "pctalk_nod"}
  _check_videos(pc["videos"])
  drive = pc["videos"]["pctalk_drive"]
  assert drive["frames"] == round(demo_report.EVAL_SECONDS * 25)  # the held-out clip's length
  rows = pc["reenactment"]
  print("pctalk rows:", json.dumps(rows, indent=1))
  assert {"pctalk (tiny)", "source repeated", "real frames"} <= set(rows)
  ours = rows["pctalk (tiny)"]
  assert {"ssim", "psnr", "mouth_l1"} <= set(ours) and ours["num_clips"] == len(report["held_out"])
  assert all(np.isfinite(v) for v in ours.values() if isinstance(v, float))
  assert {"ssim_beats_source", "mouth_l1_beats_source"} <= set(pc["learning"])
  for p in pc["reenactment_videos"]:
    assert pathlib.Path(p).exists()
  md = (workdir / "report.md").read_text()
  assert "## PC-Talk" in md and "pctalk (tiny)" in md and "## GoHD" not in md


def test_gohd_stage_one_takes_the_demos_lip_sync_expert(tmp_path):
  """With both methods, gohd_exp_lip's Φ_a is PoseTalk's trained SyncNet (init_from.syncnet):
  the stage then has no audio params of its own and initialises (it once crashed here)."""
  from configs import syncnet as syncnet_config  # pylint: disable=g-import-not-at-top
  from configs.gohd import exp_lip  # pylint: disable=g-import-not-at-top
  from tests.renderers import gohd_runs  # pylint: disable=g-import-not-at-top
  expert = gohd_runs.init_stage(syncnet_config.get_config("size=tiny,synthetic=true"),
                                tmp_path / "syncnet")
  c = exp_lip.get_config(f"size=tiny,synthetic=true,syncnet={expert}")
  c.model.update(hidden=(16,))
  c.input.window = 16
  params = gohd_runs.init_stage(c, tmp_path / "lip")
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  loaded = checkpointing.load_params(params)
  assert not loaded.get("audio") and loaded["mapper"]
