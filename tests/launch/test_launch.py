"""launch/: sweep expansion (and running it), and the shell launchers' syntax/arguments."""

import os
import subprocess

import pytest

from launch import sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = '''"""python -m jaxtalk.main --config=configs/toy.py --workdir=/tmp/toy"""
from configs import common

DOCUMENTED_ARGS = ("",)


def get_config(arg=None):
  a = common.parse_arg(arg, size="tiny")
  c = common.base_config()
  c.task = "regression_stage"
  c.model = dict(depth=2)
  return c


def get_sweep():
  return [{"optax.lr": lr, "model.depth": d} for lr in (1e-3, 3e-4) for d in (2, 4)]
'''


@pytest.fixture
def toy(tmp_path):
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "toy.py").write_text(_CONFIG)
  return tmp_path / "configs" / "toy.py"


def test_sweep_expands_into_distinct_runs(toy, tmp_path):
  runs = sweep.expand(f"{toy}:size=tiny", str(tmp_path / "runs"), ["--config.total_steps=5"])
  assert len(runs) == 4
  assert len({r["workdir"] for r in runs}) == 4
  first = runs[0]["argv"]
  assert first[1:3] == ["-m", "jaxtalk.main"]
  assert f"--config={toy}:size=tiny" in first
  assert "--config.optax.lr=0.001" in first and "--config.model.depth=2" in first
  assert first[-1] == "--config.total_steps=5"
  assert os.path.basename(runs[3]["workdir"]) == "003-lr=0.0003,depth=4"
  slurm = sweep.expand(str(toy), str(tmp_path / "runs"), launcher="slurm")
  assert slurm[0]["argv"][:3] == ["sbatch", "launch/slurm/train.sbatch", str(toy)]


def test_sweep_rejects_unknown_fields(toy, tmp_path):
  toy.write_text(_CONFIG.replace('"model.depth"', '"model.dpeth"'))
  with pytest.raises(ValueError, match="dpeth"):
    sweep.expand(str(toy), str(tmp_path))


def test_sweep_run_executes_each_command(toy, tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(sweep.subprocess, "call", lambda argv: calls.append(argv) or 0)
  assert sweep.main([f"--config={toy}", f"--root={tmp_path}", "--run"]) == 0
  assert len(calls) == 4 and len(capsys.readouterr().out.splitlines()) == 4
  monkeypatch.setattr(sweep.subprocess, "call", lambda argv: 3)
  assert sweep.main([f"--config={toy}", f"--root={tmp_path}", "--run"]) == 3


def _fake_bin(tmp_path, name):
  """A stand-in for gcloud/srun that records its arguments."""
  path = tmp_path / "bin" / name
  path.parent.mkdir(exist_ok=True)
  path.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" >> {tmp_path}/{name}.args\n')
  path.chmod(0o755)
  return path


def test_tpu_pod_script_runs_same_command_on_all_workers(tmp_path):
  _fake_bin(tmp_path, "gcloud")
  env = dict(os.environ, PATH=f"{tmp_path}/bin:" + os.environ["PATH"], PROJECT="proj")
  out = subprocess.run(
      ["bash", f"{REPO}/launch/tpu/run_pod.sh", "pod-1", "zone-a", "--", "python", "-m",
       "jaxtalk.main", "--config=configs/posetalk/pld.py:size=paper", "--workdir=/mnt/runs/pld"],
      env=env, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  args = (tmp_path / "gcloud.args").read_text().splitlines()
  assert args[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod-1"]
  assert "--worker=all" in args and "proj" in args
  command = args[args.index("--command") + 1]
  assert "JAXTALK_DISTRIBUTED=1" in command and "--workdir=/mnt/runs/pld" in command


def test_slurm_script_one_process_per_gpu(tmp_path):
  text = open(f"{REPO}/launch/slurm/train.sbatch").read()
  assert "--gpus-per-task" not in text.replace("no --gpus-per-task", "")
  assert "#SBATCH --ntasks-per-node=8" in text and "#SBATCH --gres=gpu:8" in text
  _fake_bin(tmp_path, "srun")
  (tmp_path / ".venv" / "bin").mkdir(parents=True)
  (tmp_path / ".venv" / "bin" / "activate").write_text("")
  env = dict(os.environ, PATH=f"{tmp_path}/bin:" + os.environ["PATH"],
             JAXTALK_DIR=str(tmp_path))
  out = subprocess.run(["bash", f"{REPO}/launch/slurm/train.sbatch", "configs/x.py:size=tiny",
                        str(tmp_path / "wd"), "--config.total_steps=3"],
                       env=env, capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr
  args = (tmp_path / "srun.args").read_text().splitlines()
  assert args[args.index("jaxtalk.main") + 1:] == [
      "--config=configs/x.py:size=tiny", f"--workdir={tmp_path}/wd", "--config.total_steps=3"]


def test_pld_config_sweep_expands(tmp_path):
  """The shipped sweep of configs/posetalk/pld.py names real fields and gives distinct workdirs."""
  runs = sweep.expand("configs/posetalk/pld.py:size=tiny", str(tmp_path))
  assert len(runs) == 8 and len({r["workdir"] for r in runs}) == 8
  assert any("--config.cond.p_drop_text=0.1" in r["argv"] for r in runs)
