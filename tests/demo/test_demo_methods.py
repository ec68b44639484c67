"""`jaxtalk demo --methods`: which methods train, how the budget is split over their stages, how
GoHD's stages are wired to the earlier ones; and (slow) the demo with both methods end to end."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxtalk import methods
from jaxtalk.demo import run as demo

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_default_methods_follow_the_budget():
  assert demo.demo_methods(None, 2) == ("posetalk",)
  assert demo.demo_methods(None, demo.GOHD_MIN_MINUTES) == ("posetalk", "gohd")
  assert demo.demo_methods("gohd,posetalk", 2) == ("posetalk", "gohd")
  for bad in ("gohd", "posetalk,pctalk", ","):
    with pytest.raises(ValueError, match="--methods"):
      demo.demo_methods(bad, 20)


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


@pytest.mark.slow
def test_demo_with_both_methods(tmp_path):
  """`jaxtalk demo --methods posetalk,gohd` on the built-in clips with a small budget: every
  stage of both methods trains, both bundles are exported, GoHD's videos are as long as their
  audio and its reenactment rows sit beside the same baselines in the report."""
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  exe = pathlib.Path(sys.executable).parent / "jaxtalk"
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip()
  proc = subprocess.run([str(exe), "demo", "--workdir", "runs/demo", "--minutes", "6",
                         "--methods", "posetalk,gohd"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=3000, check=False)
  assert proc.returncode == 0, proc.stderr[-6000:]
  workdir = tmp_path / "runs" / "demo"
  report = json.loads((workdir / "report.json").read_text())
  assert list(report["training"]) == [s for s, _ in demo.planned_stages(("posetalk", "gohd"))]
  assert json.loads((workdir / "export_gohd" / "bundle.json").read_text())["method"] == "gohd"
  gohd = report["gohd"]
  assert set(gohd["videos"]) == {"gohd_generated", "gohd_nod"}
  for g in gohd["videos"].values():
    info = video_io.probe(g["path"])
    assert info["audio_codec"] == "aac" and g["frames"] == round(g["audio_seconds"] * 25)
    assert abs(g["video_seconds"] - g["audio_seconds"]) < 0.1
  rows = gohd["reenactment"]
  assert {"gohd (tiny)", "source repeated", "real frames"} <= set(rows)
  assert "ssim" in rows["gohd (tiny)"] and "ssim_beats_source" in gohd["learning"]
  md = (workdir / "report.md").read_text()
  assert "## GoHD" in md and "gohd (tiny)" in md


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
