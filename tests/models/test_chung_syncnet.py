"""The original SyncNet (models/chung_syncnet.py), its converter and MFCC front end: a state
dict in syncnet_python's layout gives, through the converter and the flax model, the embeddings
of a numpy forward pass written in PyTorch's conventions (NCDHW, Conv3d, BatchNorm running
statistics, -inf padded max-pools, Linear [out, in], BGR 0..255 input)."""

import jax
import numpy as np
import pytest

from jaxtalk.features import mfcc as mfcc_lib
from jaxtalk.models import chung_syncnet as model_lib
from jaxtalk.pretrained import chung_syncnet as convert_lib


def _state_dict(seed=0) -> dict:
  rng = np.random.default_rng(seed)
  sd = {}
  for k, shape in convert_lib._shapes().items():  # pylint: disable=protected-access
    if k.endswith("running_var"):
      sd[k] = rng.uniform(0.5, 2.0, shape)
    elif k.endswith(("running_mean", "bias")):
      sd[k] = rng.normal(0, 0.1, shape)
    elif len(shape) == 1:                                     # BatchNorm weight
      sd[k] = rng.uniform(0.5, 1.5, shape)
    else:
      sd[k] = rng.normal(0, (2.0 / np.prod(shape[1:])) ** 0.5, shape)
  sd = {k: v.astype(np.float32) for k, v in sd.items()}
  sd["netcnnlip.1.num_batches_tracked"] = np.array(7)
  return sd


def _conv2d(x, w, b, stride=(1, 1), pad=(0, 0)):
  x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
  win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))
  win = win[:, :, ::stride[0], ::stride[1]]
  out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))
  return np.transpose(out, (0, 3, 1, 2)) + b[None, :, None, None]


def _bn(x, sd, key):
  shape = (1, -1) + (1,) * (x.ndim - 2)
  m, v = sd[f"{key}.running_mean"].reshape(shape), sd[f"{key}.running_var"].reshape(shape)
  return (x - m) / np.sqrt(v + 1e-5) * sd[f"{key}.weight"].reshape(shape) + sd[
      f"{key}.bias"].reshape(shape)


def _maxpool(x, k, s, p=0):
  x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
  win = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]
  return win.max(axis=(-2, -1))


def _fc(x, sd, net):
  x = np.maximum(_bn(x @ sd[f"{net}.0.weight"].T + sd[f"{net}.0.bias"], sd, f"{net}.1"), 0)
  return x @ sd[f"{net}.3.weight"].T + sd[f"{net}.3.bias"]


def _reference_lip(sd, x):
  """x: [N, 3, 5, 224, 224] (syncnet_python's layout)."""
  w = sd["netcnnlip.0.weight"]                                    # [96, 3, 5, 7, 7]
  y = sum(_conv2d(x[:, :, t], w[:, :, t], np.zeros(96), (2, 2)) for t in range(5))
  y = y + sd["netcnnlip.0.bias"][None, :, None, None]
  y = _maxpool(np.maximum(_bn(y, sd, "netcnnlip.1"), 0), (3, 3), (2, 2))
  for i, (stride, pad, pool) in zip((4, 8, 11, 14, 18), ((2, 1, (3, 2, 1)), (1, 1, None),
                                                         (1, 1, None), (1, 1, (3, 2, 0)),
                                                         (1, 0, None))):
    y = _conv2d(y, sd[f"netcnnlip.{i}.weight"][:, :, 0], sd[f"netcnnlip.{i}.bias"],
                (stride, stride), (pad, pad))
    y = np.maximum(_bn(y, sd, f"netcnnlip.{i + 1}"), 0)
    if pool:
      y = _maxpool(y, (pool[0],) * 2, (pool[1],) * 2, pool[2])
  return _fc(y.reshape(len(y), -1), sd, "netfclip")


def _reference_audio(sd, x):
  """x: [N, 1, 13, 20]."""
  pools = {4: ((3, 3), (1, 2)), 14: ((3, 3), (2, 2))}
  for i in (0, 4, 8, 11, 14, 18):
    pad = (0, 0) if i == 18 else (1, 1)
    x = np.maximum(_bn(_conv2d(x, sd[f"netcnnaud.{i}.weight"], sd[f"netcnnaud.{i}.bias"],
                               pad=pad), sd, f"netcnnaud.{i + 1}"), 0)
    if i in pools:
      x = _maxpool(x, *pools[i])
  return _fc(x.reshape(len(x), -1), sd, "netfcaud")


def test_converted_weights_reproduce_the_pytorch_forward(tmp_path):
  sd = _state_dict()
  src = tmp_path / "syncnet_v2_state_dict.npz"
  np.savez(src, **sd)
  out = tmp_path / "converted.npz"
  assert convert_lib.main(["--src", str(src), "--out", str(out)]) == 0
  model, params = convert_lib.load(str(out))
  rng = np.random.default_rng(1)
  faces = rng.uniform(-1, 1, (2, 5, 224, 224, 3)).astype(np.float32)
  feats = rng.normal(0, 5, (2, 13, 20)).astype(np.float32)
  v = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x, method="embed_video"))(
      params, faces))
  a = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x, method="embed_audio"))(
      params, feats))
  # syncnet_python's input: BGR frames 0..255, [N, 3, 5, 224, 224]; MFCC [N, 1, 13, 20].
  x = np.transpose((faces[..., ::-1] + 1) * 127.5, (0, 4, 1, 2, 3)).astype(np.float64)
  ref_v, ref_a = _reference_lip(sd, x), _reference_audio(sd, feats[:, None].astype(np.float64))
  assert v.shape == a.shape == (2, model_lib.EMBED_DIM)
  np.testing.assert_allclose(v, ref_v, rtol=2e-3, atol=2e-3 * np.abs(ref_v).max())
  np.testing.assert_allclose(a, ref_a, rtol=2e-3, atol=2e-3 * np.abs(ref_a).max())
  assert np.abs(ref_v[0] - ref_v[1]).max() > 1e-2 * np.abs(ref_v).max()
  _, direct = convert_lib.load(str(src))               # the state dict itself loads too
  jax.tree.map(np.testing.assert_allclose, direct, params)


def test_converter_names_the_missing_tensor():
  sd = _state_dict()
  del sd["netfcaud.3.bias"]
  with pytest.raises(ValueError, match=r"s.npz: missing netfcaud.3.bias \(is this syncnet"):
    convert_lib.from_state_dict(sd, source="s.npz")


def test_mfcc_windows_follow_syncnet_pythons_pairing():
  import python_speech_features  # pylint: disable=g-import-not-at-top
  wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)   # 25 frames
  feats = mfcc_lib.mfcc(wav)
  ref = python_speech_features.mfcc(np.clip(np.round(wav * 32768.0), -32768, 32767), 16000)
  np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-4)
  win = mfcc_lib.mfcc_windows(wav, 25)
  assert win.shape == (25, 13, 20)
  # The window of frame c is syncnet_python's window of the video window starting at c - 2.
  np.testing.assert_array_equal(win[10], feats[32:52].T)
  np.testing.assert_array_equal(win[0][:, 0], feats[0])           # clamped at the start
  with pytest.raises(ValueError, match="N >= 400"):
    mfcc_lib.mfcc(wav[:100])


def test_eval_picks_the_network_from_the_weights_file(tmp_path):
  """`jaxtalk eval --syncnet FILE`: the original SyncNet (MFCC audio, 224 px crops) or Wav2Lip's
  expert, told apart by the file's tensors; a clip is scored end to end with either."""
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  from tests.models import test_wav2lip_syncnet  # pylint: disable=g-import-not-at-top
  np.savez(tmp_path / "chung.npz", **_state_dict())
  np.savez(tmp_path / "wav2lip.npz", **test_wav2lip_syncnet._state_dict())  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  frames = rng.uniform(-1, 1, (8, 64, 64, 3)).astype(np.float32)
  mel = rng.normal(size=(8, 16, 80)).astype(np.float32)
  wav = rng.normal(0, 0.1, 8 * 640).astype(np.float32)
  for name, kind, features in (("chung", "ChungSyncNet", "mfcc"),
                               ("wav2lip", "Wav2LipSyncNet", "mel")):
    ev = reenactment.pretrained_sync_evaluator(str(tmp_path / f"{name}.npz"))
    assert type(ev.model).__name__ == kind and ev.audio_features == features
    ev.max_offset, ev.chunk = 2, 4       # 4 windows: one compiled call per stream
    out = reenactment.ClipScorer(sync=ev).score_clip(frames[0], frames, frames, mel=mel, wav=wav)
    assert np.isfinite(out["clip"]["lse_d"]) and out["clip"]["lse_c"] >= 0
  with pytest.raises(ValueError, match="pass wav="):
    reenactment.pretrained_sync_evaluator(str(tmp_path / "chung.npz"))(frames, mel)
