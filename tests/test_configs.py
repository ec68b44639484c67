"""Every `configs/**/*.py` loads with each of its `DOCUMENTED_ARGS` (globbed: new stages are
covered).

Also checks what the trainer relies on: a docstring starting with the command that runs it, a
`config.task` module that exists, a valid mesh/batch/accumulation combination, JSON-able
resolved config, and `get_sweep()` overrides naming existing fields.
"""

import glob
import importlib.util
import os

import ml_collections
import pytest

from configs import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True)
    if os.path.basename(p) not in ("__init__.py", "common.py"))


def _load(path):
  name = "config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _cases():
  out = []
  for path in CONFIG_FILES:
    module = _load(path)
    args = getattr(module, "DOCUMENTED_ARGS", None)
    out.append(pytest.param(path, args, id=os.path.basename(path)))
  return out


def _has(config, dotted):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


@pytest.mark.parametrize("path,args", _cases())
def test_config_loads_with_documented_args(path, args):
  module = _load(path)
  rel = os.path.relpath(path, REPO)
  assert isinstance(args, tuple) and args, f"{path}: needs a non-empty DOCUMENTED_ARGS tuple"
  doc = (module.__doc__ or "").strip()
  assert rel in doc.splitlines()[0], (
      f"{path}: docstring must start with the command that runs it, got {doc[:80]!r}")
  for arg in args:
    c = module.get_config(arg)
    assert isinstance(c, ml_collections.ConfigDict), (path, arg)
    assert c.task, f"{path}:{arg}: config.task is empty"
    assert importlib.util.find_spec(c.task) is not None, f"{path}:{arg}: no module {c.task}"
    assert c.batch_size % c.grad_accum_steps == 0, (path, arg)
    assert c.total_steps > 0
    c.to_json_best_effort()
    for key in ("optax", "input", "mesh", "init_from"):
      assert key in c, f"{path}:{arg}: missing {key} (build on configs.common.base_config())"
  if hasattr(module, "get_sweep"):
    base = module.get_config(args[0])
    for overrides in module.get_sweep():
      for key in overrides:
        assert _has(base, key), f"{path}: get_sweep() overrides unknown field {key}"


def test_config_glob_finds_every_stage():
  from jaxtalk.demo import run as demo  # pylint: disable=g-import-not-at-top
  found = {os.path.relpath(p, REPO) for p in CONFIG_FILES}
  want = {module.replace(".", "/") + ".py" for module in demo.config_modules().values()}
  assert want <= found, want - found


def test_parse_arg_types_and_typos():
  a = common.parse_arg("size=tiny,res=128,flag=true", size="paper", res=256, flag=False)
  assert (a.size, a.res, a.flag) == ("tiny", 128, True)
  with pytest.raises(ValueError, match="sise"):
    common.parse_arg("sise=tiny", size="paper")
  with pytest.raises(ValueError, match="key=value"):
    common.parse_arg("tiny", size="paper")
