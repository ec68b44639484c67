"""Export: params-only + StableHLO reproduce the training code's outputs without jaxtalk."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import regression_stage
from jaxtalk.core import checkpointing
from jaxtalk.serve import export
from jaxtalk.serve import export_cli
from jaxtalk.core import sharding
from jaxtalk import tasks
from jaxtalk import train

# Runs in a fresh interpreter: imports only jax / numpy / orbax (+ flatbuffers via jax.export).
_RELOAD = textwrap.dedent("""
    import sys, json
    import numpy as np, jax, orbax.checkpoint as ocp
    d, inputs_path, out_path = sys.argv[1:4]
    exp = jax.export.deserialize(bytearray(open(d + "/infer.stablehlo", "rb").read()))
    def restore(path):
      with ocp.PyTreeCheckpointer() as ck:
        tree = ck.metadata(path).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return ck.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    params, frozen = restore(d + "/params"), restore(d + "/frozen")
    inputs = dict(np.load(inputs_path))
    out = exp.call(params, frozen, inputs)
    np.save(out_path, np.asarray(out["next_motion"], np.float32))
    assert not any(m.split(".")[0] in ("jaxtalk", "regression_stage", "flax", "optax")
                   for m in sys.modules), "training code was imported"
    print("ok", json.dumps(sorted(params["params"])))
""")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  wd = tmp_path_factory.mktemp("wd")
  c = regression_stage.get_config("")
  c.total_steps, c.eval_every = 2, 0
  c.regression.target_scale = 2.0  # a non-trivial frozen input that must be exported too
  result = train.train_and_evaluate(c, str(wd))
  return c, wd, result


@pytest.mark.parametrize("bf16", [False, True])
def test_export_reloads_without_jaxtalk(trained, tmp_path, bf16):
  c, wd, result = trained
  out = tmp_path / "export"
  argv = ["jaxtalk export", "--workdir", str(wd), "--out", str(out)] + (["--bf16"] if bf16 else [])
  assert export_cli.run(argv) == 0
  sig = json.load(open(out / "signature.json"))
  assert sig["inputs"]["pose"]["shape"] == ["b", c.input.window, 6]
  assert sig["outputs"]["next_motion"]["shape"] == ["b", c.input.window - 1, 8]
  params = checkpointing.load_params(out / "params")
  kernel = params["params"]["hidden"]["kernel"]
  assert kernel.dtype == (jax.numpy.bfloat16 if bf16 else np.float32)

  # Reference: the training code's infer on the trained params, batch of 3 (symbolic batch).
  rng = np.random.default_rng(0)
  inputs = {"pose": rng.standard_normal((3, c.input.window, 6)).astype(np.float32),
            "gaze": rng.standard_normal((3, c.input.window, 2)).astype(np.float32),
            "mel": rng.standard_normal((3, c.input.window, 16, 80)).astype(np.float32)}
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  task = tasks.get_task(c, mesh=mesh)
  want = np.asarray(task.infer(result["params"], task.frozen, inputs)["next_motion"])
  np.savez(tmp_path / "inputs.npz", **inputs)

  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  proc = subprocess.run(
      [sys.executable, "-c", _RELOAD, str(out), str(tmp_path / "inputs.npz"),
       str(tmp_path / "got.npy")], env=env, cwd=str(tmp_path), capture_output=True, text=True,
      timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith("ok")
  got = np.load(tmp_path / "got.npy")
  assert got.shape == (3, c.input.window - 1, 8)
  if bf16:
    np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05)
    assert np.abs(got - want).max() > 0  # really computed from bf16 params
  else:
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # The example outputs saved with the export match the exported function too.
  ex_in = dict(np.load(out / "example_inputs.npz"))
  ex_out = dict(np.load(out / "example_outputs.npz"))
  exp, p, f = export.load_exported(str(out))
  np.testing.assert_allclose(np.asarray(exp.call(p, f, ex_in)["next_motion"]),
                             ex_out["next_motion"], rtol=1e-5, atol=1e-5)


def test_export_of_unfinished_workdir_fails_clearly(tmp_path, capsys):
  assert export_cli.run(["jaxtalk export", "--workdir", str(tmp_path), "--out",
                     str(tmp_path / "x")]) == 2
  assert "config.json not found" in capsys.readouterr().err
