"""Converts Wav2Lip's lip-sync expert weights to the `.npz` that `load` reads
(`jaxtalk.models.wav2lip_syncnet.Wav2LipSyncNet`).

  python -m jaxtalk.pretrained.wav2lip_syncnet --src lipsync_expert.pth --out wav2lip_syncnet.npz

Sources (chosen by the file suffix):
* `.pth` / `.pt`: Wav2Lip's checkpoint (`{"state_dict": ..., "optimizer": ..., ...}`, as
  `color_syncnet_train.py` saves it) or a bare state dict. Needs torch, imported only here (a
  separate venv is fine: DEPENDENCIES.md).
* `.npz`: the same state-dict keys saved with numpy, a route that needs no torch where the
  conversion runs: `np.savez(f, **{k: v.numpy() for k, v in sd.items()})`.

State-dict keys: `face_encoder.<i>.conv_block.0.{weight,bias}` (conv, `[C_out, C_in, kh, kw]`)
and `face_encoder.<i>.conv_block.1.{weight,bias,running_mean,running_var}` (BatchNorm), the
same under `audio_encoder.<i>`; a DataParallel `module.` prefix is accepted;
`num_batches_tracked` is ignored. Kernels become HWIO. The output holds jaxtalk's params
flattened with "/" (`face_0/conv/kernel`, ...) and is written atomically.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

import numpy as np

from jaxtalk.models import wav2lip_syncnet as model_lib
from jaxtalk.pretrained import torch_state

ENCODERS = (("face", "face_encoder", model_lib.FACE_BLOCKS),
            ("audio", "audio_encoder", model_lib.AUDIO_BLOCKS))


def from_state_dict(state_dict: Mapping[str, np.ndarray], source: str = "state_dict") -> dict:
  """Wav2Lip `SyncNet_color` state dict (numpy arrays) -> `Wav2LipSyncNet` params.

  Raises:
    ValueError: a tensor missing or of the wrong shape (naming `source` and the key).
  """
  sd = {k[len("module."):] if k.startswith("module.") else k: np.asarray(v)
        for k, v in state_dict.items()}
  params = {}
  for name, prefix, table in ENCODERS:
    for i, (cin, cout, (kh, kw), _, _, _) in enumerate(table):
      base = f"{prefix}.{i}.conv_block"
      want = {f"{base}.0.weight": (cout, cin, kh, kw), f"{base}.0.bias": (cout,)}
      want.update({f"{base}.1.{k}": (cout,) for k in ("weight", "bias", "running_mean",
                                                        "running_var")})
      torch_state.check(sd, want, source, "Wav2Lip's SyncNet_color")
      f32 = lambda k: sd[f"{base}.{k}"].astype(np.float32)
      params[f"{name}_{i}"] = {
          "conv": {"kernel": np.transpose(f32("0.weight"), (2, 3, 1, 0)), "bias": f32("0.bias")},
          "mean": f32("1.running_mean"), "var": f32("1.running_var"),
          "scale": f32("1.weight"), "bias": f32("1.bias")}
  return params


def convert(src: str, out: str) -> dict:
  """Converts `src` (module docstring) to `out` (.npz): `torch_state.convert`."""
  return torch_state.convert(src, out, from_state_dict)


def load(path: str):
  """`(Wav2LipSyncNet(), params)` from a converted `.npz` (or directly from a state-dict `.npz` /
  `.pth`, converted on the fly).

  Raises:
    ValueError: unreadable file or wrong tensors (naming it).
  """
  if not os.path.isfile(path):
    raise ValueError(f"{path}: Wav2Lip SyncNet weights not found")
  if path.endswith(".npz"):
    with np.load(path) as z:
      flat = {k: z[k] for k in z.files}
    if any(k.startswith("face_0/") for k in flat):
      params = torch_state.unflatten(flat)
      from_state_dict(_to_state_dict(params), source=path)  # validates every shape
      return model_lib.Wav2LipSyncNet(), params
    return model_lib.Wav2LipSyncNet(), from_state_dict(flat, source=path)
  return model_lib.Wav2LipSyncNet(), from_state_dict(torch_state.read_state_dict(path),
                                                     source=path)


def _to_state_dict(params: dict) -> dict:
  """Inverse of `from_state_dict` (the PyTorch layout), used to validate converted files."""
  sd = {}
  for name, prefix, table in ENCODERS:
    for i in range(len(table)):
      p, base = params.get(f"{name}_{i}", {}), f"{prefix}.{i}.conv_block"
      conv = p.get("conv", {})
      for key, value in ((f"{base}.0.weight", conv.get("kernel")), (f"{base}.0.bias",
                         conv.get("bias")), (f"{base}.1.weight", p.get("scale")),
                         (f"{base}.1.bias", p.get("bias")),
                         (f"{base}.1.running_mean", p.get("mean")),
                         (f"{base}.1.running_var", p.get("var"))):
        if value is not None:
          sd[key] = np.transpose(value, (3, 2, 0, 1)) if key.endswith("0.weight") else value
  return sd


def main(argv=None) -> int:
  return torch_state.converter_main(argv, name="wav2lip_syncnet", doc=__doc__,
                                    src_help="lipsync_expert.pth, or a state-dict .npz", convert=convert)


if __name__ == "__main__":
  sys.exit(main())
