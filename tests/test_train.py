"""Tests of the training loop (jaxtalk/train.py) on 8 simulated CPU devices.

They use `tests/regression_stage.py`, a small real regression task (test fixture) on synthetic
batches: sharded == single-device, params really sharded, resume after a stop / SIGTERM is
bit-identical, NaN stops training naming step and term, per-group optimizers.
"""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import regression_stage
from jaxtalk.core import checkpointing
from jaxtalk.core import input_pipeline
from jaxtalk.core import optimizers
from jaxtalk.core import sharding
from jaxtalk import tasks
from jaxtalk import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(arg="", **overrides):
  c = regression_stage.get_config(arg)
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  return c


def _assert_trees(a, b, exact=False, rtol=2e-5, atol=2e-6):
  fa, ta = jax.tree_util.tree_flatten_with_path(a)
  fb, tb = jax.tree_util.tree_flatten_with_path(b)
  assert ta == tb
  for (path, x), (_, y) in zip(fa, fb):
    if exact:
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))
    else:
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                 err_msg=str(path))


def test_sharded_run_equals_single_device(tmp_path):
  """4 steps with disc + EMA + grad accumulation: (2, 2, 2) mesh == one device."""
  c = _config("disc=true,ema=true,accum=2", total_steps=4, eval_every=2)
  big = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  r8 = train.train_and_evaluate(c, str(tmp_path / "mesh8"), mesh=big)
  r1 = train.train_and_evaluate(c, str(tmp_path / "mesh1"), mesh=one)
  assert r8["step"] == r1["step"] == 4
  _assert_trees(r8["params"], r1["params"])
  batch = input_pipeline.to_global(_batch(c), one)
  trainer = train.Trainer(c, tasks.get_task(c, mesh=one), one, batch)
  start = jax.device_get(trainer.init_state(batch)["params"])
  # Training moved the params (so the comparison is not between two untouched inits).
  moved = np.abs(r8["params"]["params"]["hidden"]["kernel"] -
                 start["params"]["hidden"]["kernel"]).max()
  assert moved > 1e-3
  h8 = [h for h in r8["history"] if "train/loss" in h]
  h1 = [h for h in r1["history"] if "train/loss" in h]
  assert [h["step"] for h in h8] == [2, 4]
  for a, b in zip(h8, h1):
    for k in ("train/loss", "train/loss_pose", "train/loss_adv", "train/disc_loss"):
      np.testing.assert_allclose(a[k], b[k], rtol=1e-5)
  evals = [h for h in r8["history"] if "eval/mse" in h]
  assert [h["step"] for h in evals] == [2, 4]
  # Files of the workdir.
  cfg = json.load(open(tmp_path / "mesh8" / "config.json"))
  assert cfg["total_steps"] == 4 and cfg["task"] == "regression_stage"
  assert len(open(tmp_path / "mesh8" / "metrics.jsonl").readlines()) == len(r8["history"])
  assert any(f.startswith("events") for f in os.listdir(tmp_path / "mesh8" / "tensorboard"))
  _assert_trees(checkpointing.load_params(tmp_path / "mesh8" / "params"), r8["params"],
                exact=True)


def test_grad_accumulation_equals_full_batch(tmp_path):
  """2 micro-batches of 4 == one batch of 8 (the loss is a mean over examples)."""
  # SGD without clipping: sensitive to the gradient's scale and to which examples were used.
  mesh = {"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2, "optax.name": "sgd",
          "optax.b1": 0.0, "optax.clip_grad_norm": 0.0, "optax.lr": 0.01}
  c1 = _config("accum=1", total_steps=3, eval_every=0, **mesh)
  c2 = _config("accum=2", total_steps=3, eval_every=0, **mesh)
  r1 = train.train_and_evaluate(c1, str(tmp_path / "a1"))
  r2 = train.train_and_evaluate(c2, str(tmp_path / "a2"))
  _assert_trees(r1["params"], r2["params"], rtol=1e-4, atol=1e-5)


def _batch(c):
  it = input_pipeline.create_iterator(c, split="train")
  return next(it)


def test_params_and_optimizer_state_sharded_along_fsdp():
  c = _config("ema=true")
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  task = tasks.get_task(c, mesh=mesh)
  batch = input_pipeline.to_global(_batch(c), mesh)
  trainer = train.Trainer(c, task, mesh, batch)
  state = trainer.init_state(batch)
  kernel = state["params"]["params"]["hidden"]["kernel"]  # [88, 64] ("embed", "mlp")
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert {s.data.shape for s in kernel.addressable_shards} == {(44, 32)}
  ema = state["ema_params"]["params"]["hidden"]["kernel"]
  assert ema.sharding.spec == kernel.sharding.spec
  # Adam's moments follow their parameter's sharding.
  flat = jax.tree_util.tree_flatten_with_path(state["opt_state"])[0]
  moments = [x for p, x in flat if "hidden/kernel" in optimizers.path_str(p)]
  assert len(moments) == 2
  for m in moments:
    assert m.sharding.spec == kernel.sharding.spec
  # A rule override changes the layout: embed replicated.
  c2 = _config("", sharding_rules=(("embed", None),))
  t2 = train.Trainer(c2, tasks.get_task(c2, mesh=mesh), mesh, batch)
  k2 = t2.init_state(batch)["params"]["params"]["hidden"]["kernel"]
  assert {s.data.shape for s in k2.addressable_shards} == {(88, 32)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """An uninterrupted 6-step run (2N, N=3) with EMA."""
  d = tmp_path_factory.mktemp("full")
  c = _config("ema=true", total_steps=6, checkpoint_every=3, eval_every=0)
  return c, d, train.train_and_evaluate(c, str(d))


def _next_batch(c, workdir):
  it = input_pipeline.create_iterator(c, split="train")
  checkpointing.restore_iterator(os.path.join(workdir, "checkpoints"), None, it)
  return next(it)


def _saved_state(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  with ocp.StandardCheckpointer() as ck:
    return jax.device_get(ck.restore(os.path.join(workdir, "checkpoints", str(step), "state")))


def test_resume_after_stop_is_identical(uninterrupted, tmp_path):
  c, full_dir, full = uninterrupted
  d = str(tmp_path / "resumed")
  first = train.train_and_evaluate(c, d, stop_after=3)
  assert first["preempted"] and first["step"] == 3
  assert not os.path.exists(os.path.join(d, "params"))
  # The uninterrupted run saved step 3 asynchronously while its next steps reused (donated)
  # the buffers: its checkpoint must still equal the state of the run that stopped there.
  _assert_trees(_saved_state(full_dir, 3), _saved_state(d, 3), exact=True)
  second = train.train_and_evaluate(c, d)  # the same command again
  assert second["step"] == 6 and not second["preempted"]
  assert [h["step"] for h in second["history"]] == [4, 6]
  _assert_trees(second["params"], full["params"], exact=True)
  _assert_trees(_next_batch(c, d), _next_batch(c, str(full_dir)), exact=True)
  # Loss logged at step 6 equals the uninterrupted run's.
  assert second["history"][-1]["train/loss"] == pytest.approx(
      full["history"][-1]["train/loss"], rel=1e-6)


def test_sigterm_saves_and_resume_is_identical(uninterrupted, tmp_path, monkeypatch):
  c, full_dir, full = uninterrupted
  d = str(tmp_path / "sigterm")
  real_to_global = input_pipeline.to_global
  calls = []

  def to_global_then_sigterm(batch, mesh):
    calls.append(1)
    if len(calls) == 3:  # peek, step 1, step 2 <- SIGTERM arrives while step 2's batch loads.
      os.kill(os.getpid(), signal.SIGTERM)
    return real_to_global(batch, mesh)

  monkeypatch.setattr(input_pipeline, "to_global", to_global_then_sigterm)
  first = train.train_and_evaluate(c, d)
  assert first["preempted"] and first["step"] == 2
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored
  monkeypatch.setattr(input_pipeline, "to_global", real_to_global)
  second = train.train_and_evaluate(c, d)
  assert second["step"] == 6
  _assert_trees(second["params"], full["params"], exact=True)
  _assert_trees(_next_batch(c, d), _next_batch(c, str(full_dir)), exact=True)


def test_nan_loss_stops_naming_step_and_term(tmp_path):
  c = _config("", total_steps=6, log_every=1)
  c.regression.nan_at_step = 3
  with pytest.raises(FloatingPointError, match=r"step 3: term loss_gaze = nan"):
    train.train_and_evaluate(c, str(tmp_path))
  # No checkpoint of the NaN state: the last one is from before.
  assert not os.path.exists(tmp_path / "checkpoints" / "3")


def test_optimizer_freeze_and_lr_mults():
  params = {"enc": {"w": np.ones((4, 4), np.float32)}, "dec": {"w": np.ones((4, 4), np.float32)},
            "head": {"b": np.ones((4,), np.float32)}}
  cfg = _config("").optax
  cfg.schedule = "constant"
  cfg.name = "sgd"
  cfg.b1 = 0.0
  cfg.lr = 0.1
  cfg.clip_grad_norm = 0.0
  cfg.warmup_steps = 0
  cfg.freeze = ("^enc/",)
  cfg.lr_mults = (("dec", 0.5),)
  tx = optimizers.make_optimizer(cfg, 10, params)
  grads = jax.tree.map(np.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["enc"]["w"], 0.0)
  np.testing.assert_allclose(updates["dec"]["w"], -0.05)
  np.testing.assert_allclose(updates["head"]["b"], -0.1)
  # Clipping ignores frozen gradients: a huge frozen gradient does not shrink the others.
  cfg.clip_grad_norm = 1.0
  tx = optimizers.make_optimizer(cfg, 10, params)
  grads = {"enc": {"w": np.full((4, 4), 1e6, np.float32)},
           "dec": {"w": np.full((4, 4), 0.01, np.float32)},
           "head": {"b": np.full((4,), 0.01, np.float32)}}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["head"]["b"], -0.001, rtol=1e-5)
  assert optimizers.param_labels(cfg, params) == {
      "enc": {"w": "frozen"}, "dec": {"w": "g0"}, "head": {"b": "default"}}


@pytest.mark.parametrize("name", ["constant", "cosine", "linear"])
def test_schedule_warmup_then_decay(name):
  cfg = _config("").optax
  cfg.schedule, cfg.lr, cfg.warmup_steps, cfg.end_lr_factor = name, 1.0, 10, 0.1
  s = optimizers.make_schedule(cfg, 110)
  assert float(s(0)) == 0.0
  assert float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0)
  assert float(s(110)) == pytest.approx(1.0 if name == "constant" else 0.1, rel=1e-5)


def test_main_cli_overrides_and_resumes(tmp_path):
  """`python -m jaxtalk.main --config=...:args --config.x=v --workdir=DIR` trains; again resumes."""
  env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tests"), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  cmd = [sys.executable, "-m", "jaxtalk.main",
         f"--config={REPO}/tests/regression_stage.py:ema=true", "--config.total_steps=2",
         "--config.optax.lr=0.01", f"--workdir={tmp_path}"]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "done: step 2" in out.stdout
  cfg = json.load(open(tmp_path / "config.json"))
  assert cfg["optax"]["lr"] == 0.01 and cfg["ema_decay"] == 0.9
  assert "parameter arrays" in out.stderr  # parameter overview at start
  again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert again.returncode == 0 and "resumed from step 2" in again.stderr


@pytest.mark.parametrize("env,expected", [
    ({}, False),
    ({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "1"}, False),
    ({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "16"}, True),
    ({"JAXTALK_DISTRIBUTED": "1"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, True),
])
def test_distributed_initialize_only_for_multiprocess_env(monkeypatch, env, expected):
  for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "JAXTALK_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS",
            "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(k, raising=False)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append(1))
  assert train.maybe_initialize_distributed() == expected
  assert len(calls) == int(expected)


@pytest.mark.slow
def test_cli_sigterm_exits_cleanly_and_resumes(tmp_path):
  """A real preemption: SIGTERM to `python -m jaxtalk.main` mid-run -> exit 0 with a checkpoint;
  the same command then finishes the run."""
  import time  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tests"), JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  cmd = [sys.executable, "-m", "jaxtalk.main", f"--config={REPO}/tests/regression_stage.py",
         "--config.total_steps=1500", "--config.log_every=1", "--config.eval_every=0",
         "--config.checkpoint_every=1000", f"--workdir={tmp_path}"]
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 240
  while not (tmp_path / "metrics.jsonl").exists() and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err[-3000:]
  assert "stopped at step" in out
  stopped = int(out.split("stopped at step ")[1].split(";")[0])
  assert 0 < stopped < 1500
  assert (tmp_path / "checkpoints" / str(stopped)).is_dir()
  again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"resumed from step {stopped}" in again.stderr and "done: step 1500" in again.stdout


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
  """Multi-process (2 processes x 2 CPU devices, gloo, jax.distributed) == one device.

  Exercises what only multi-host runs use: per-process batches -> global arrays, sharded params
  across processes, multi-process orbax checkpoints and grain states, params gathered to host.
  """
  c = _config("ema=true", total_steps=4, eval_every=0)
  one = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  want = train.train_and_evaluate(c, str(tmp_path / "single"), mesh=one)["params"]
  port = _free_port()
  procs = []
  for i in range(2):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tests"), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i))
    cmd = [sys.executable, "-m", "jaxtalk.main",
           f"--config={REPO}/tests/regression_stage.py:ema=true", "--config.total_steps=4",
           "--config.eval_every=0", "--config.mesh.data=1", "--config.mesh.fsdp=2",
           "--config.mesh.tensor=2", f"--workdir={tmp_path / 'multi'}"]
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=400) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "process 1/2, 4 devices" in outs[1][1]
  assert "done: step 4" in outs[0][0]
  assert os.listdir(tmp_path / "multi" / "checkpoints" / "4" / "data") and sorted(
      f for f in os.listdir(tmp_path / "multi" / "checkpoints" / "4" / "data")
      if f.endswith(".json")) == ["process_0-of-2.json", "process_1-of-2.json"]
  _assert_trees(checkpointing.load_params(tmp_path / "multi" / "params"), want)


def test_time_budget_finishes_with_params(tmp_path):
  """A run whose time budget ends before total_steps writes its final params like a finished
  one (the demo relies on this), and reports where it stopped."""
  c = _config("", total_steps=10_000, checkpoint_every=10_000, eval_every=0, log_every=1)
  with c.unlocked():
    c.time_budget_s = 1e-6  # ends after the first step
  out = train.train_and_evaluate(c, str(tmp_path))
  assert out["budget_reached"] and not out["preempted"]
  assert 1 <= out["step"] < 10_000
  assert os.path.isdir(os.path.join(tmp_path, "params"))
  loaded = checkpointing.load_params(os.path.join(tmp_path, "params"))
  _assert_trees(loaded, out["params"], exact=True)


class _CountingEvaluator:
  """A `config.evals` evaluator that runs the task's jitted infer on a fixed input."""

  calls = []

  def __init__(self, config, *, scale=1.0):
    self.config, self.scale = config, scale

  def __call__(self, infer, params, frozen):
    t = self.config.input.window
    x = {"pose": np.ones([1, t, 6], np.float32), "gaze": np.zeros([1, t, 2], np.float32),
         "mel": np.zeros([1, t, 16, 80], np.float32)}
    out = np.asarray(infer(params, frozen, x)["next_motion"])
    _CountingEvaluator.calls.append(out)
    return {"mean_abs": self.scale * float(np.abs(out).mean())}


def test_config_evals_run_at_every_eval(tmp_path, monkeypatch):
  """Evaluators declared in `config.evals` run at each eval on the eval params and are logged
  as eval/<name>/<metric> (history, metrics.jsonl); an unknown type is a clear error."""
  from jaxtalk.evaluators import common as evals_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(evals_lib.TYPES, "counting", f"{__name__}:_CountingEvaluator")
  _CountingEvaluator.calls = []
  c = _config("", total_steps=4, eval_every=2, log_every=1, checkpoint_every=4)
  with c.unlocked():
    c.evals = {"probe": {"type": "counting", "scale": 2.0}}
  out = train.train_and_evaluate(c, str(tmp_path))
  evals = [h for h in out["history"] if "eval/probe/mean_abs" in h]
  assert [h["step"] for h in evals] == [2, 4] and len(_CountingEvaluator.calls) == 2
  # The last eval saw the final params: the same output as the task's infer on them.
  task = regression_stage.get_task(c, mesh=None)
  x = {"pose": np.ones([1, c.input.window, 6], np.float32),
       "gaze": np.zeros([1, c.input.window, 2], np.float32),
       "mel": np.zeros([1, c.input.window, 16, 80], np.float32)}
  want = np.asarray(task.infer(out["params"], task.frozen, x)["next_motion"])
  np.testing.assert_allclose(_CountingEvaluator.calls[-1], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(evals[-1]["eval/probe/mean_abs"], 2.0 * np.abs(want).mean(),
                             rtol=1e-5)
  logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert sum("eval/probe/mean_abs" in e for e in logged) == 2

  with c.unlocked():
    c.evals = {"probe": {"type": "no_such_evaluator"}}
  with pytest.raises(ValueError, match=r"config.evals.probe: type='no_such_evaluator'"):
    evals_lib.from_config(c)


def test_select_best_keeps_the_params_of_the_best_eval(tmp_path):
  """`config.select_best`: the initial params are evaluated too, the best eval's params are the
  final params (not the last step's), best.json names the step, and a bad metric is an error."""
  c = _config("", total_steps=6, eval_every=2, log_every=1, checkpoint_every=6)
  with c.unlocked():
    c.select_best = "eval/mse"
    c.select_best_mode = "max"  # the WORST params by mse, so the choice differs from the last
  out = train.train_and_evaluate(c, str(tmp_path))
  evals = {h["step"]: h["eval/mse"] for h in out["history"] if "eval/mse" in h}
  assert sorted(evals) == [0, 2, 4, 6]
  best_step = max(evals, key=evals.get)
  meta = json.load(open(tmp_path / "best.json"))
  assert meta["step"] == best_step and meta["value"] == pytest.approx(evals[best_step])
  # The written params are those of the best eval: evaluating them gives its mse again.
  task = regression_stage.get_task(c, mesh=None)
  it = input_pipeline.create_iterator(c, mesh=None, split="eval")
  params = checkpointing.load_params(tmp_path / "params")
  mse = np.mean([float(task.evaluate(params, next(it), task.frozen)["mse"])
                 for _ in range(int(c.eval_batches))])
  assert mse == pytest.approx(evals[best_step], rel=1e-4)
  _assert_trees(params, out["params"], exact=True)

  with c.unlocked():
    c.select_best = "eval/no_such_metric"
  with pytest.raises(ValueError, match="not an eval metric"):
    train.train_and_evaluate(c, str(tmp_path / "bad"))
