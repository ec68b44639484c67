"""PyTorch state dicts as numpy, and flat `.npz` files of converted flax params: the helpers the
weight converters of `jaxtalk.pretrained` share.

A `.pth` / `.pt` file needs torch (imported only in `read_state_dict`, e.g. in a separate venv);
a `.npz` with the same keys (`np.savez(f, **{k: v.numpy() for k, v in sd.items()})`) needs none.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np


def read_state_dict(src: str) -> dict:
  """`{key: ndarray}` of a `.pth`/`.pt` checkpoint (its "state_dict" entry when it has one; a
  DataParallel `module.` prefix is removed) or of a `.npz` with the same keys.

  Raises:
    ValueError: missing file (naming it).
  """
  if not os.path.isfile(src):
    raise ValueError(f"{src}: no such file")
  if src.endswith((".pth", ".pt", ".model")):
    import torch  # pylint: disable=g-import-not-at-top  # only for this conversion route.
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    sd = ckpt.get("state_dict", ckpt)
    sd = {k: v.numpy() for k, v in sd.items() if hasattr(v, "numpy")}
  else:
    with np.load(src) as z:
      sd = {k: z[k] for k in z.files}
  return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def flatten(tree: Mapping, prefix: str = "") -> dict:
  """Nested dict -> `{"a/b/c": ndarray}`."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, f"{prefix}{k}/"))
    else:
      out[prefix + k] = np.asarray(v)
  return out


def unflatten(flat: Mapping[str, np.ndarray]) -> dict:
  """Inverse of `flatten`."""
  out: dict = {}
  for k, v in flat.items():
    node = out
    *parents, leaf = k.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = np.asarray(v)
  return out


def save_npz(params: Mapping, out: str) -> None:
  """Writes `flatten(params)` to `out` atomically (temporary name, then rename)."""
  tmp = out + ".tmp.npz"
  np.savez(tmp, **flatten(params))
  os.replace(tmp, out)


def convert(src: str, out: str, from_state_dict) -> dict:
  """`from_state_dict(read_state_dict(src), source=src)` written to `out` with `save_npz`;
  returns the params.

  Raises:
    ValueError: unreadable source or wrong tensors (naming the file).
  """
  params = from_state_dict(read_state_dict(src), source=src)
  save_npz(params, out)
  return params


def check(sd: Mapping[str, np.ndarray], want: Mapping[str, tuple], source: str, what: str):
  """Raises ValueError naming `source` and the key when a tensor of `want` ({key: shape}) is
  missing from `sd` or has another shape (`what`: the network, for the message)."""
  for k, shape in want.items():
    if k not in sd:
      raise ValueError(f"{source}: missing {k} (is this {what}? keys start with "
                       f"{sorted(sd)[:3]})")
    if tuple(sd[k].shape) != tuple(shape):
      raise ValueError(f"{source}: {k} has shape {tuple(sd[k].shape)}; expected {shape}")


def converter_main(argv, *, name: str, doc: str, src_help: str, convert) -> int:
  """The command line of a converter: `--src SRC --out OUT.npz` -> `convert(src, out)` (which
  returns the params); prints what was written, or the error (exit status 2)."""
  import argparse  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog=f"python -m jaxtalk.pretrained.{name}",
                                   description=doc.split("\n\n")[0])
  parser.add_argument("--src", required=True, help=src_help)
  parser.add_argument("--out", required=True, help="output .npz")
  args = parser.parse_args(argv)
  try:
    params = convert(args.src, args.out)
  except ValueError as e:
    print(f"{name}: {e}", file=sys.stderr)
    return 2
  n = sum(int(np.prod(v.shape)) for v in flatten(params).values())
  print(f"wrote {args.out}: {n} values")
  return 0
