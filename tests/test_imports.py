"""The package's import graph: no cycles, and every module imports on its own.

Edges are every `import` / `from ... import` of a jaxtalk, configs or data_pipelines module that
a module makes, at the top or inside a function (a lazy import is still a dependency: a cycle
through one is a design knot even when Python tolerates it). Each module is then imported in a
fresh interpreter in dependency order (leaves first), so a module that only works after another
happened to be imported fails here.
"""

import ast
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("jaxtalk", "configs", "data_pipelines")


def modules() -> dict[str, pathlib.Path]:
  out = {}
  for pkg in PACKAGES:
    for path in sorted((REPO / pkg).rglob("*.py")):
      rel = path.relative_to(REPO).with_suffix("")
      parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
      out[".".join(parts)] = path
  return out


def import_graph() -> dict[str, set[str]]:
  """`{module: modules it imports}` over the project's own modules."""
  mods = modules()
  graph = {}
  for name, path in mods.items():
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      deps |= {t for t in targets if t in mods and t != name}
    # A module depends on its parent packages' __init__ (Python imports them first).
    parts = name.split(".")
    deps |= {".".join(parts[:i]) for i in range(1, len(parts))} & set(mods)
    graph[name] = deps
  return graph


def dependency_order(graph: dict[str, set[str]]) -> list[str]:
  """Modules, dependencies first. Raises AssertionError naming a cycle if there is one."""
  order, state = [], {}

  def visit(m, stack):
    if state.get(m) == "done":
      return
    if state.get(m) == "active":
      cycle = stack[stack.index(m):] + [m]
      raise AssertionError("import cycle: " + " -> ".join(cycle))
    state[m] = "active"
    for d in sorted(graph[m]):
      visit(d, stack + [m])
    state[m] = "done"
    order.append(m)

  for m in sorted(graph):
    visit(m, [])
  return order


def test_import_graph_has_no_cycle():
  order = dependency_order(import_graph())
  assert len(order) == len(modules())


def test_cycle_detection_names_the_cycle():
  try:
    dependency_order({"a": {"b"}, "b": {"c"}, "c": {"a"}})
  except AssertionError as e:
    assert "a -> b -> c -> a" in str(e)
  else:
    raise AssertionError("cycle not detected")


def test_every_module_imports_in_a_fresh_interpreter_in_dependency_order():
  order = dependency_order(import_graph())
  script = ("import importlib, sys\n"
            "for m in sys.argv[1:]:\n"
            "  try:\n"
            "    importlib.import_module(m)\n"
            "  except Exception as e:\n"
            "    print(f'{m}: {type(e).__name__}: {e}'); raise SystemExit(1)\n")
  proc = subprocess.run([sys.executable, "-c", script] + order, cwd=REPO, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_old_task_paths_still_resolve():
  """config.json files written before the per-paper layout name `jaxtalk.tasks.<stage>`."""
  import importlib  # pylint: disable=g-import-not-at-top
  from jaxtalk import tasks  # pylint: disable=g-import-not-at-top
  for stage in ("coarse", "refine", "enhancer", "pld", "pose_vae"):
    module = importlib.import_module(tasks.task_module(f"jaxtalk.tasks.{stage}"))
    assert module.__name__ == f"jaxtalk.tasks.posetalk.{stage}" and module.get_task
  assert tasks.task_module("jaxtalk.tasks.syncnet") == "jaxtalk.tasks.syncnet"


def test_no_function_over_80_lines():
  """Long functions hide structure (the restructuring issue's bar: 80 lines, docstring
  included) in the library packages."""
  long = []
  for name, path in modules().items():
    if name.startswith("configs"):
      continue
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > 80:
          long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
  assert not long, long
