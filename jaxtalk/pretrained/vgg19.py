"""Converts ImageNet VGG19 weights to the `.npz` that `jaxtalk.models.vgg.load_vgg19` reads.

  python -m jaxtalk.pretrained.vgg19 --src vgg19.pth --out vgg19.npz

Sources (chosen by the file suffix):
* `.pth` / `.pt`: a torchvision `vgg19()` state_dict (`features.{0,2,5,...,34}.weight/.bias`;
  a `module.` prefix from DataParallel is accepted). Needs torch, imported only here.
* `.npz`: the same torchvision keys saved with numpy (`np.savez(f, **{k: v.numpy() ...})`) -- a
  route that needs no torch at conversion time.
* `.h5`: Keras `VGG19` weights (`include_top` True or False; groups `block{b}_conv{i}` holding a
  kernel and a bias dataset, Keras 1/2 naming). Needs h5py, imported only here. Keras weights take
  BGR "caffe" input; the converter flips the first kernel's input channels so jaxtalk always feeds
  RGB, and records `preprocess="caffe"`.

Torch kernels `[C_out, C_in, 3, 3]` become flax HWIO `[3, 3, C_in, C_out]`. The classifier layers
are dropped. The output is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Mapping

import numpy as np

from jaxtalk.models import vgg as vgg_lib


def from_torchvision(state_dict: Mapping[str, np.ndarray], source: str = "state_dict") -> dict:
  """torchvision `vgg19` state dict (numpy arrays) -> jaxtalk VGG19 params.

  Raises:
    ValueError: if a conv weight is missing or has the wrong shape (names `source`).
  """
  sd = {k[len("module."):] if k.startswith("module.") else k: np.asarray(v)
        for k, v in state_dict.items()}
  params = {}
  for name, idx in vgg_lib.TORCHVISION_INDEX.items():
    wk, bk = f"features.{idx}.weight", f"features.{idx}.bias"
    if wk not in sd or bk not in sd:
      raise ValueError(f"{source}: missing {wk} / {bk} (is this a torchvision vgg19 "
                       f"state_dict? keys start with {sorted(sd)[:3]})")
    w = sd[wk]
    if w.ndim != 4:
      raise ValueError(f"{source}: {wk} has shape {w.shape}; expected [C_out, C_in, 3, 3]")
    params[name] = {"kernel": np.transpose(w, (2, 3, 1, 0)).astype(np.float32),
                    "bias": sd[bk].astype(np.float32)}
  vgg_lib.validate_params(params, source=source)
  return params


def from_keras(layers: Mapping[str, tuple[np.ndarray, np.ndarray]], source: str = "h5") -> dict:
  """`{"block1_conv1": (kernel HWIO, bias), ...}` (Keras, BGR input) -> jaxtalk params (RGB).

  Raises:
    ValueError: if a block is missing or has the wrong shape.
  """
  params = {}
  for name in vgg_lib.CONV_NAMES:
    b, i = name[4], name[6]
    key = f"block{b}_conv{i}"
    if key not in layers:
      raise ValueError(f"{source}: missing Keras layer {key} (found {sorted(layers)[:4]}...)")
    kernel, bias = (np.asarray(a, np.float32) for a in layers[key])
    if name == "conv1_1":
      kernel = kernel[:, :, ::-1, :]   # BGR -> RGB input channels
    params[name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias}
  vgg_lib.validate_params(params, source=source)
  return params


def _read_h5(path: str) -> dict:
  import h5py  # pylint: disable=g-import-not-at-top
  layers = {}
  with h5py.File(path, "r") as f:
    def visit(name, obj):
      if not isinstance(obj, h5py.Dataset):
        return
      m = re.search(r"(block\d_conv\d)", name)
      if not m:
        return
      leaf = name.rsplit("/", 1)[-1].lower()
      slot = 0 if ("kernel" in leaf or "_w" in leaf) else 1 if ("bias" in leaf or "_b" in leaf) \
        else None
      if slot is not None:
        layers.setdefault(m.group(1), [None, None])[slot] = np.asarray(obj)
    f.visititems(visit)
  bad = [k for k, v in layers.items() if v[0] is None or v[1] is None]
  if bad:
    raise ValueError(f"{path}: Keras layers without kernel/bias: {bad}")
  return {k: tuple(v) for k, v in layers.items()}


def convert(src: str, out: str) -> dict:
  """Converts `src` (.pth/.pt/.npz/.h5) and writes `out` (.npz). Returns the params.

  Raises:
    ValueError: unknown suffix, unreadable file or wrong layout (the message names `src`).
  """
  src = os.fspath(src)
  if not os.path.isfile(src):
    raise ValueError(f"{src}: file not found")
  suffix = os.path.splitext(src)[1].lower()
  if suffix in (".pth", ".pt"):
    import torch  # pylint: disable=g-import-not-at-top
    sd = torch.load(src, map_location="cpu", weights_only=True)
    if hasattr(sd, "state_dict"):
      sd = sd.state_dict()
    params = from_torchvision({k: v.detach().cpu().numpy() for k, v in sd.items()}, src)
    mode = "torch"
  elif suffix == ".npz":
    with np.load(src, allow_pickle=False) as z:
      params = from_torchvision({k: z[k] for k in z.files}, src)
    mode = "torch"
  elif suffix in (".h5", ".hdf5", ".keras"):
    params = from_keras(_read_h5(src), src)
    mode = "caffe"
  else:
    raise ValueError(f"{src}: unknown weights format {suffix!r}; expected .pth/.pt (torchvision "
                     "state_dict), .npz (torchvision keys) or .h5 (Keras VGG19)")
  vgg_lib.save_vgg19_npz(out, params, mode)
  return params


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxtalk.pretrained.vgg19", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--src", required=True, help="vgg19 .pth/.pt, .npz or Keras .h5")
  parser.add_argument("--out", required=True, help="output .npz for jaxtalk.models.vgg")
  args = parser.parse_args(argv)
  try:
    convert(args.src, args.out)
  except ValueError as e:
    print(f"convert_vgg19: {e}", file=sys.stderr)
    return 1
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
