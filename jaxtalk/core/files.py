"""Small file helpers shared by every module that reads the project's JSON files."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str | os.PathLike, *, hint: str = "", error: type = ValueError) -> Any:
  """Parses the JSON file `path`.

  Args:
    path: the file.
    hint: appended to the "not found" message (e.g. "; run `jaxtalk preprocess` first").
    error: the exception class raised (a ValueError subclass such as `video_io.InputError`).

  Raises:
    `error`: naming the file when it is missing ("not found" + hint) or not valid JSON.
  """
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise error(f"{path}: not found{hint}") from e
  except json.JSONDecodeError as e:
    raise error(f"{path}: not valid JSON ({e})") from e


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as JSON (indent 1, sorted keys) to `path` through a temporary file and a rename,
  so readers never see a half-written file."""
  tmp = os.fspath(path) + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)
