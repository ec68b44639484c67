"""Converts the original SyncNet weights (Chung & Zisserman 2016; syncnet_python's
`syncnet_v2.model`) to the `.npz` that `load` reads (`jaxtalk.models.chung_syncnet`).

  python -m jaxtalk.pretrained.chung_syncnet --src syncnet_v2.model --out chung_syncnet.npz

Sources: the torch file (`.model` / `.pth` / `.pt`, a state dict of syncnet_python's `S`; needs
torch, imported only here, e.g. in a separate venv) or a `.npz` of the same keys saved with
numpy (`jaxtalk.pretrained.torch_state`). Keys: `netcnnlip.<i>` / `netcnnaud.<i>` for the
convolutions (i = 0, 4, 8, 11, 14, 18) and their BatchNorms (i + 1), `netfclip.{0,1,3}` /
`netfcaud.{0,1,3}` for Linear, BatchNorm1d, Linear. Conv3d kernels `[O, I, t, kh, kw]` become
`[t, kh, kw, I, O]` (first lip layer) or, with t = 1, `[kh, kw, I, O]`; Linear `[out, in]`
becomes `[in, out]`.
"""

from __future__ import annotations

import sys
from typing import Mapping

import numpy as np

from jaxtalk.models import chung_syncnet as model_lib
from jaxtalk.pretrained import torch_state

CONV_INDEX = (0, 4, 8, 11, 14, 18)
WHAT = "syncnet_python's SyncNet (S)"


def _bn(sd, key: str) -> dict:
  return {"mean": sd[f"{key}.running_mean"], "var": sd[f"{key}.running_var"],
          "scale": sd[f"{key}.weight"], "bias": sd[f"{key}.bias"]}


def _shapes() -> dict:
  """{key: shape} of every tensor the converter reads."""
  want = {}
  lip_in = [3] + [c for c, *_ in model_lib.LIP_CONVS[:-1]]
  lip = [(96, 3, (5, 7, 7))] + [(c, cin, (1, k, k)) for (c, k, *_), cin in
                                zip(model_lib.LIP_CONVS, [96] + lip_in[1:])]
  aud_in = [1] + [c for c, *_ in model_lib.AUDIO_CONVS[:-1]]
  aud = [(c, cin, k) for (c, k, *_), cin in zip(model_lib.AUDIO_CONVS, aud_in)]
  for net, convs in (("netcnnlip", lip), ("netcnnaud", aud)):
    for i, (cout, cin, k) in zip(CONV_INDEX, convs):
      want[f"{net}.{i}.weight"] = (cout, cin) + tuple(k)
      want[f"{net}.{i}.bias"] = (cout,)
      want.update({f"{net}.{i + 1}.{s}": (cout,) for s in ("weight", "bias", "running_mean",
                                                            "running_var")})
  for net in ("netfclip", "netfcaud"):
    want.update({f"{net}.0.weight": (512, 512), f"{net}.0.bias": (512,),
                 f"{net}.3.weight": (model_lib.EMBED_DIM, 512),
                 f"{net}.3.bias": (model_lib.EMBED_DIM,)})
    want.update({f"{net}.1.{s}": (512,) for s in ("weight", "bias", "running_mean",
                                                  "running_var")})
  return want


def from_state_dict(state_dict: Mapping[str, np.ndarray], source: str = "state_dict") -> dict:
  """syncnet_python `S` state dict (numpy) -> `ChungSyncNet` params (`{"lip": ..., "audio":
  ...}`).

  Raises:
    ValueError: a tensor missing or of the wrong shape (naming `source` and the key).
  """
  sd = {k: np.asarray(v, np.float32) for k, v in state_dict.items()
        if not k.endswith("num_batches_tracked")}
  torch_state.check(sd, _shapes(), source, WHAT)
  out = {}
  for name, net, fc in (("lip", "netcnnlip", "netfclip"), ("audio", "netcnnaud", "netfcaud")):
    p = {}
    for j, i in enumerate(CONV_INDEX):
      w = sd[f"{net}.{i}.weight"]
      if w.ndim == 5:
        w = np.transpose(w, (2, 3, 4, 1, 0)) if (name, j) == ("lip", 0) else np.transpose(
            w[:, :, 0], (2, 3, 1, 0))
      else:
        w = np.transpose(w, (2, 3, 1, 0))
      p[f"conv{j}"] = {"kernel": w, "bias": sd[f"{net}.{i}.bias"]}
      p[f"bn{j}"] = _bn(sd, f"{net}.{i + 1}")
    p["head"] = {"fc1": {"kernel": sd[f"{fc}.0.weight"].T, "bias": sd[f"{fc}.0.bias"]},
                 "bn": _bn(sd, f"{fc}.1"),
                 "fc2": {"kernel": sd[f"{fc}.3.weight"].T, "bias": sd[f"{fc}.3.bias"]}}
    out[name] = p
  return out


def convert(src: str, out: str) -> dict:
  """Converts `src` (module docstring) to `out` (.npz): `torch_state.convert`."""
  return torch_state.convert(src, out, from_state_dict)


def load(path: str):
  """`(ChungSyncNet(), params)` from a converted `.npz`, or from the state dict itself (`.npz`
  with syncnet_python's keys, or the torch file).

  Raises:
    ValueError: unreadable file or wrong tensors (naming it).
  """
  sd = torch_state.read_state_dict(path)
  if any(k.startswith("lip/") for k in sd):
    params = torch_state.unflatten(sd)
    if sorted(params) != ["audio", "lip"]:
      raise ValueError(f"{path}: not a converted ChungSyncNet file (top-level {sorted(params)})")
    return model_lib.ChungSyncNet(), params
  return model_lib.ChungSyncNet(), from_state_dict(sd, source=path)


def is_state_dict_or_converted(path: str) -> bool:
  """True when the `.npz` at `path` holds this network (syncnet_python keys or converted),
  False for another network's weights (e.g. Wav2Lip's expert)."""
  with np.load(path) as z:
    return any(k.startswith(("lip/", "netcnnlip.")) for k in z.files)


def main(argv=None) -> int:
  return torch_state.converter_main(argv, name="chung_syncnet", doc=__doc__,
                                    src_help="syncnet_v2.model, or a state-dict .npz", convert=convert)


if __name__ == "__main__":
  sys.exit(main())
