"""Wav2Lip's SyncNet_color (models/wav2lip_syncnet.py) and its weights converter: a state dict in
PyTorch's layout gives, through the converter and the flax model, the embeddings of a plain
numpy forward pass written in PyTorch's conventions (NCHW, OIHW kernels, BatchNorm with running
statistics, Wav2Lip's input preparation)."""

import jax
import numpy as np
import pytest

from jaxtalk.evaluators import sync
from jaxtalk.models import wav2lip_syncnet as model_lib
from jaxtalk.pretrained import wav2lip_syncnet as convert_lib


def _state_dict(seed=0) -> dict:
  rng = np.random.default_rng(seed)
  sd = {}
  for _, prefix, table in convert_lib.ENCODERS:
    for i, (cin, cout, (kh, kw), _, _, _) in enumerate(table):
      b = f"module.{prefix}.{i}.conv_block"
      sd[f"{b}.0.weight"] = rng.normal(0, (2.0 / (cin * kh * kw)) ** 0.5,
                                       (cout, cin, kh, kw)).astype(np.float32)
      sd[f"{b}.0.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
      sd[f"{b}.1.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
      sd[f"{b}.1.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
      sd[f"{b}.1.running_mean"] = rng.normal(0, 0.1, cout).astype(np.float32)
      sd[f"{b}.1.running_var"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
      sd[f"{b}.1.num_batches_tracked"] = np.array(1000)
  return sd


def _conv_nchw(x, w, b, stride, pad):
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  kh, kw = w.shape[2:]
  win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
  win = win[:, :, ::stride[0], ::stride[1]]                       # [N, C, H', W', kh, kw]
  out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))          # [N, H', W', O]
  return np.transpose(out, (0, 3, 1, 2)) + b[None, :, None, None]


def _reference(sd, prefix, table, x):
  """Wav2Lip's nn.Sequential of Conv2d blocks, then flatten + F.normalize, in numpy."""
  for i, (_, _, _, stride, pad, residual) in enumerate(table):
    b = f"module.{prefix}.{i}.conv_block"
    y = _conv_nchw(x, sd[f"{b}.0.weight"], sd[f"{b}.0.bias"], stride, pad)
    m, v = sd[f"{b}.1.running_mean"], sd[f"{b}.1.running_var"]
    g, beta = sd[f"{b}.1.weight"], sd[f"{b}.1.bias"]
    y = (y - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-5) * g[
        None, :, None, None] + beta[None, :, None, None]
    if residual:
      y = y + x
    x = np.maximum(y, 0)
  x = x.reshape(x.shape[0], -1)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_converted_weights_reproduce_the_pytorch_forward(tmp_path):
  sd = _state_dict()
  path = tmp_path / "lipsync_expert_state_dict.npz"
  np.savez(path, **sd)
  rng = np.random.default_rng(1)
  faces = rng.uniform(-1, 1, (2, 5, 96, 96, 3)).astype(np.float32)   # RGB in [-1, 1]
  mel = rng.normal(0, 1.5, (2, 16, 80)).astype(np.float32)           # [steps, mels]
  # Wav2Lip's own input preparation: BGR frames in [0, 1] concatenated on channels (frame-major),
  # channels first, the lower half of the rows; the mel chunk as [1, 80 mels, 16 steps].
  bgr = (faces[..., ::-1] + 1) / 2
  face_in = np.stack([np.concatenate(list(f), axis=2).transpose(2, 0, 1)[:, 48:] for f in bgr])
  audio_in = mel.transpose(0, 2, 1)[:, None]
  ref_v = _reference(sd, "face_encoder", model_lib.FACE_BLOCKS, face_in.astype(np.float64))
  ref_a = _reference(sd, "audio_encoder", model_lib.AUDIO_BLOCKS, audio_in.astype(np.float64))

  out = tmp_path / "converted.npz"
  assert convert_lib.main(["--src", str(path), "--out", str(out)]) == 0
  model, params = convert_lib.load(str(out))
  v = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x, method="embed_video"))(
      params, faces))
  a = np.asarray(jax.jit(lambda p, x: model.apply({"params": p}, x, method="embed_audio"))(
      params, mel))
  assert v.shape == (2, 512) and a.shape == (2, 512)
  np.testing.assert_allclose(v, ref_v, atol=2e-4)
  np.testing.assert_allclose(a, ref_a, atol=2e-4)
  # The state dict loads directly to the same params.
  _, direct = convert_lib.load(str(path))
  jax.tree.map(np.testing.assert_array_equal, direct, params)
  # The embeddings differ between inputs (not a constant map).
  assert np.abs(ref_v[0] - ref_v[1]).max() > 1e-2


def test_sync_evaluator_runs_it_on_aligned_crops():
  model = model_lib.Wav2LipSyncNet()
  params = convert_lib.from_state_dict(_state_dict(2))
  from jaxtalk.models import syncnet as syncnet_lib  # pylint: disable=g-import-not-at-top
  ev = sync.SyncEvaluator(model, params, image_size=96, face_box=syncnet_lib.ALIGNED_FACE_BOX,
                          max_offset=2, chunk=4)
  rng = np.random.default_rng(3)
  frames = rng.uniform(-1, 1, (9, 64, 64, 3)).astype(np.float32)
  v, a = ev.embed(frames, rng.normal(size=(9, 16, 80)).astype(np.float32))
  assert v.shape == (5, 512) and a.shape == (9, 512)
  np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def test_converter_names_the_missing_or_wrong_tensor(tmp_path):
  sd = _state_dict()
  del sd["module.audio_encoder.3.conv_block.1.running_var"]
  with pytest.raises(ValueError, match=r"x.npz: missing audio_encoder.3.conv_block.1.running_var"):
    convert_lib.from_state_dict(sd, source="x.npz")
  sd = _state_dict()
  sd["module.face_encoder.0.conv_block.0.weight"] = np.zeros((32, 3, 7, 7), np.float32)
  with pytest.raises(ValueError, match=r"face_encoder.0.conv_block.0.weight has shape"):
    convert_lib.from_state_dict(sd)
  with pytest.raises(ValueError, match="not found"):
    convert_lib.load(str(tmp_path / "none.npz"))
  with pytest.raises(ValueError, match=r"expected \[B, 5, 96, 96, 3\]"):
    model_lib.Wav2LipSyncNet().apply({"params": convert_lib.from_state_dict(_state_dict())},
                                     np.zeros((1, 5, 64, 64, 3)), method="embed_video")
