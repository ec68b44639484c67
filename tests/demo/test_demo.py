"""The README's main command, run as a user runs it, with a small time budget.

`jaxtalk demo --workdir runs/demo` is the first thing a new user runs. It once crashed on a fresh
clone for three landings in a row while every test passed, because no test ran it. This module
runs it exactly as README.md's "Main job" block writes it (the `jaxtalk` console script in a
fresh working directory, one CPU device, as on a user's machine), only adding a small
`--minutes`, and checks every artifact of the report. If the README's main command fails, this
test fails.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MINUTES = 2  # the demo's floor: 60 s of training for the six stages (demo.py), plus compiles.


def readme_main_command() -> list[str]:
  """The command in README.md's "## Main job" section (first line of its first bash block)."""
  text = (REPO / "README.md").read_text()
  section = text.split("## Main job", 1)[1]
  block = re.search(r"```bash\n(.*?)\n```", section, re.S)
  assert block, "README.md: no ```bash block under '## Main job'"
  return block.group(1).splitlines()[0].split()


def _user_env() -> dict:
  """The environment of a user's machine: one CPU device, not the 8 simulated ones of
  tests/conftest.py."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "").strip()
  return env


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  """Runs the README's main command (+ `--minutes 2`) in a fresh folder; returns its workdir."""
  cmd = readme_main_command()
  assert cmd[:2] == ["jaxtalk", "demo"], cmd
  exe = pathlib.Path(sys.executable).parent / "jaxtalk"
  assert exe.exists(), f"{exe}: the README's install did not create the `jaxtalk` command"
  cwd = tmp_path_factory.mktemp("user")
  env = _user_env()
  proc = subprocess.run([str(exe)] + cmd[1:] + ["--minutes", str(MINUTES)], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=1500, check=False)
  assert proc.returncode == 0, (
      f"README main command {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-6000:]}")
  workdir = cwd / cmd[cmd.index("--workdir") + 1]
  return dict(cwd=cwd, workdir=workdir, stdout=proc.stdout, stderr=proc.stderr)


def test_main_command_writes_every_artifact(demo_run):
  from data_pipelines import decode  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import video_io  # pylint: disable=g-import-not-at-top
  workdir = demo_run["workdir"]
  assert "jaxtalk demo: done" in demo_run["stdout"]
  report = json.loads((workdir / "report.json").read_text())
  md = (workdir / "report.md").read_text()
  for heading in ("## Training", "## Videos", "## Self-reenactment", "## Head motion",
                  "## What these models can and cannot do", "## Timings"):
    assert heading in md, heading
  # Export bundle.
  manifest = json.loads((workdir / "export" / "bundle.json").read_text())
  assert manifest["pose_model"], manifest
  # Generated videos: H.264 + AAC, as long as their audio.
  assert set(report["videos"]) == {"generated_text", "generated_nod"}
  for name, g in report["videos"].items():
    info = video_io.probe(g["path"])
    assert info["audio_codec"] == "aac", (name, info)
    assert abs(g["video_seconds"] - g["audio_seconds"]) < 0.1, (name, g)
    assert g["frames"] == round(g["audio_seconds"] * 25), (name, g)
  # Self-reenactment of every held-out clip, and the metrics table with its baselines.
  assert report["held_out"]
  for path in report["reenactment_videos"]:
    assert video_io.probe(path)["video_frames"] > 1, path
  rows = report["reenactment"]
  assert set(rows) == {"jaxtalk (tiny)", "source repeated", "real frames"}
  for key in ("ssim", "psnr", "lpips", "mouth_l1", "lse_c", "lse_d"):
    assert np.isfinite(rows["jaxtalk (tiny)"][key]), key
  # The oracle row is the real frames: perfect SSIM, zero mouth L1 (the metrics are wired).
  assert rows["real frames"]["ssim"] > 0.999 and rows["real frames"]["mouth_l1"] < 1e-6
  assert set(report["learning"]) == {"ssim_beats_source", "mouth_l1_beats_source",
                                     "syncnet_beats_chance"}
  for mode in ("text_audio", "text", "audio"):
    assert np.isfinite(report["motion"][mode]["fd"]), mode
  sheet = workdir / "contact_sheet.png"
  frames = list(decode.iter_frames(str(report["videos"]["generated_nod"]["path"]), stop=1))
  assert sheet.stat().st_size > 0 and frames[0][1].ndim == 3


def test_every_stage_receives_training_batches(demo_run):
  from jaxtalk.demo import run as demo  # pylint: disable=g-import-not-at-top
  report = json.loads((demo_run["workdir"] / "report.json").read_text())
  stages = [name for name, _ in demo.STAGES]
  assert list(report["training"]) == stages
  for stage in stages:
    r = report["training"][stage]
    assert r["steps"] >= 1 and r["first_loss"] is not None, (stage, r)
    assert np.isfinite(r["last_loss"]), (stage, r)


def test_built_in_clips_are_estimated_in_sync(demo_run):
  """The built-in clips' lips are rendered from their own audio: preprocessing's audio-visual
  offset estimate must find them in sync (|offset| <= 1 frame) and be sure of it (confidence
  >= the 3.0 it needs to act on an estimate), so no filter drops them."""
  from data_pipelines import av_sync  # pylint: disable=g-import-not-at-top
  info = json.loads((demo_run["workdir"] / "shards" / "dataset_info.json").read_text())
  assert len(info["clips"]) == 6
  for c in info["clips"]:
    assert abs(c["av_offset"]) <= 1, c
    assert c["av_confidence"] >= av_sync.DEFAULT_MIN_CONFIDENCE, c
    assert not c.get("audio_shift"), c
  assert "still out of sync" not in demo_run["stderr"]


def test_rerun_resumes_without_retraining(demo_run):
  """Re-running the same command skips rendering, preprocessing and training (README)."""
  cmd = readme_main_command()
  exe = pathlib.Path(sys.executable).parent / "jaxtalk"
  env = _user_env()
  proc = subprocess.run([str(exe)] + cmd[1:] + ["--minutes", str(MINUTES)],
                        cwd=demo_run["cwd"], env=env, capture_output=True, text=True,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert proc.stderr.count("already trained") == 6, proc.stderr[-4000:]
  assert "preprocessing" not in proc.stderr.split("held-out clips")[0]
