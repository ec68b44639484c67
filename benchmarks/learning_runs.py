"""The results file of the learning-check benchmarks (`benchmarks/*_learning.py`).

`record(out, what=..., bar=..., key=..., runs=...)` keeps one JSON document per check: "what"
was trained, the "bar" it is held to, and "runs", one entry per seed (or per the `key` of a
run), each stamped with the git commit ("code") and the date. A run replaces an earlier one with
the same key; runs of other keys are kept, so seeds measured on different days sit side by side.
The file is rewritten atomically after every run, so an interrupted sweep keeps what finished.
"""

import json
import os
import subprocess
import time


def record(out: str, *, what: str, bar: str, key, runs) -> dict:
  """Writes each run of the iterable `runs` (dicts) into `out` as it finishes (module
  docstring); `key(run)` identifies a run. Prints each run as one JSON line. Returns the
  document."""
  doc = json.load(open(out)) if os.path.isfile(out) else {}
  code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                        check=False).stdout.strip()
  doc.setdefault("what", what)
  doc.setdefault("bar", bar)
  kept = doc.setdefault("runs", [])
  for r in runs:
    r = dict(r, code=code, date=time.strftime("%Y-%m-%d"))
    kept[:] = [x for x in kept if key(x) != key(r)] + [r]
    print(json.dumps(r))
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
      json.dump(doc, f, indent=1)
    os.replace(tmp, out)
  return doc
