"""Evaluators declared in a stage config and run by the training loop (big_vision's `evals`).

  config.evals.<name> = dict(type="reenactment", <the evaluator's arguments>)

`from_config(config)` builds one evaluator per entry; train.py calls each at every eval
(`config.eval_every`) with the stage task's jitted `infer`, the eval (EMA) params and the frozen
inputs, and logs the returned scalars as `eval/<name>/<metric>`. An evaluator is a callable
`(infer, params, frozen) -> dict[str, float]`, built as `cls(config, **arguments)`.
"""

from __future__ import annotations

import importlib
from typing import Any

# type -> "module:class".
TYPES = {
    "reenactment": "jaxtalk.evaluators.reenactment:HeldOutReenactment",
}


def from_config(config) -> list[tuple[str, Any]]:
  """`(name, evaluator)` for each entry of `config.evals` (none when the field is absent).

  Raises:
    ValueError: an entry without a known `type` (naming the entry and the known types).
  """
  out = []
  for name, spec in sorted(dict(config.get("evals", {}) or {}).items()):
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in TYPES:
      raise ValueError(f"config.evals.{name}: type={kind!r}; expected one of {sorted(TYPES)}")
    module, cls = TYPES[kind].split(":")
    out.append((name, getattr(importlib.import_module(module), cls)(config, **spec)))
  return out
