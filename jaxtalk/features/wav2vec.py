"""wav2vec 2.0 features (Baevski et al. 2020; PoseTalk's audio condition) from a local folder.

PoseTalk extracts its audio condition with wav2vec 2.0. Weights cannot be downloaded here; users
point `load_wav2vec(path)` to a folder with transformers' `config.json` (a `Wav2Vec2Config`) and
the weights, and get jaxtalk's Flax port (`jaxtalk.models.wav2vec2.Wav2Vec2Model`) with its
params. Both architectures of transformers' Wav2Vec2Model run: wav2vec2-base (group-norm conv
stack, post-LN transformer) and large-lv60 / XLSR (layer-norm conv stack, pre-LN transformer).

Weights, first found wins:
* `model.safetensors` (or sharded: `model.safetensors.index.json`): PyTorch names and layouts,
  as transformers' `Wav2Vec2Model` / `Wav2Vec2ForCTC` / `Wav2Vec2ForPreTraining` save them, keys
  with or without the `wav2vec2.` prefix (heads such as `lm_head`, `quantizer`, `project_*` are
  ignored); the positional conv's weight norm as `weight_g` / `weight_v` (older PyTorch) or
  `parametrizations.weight.original0` / `original1` (newer), or an already-folded `weight`.
* `flax_model.msgpack`: transformers' `FlaxWav2Vec2Model.save_pretrained` (stable-layer-norm
  checkpoints only, as that is all transformers' Flax model implements), mapped into the port.
* `pytorch_model.bin` alone is a torch pickle, which cannot be read without torch: a ValueError
  says how to convert it to safetensors on a machine with torch.

Feature path (one for all of jaxtalk; `jaxtalk.features.audio.Wav2Vec2Features` runs it in
preprocessing):
`normalize_wav` -> `hidden_state` (one layer of the model) -> `to_video_frames` (25 fps).

25 fps alignment (`to_video_frames`): wav2vec frame j is computed from samples
[320 j, 320 j + 400) (total conv stride 320 = 50 Hz, receptive field 400 for the standard conv
stack); video frame t spans samples [640 t, 640 t + 640). Video frame t gets the mean of the two
wav2vec frames 2t and 2t+1 (indices clamped to the last valid frame), i.e. of the frames whose
windows start inside it. Why this rule: every wav2vec frame is used exactly once (none is
skipped, none counted twice), both windows lie inside [640 t, 640 t + 720), and the
pooled centre (sample 640 t + 360) is 40 samples = 2.5 ms after the video frame's centre, 1/16 of
a frame. It is what preprocessing has always stored, so existing shards stay valid, and at 25 fps
it is exactly the linear interpolation at feature position 2t + 0.5 that this module used before
(same clamping), so nothing that was computed either way changes. A clip of T frames
(N = 640 T samples) has 2T - 1 wav2vec frames, so the last video frame uses frame 2T - 2 only.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models import wav2vec2 as w2v_model

SAMPLE_RATE = 16000  # the input rate wav2vec 2.0 was trained on (a property of the model)
SAMPLES_PER_VIDEO_FRAME = 640  # 16 kHz / 25 fps

# transformers' Wav2Vec2Config defaults for the fields the port reads (save_pretrained may omit
# fields equal to their default; tests/features/test_wav2vec.py checks these against
# Wav2Vec2Config()).
CONFIG_DEFAULTS = dict(
    conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_bias=False, feat_extract_norm="group", feat_extract_activation="gelu", hidden_size=768,
    num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, layer_norm_eps=1e-5,
    do_stable_layer_norm=False)

_BIN_HELP = (
    "torch-pickled weights cannot be read without torch, which jaxtalk does not use. Convert them "
    "once on a machine with torch: `import torch, safetensors.torch; sd = torch.load("
    "'pytorch_model.bin', map_location='cpu'); safetensors.torch.save_file({k: v.contiguous() "
    "for k, v in sd.items()}, 'model.safetensors')` (or `Wav2Vec2Model.from_pretrained(DIR)."
    "save_pretrained(DIR, safe_serialization=True)`), and put model.safetensors in the folder.")


# ------------------------------------------------------------------------------------------------
# Config.


def read_config(path: str) -> dict[str, Any]:
  """The `Wav2Vec2Model` attributes from `path/config.json` (defaults: `CONFIG_DEFAULTS`).

  Raises:
    ValueError: no config.json, unreadable JSON, a different model_type, adapters (not
      implemented), an unknown norm or activation, or conv lists of different lengths.
  """
  cfg_path = os.path.join(path, "config.json")
  if not os.path.isfile(cfg_path):
    raise ValueError(f"wav2vec 2.0 folder {path!r} has no config.json (a transformers "
                     "Wav2Vec2Config, e.g. from save_pretrained, must sit beside the weights)")
  try:
    with open(cfg_path) as f:
      raw = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{cfg_path}: cannot read JSON ({e})") from e
  if raw.get("model_type", "wav2vec2") != "wav2vec2":
    raise ValueError(f"{cfg_path}: model_type {raw.get('model_type')!r} is not 'wav2vec2'")
  if raw.get("add_adapter") or raw.get("adapter_attn_dim") is not None:
    raise ValueError(f"{cfg_path}: adapters (add_adapter / adapter_attn_dim) are not implemented "
                     "in jaxtalk's wav2vec 2.0 port")
  cfg = {k: raw.get(k, v) for k, v in CONFIG_DEFAULTS.items()}
  for k in ("conv_dim", "conv_kernel", "conv_stride"):
    cfg[k] = tuple(int(v) for v in cfg[k])
  if not len(cfg["conv_dim"]) == len(cfg["conv_kernel"]) == len(cfg["conv_stride"]):
    raise ValueError(f"{cfg_path}: conv_dim, conv_kernel and conv_stride differ in length: "
                     f"{cfg['conv_dim']}, {cfg['conv_kernel']}, {cfg['conv_stride']}")
  if cfg["feat_extract_norm"] not in ("group", "layer"):
    raise ValueError(f"{cfg_path}: feat_extract_norm must be 'group' or 'layer', got "
                     f"{cfg['feat_extract_norm']!r}")
  for k in ("hidden_act", "feat_extract_activation"):
    if cfg[k] not in w2v_model.ACTIVATIONS:
      raise ValueError(f"{cfg_path}: {k}={cfg[k]!r} is not supported "
                       f"({sorted(w2v_model.ACTIVATIONS)})")
  if cfg["hidden_size"] % cfg["num_attention_heads"]:
    raise ValueError(f"{cfg_path}: hidden_size {cfg['hidden_size']} is not divisible by "
                     f"num_attention_heads {cfg['num_attention_heads']}")
  return cfg


def read_do_normalize(path: str) -> bool:
  """`do_normalize` of `path/preprocessor_config.json` (True when absent, as for every released
  wav2vec 2.0 checkpoint's Wav2Vec2FeatureExtractor)."""
  p = os.path.join(path, "preprocessor_config.json")
  if not os.path.isfile(p):
    return True
  try:
    with open(p) as f:
      return bool(json.load(f).get("do_normalize", True))
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{p}: cannot read JSON ({e})") from e


def model_from_config(cfg: dict[str, Any], dtype=jnp.float32) -> w2v_model.Wav2Vec2Model:
  """`Wav2Vec2Model` from `read_config`'s dict; `dtype` is the compute dtype."""
  return w2v_model.Wav2Vec2Model(**cfg, dtype=dtype)


def param_shapes(model: w2v_model.Wav2Vec2Model) -> dict[str, Any]:
  """The model's param tree as `jax.ShapeDtypeStruct`s (no computation)."""
  wav = jnp.zeros([1, model.receptive_field], jnp.float32)
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), wav)["params"]


# ------------------------------------------------------------------------------------------------
# Weights: PyTorch names/layouts (safetensors) or transformers' Flax tree (msgpack) -> params.


def _flatten(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat):
  tree = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def _torch_sources(path: tuple[str, ...], shape: tuple[int, ...]):
  """For one param path: [(candidate PyTorch keys, PyTorch shape, file -> param transform)]."""
  module, leaf = ".".join(path[:-1]), path[-1]
  if leaf == "weight_v":  # [K, D/G, D] <- PyTorch [D, D/G, K]
    keys = [f"{module}.weight_v", f"{module}.parametrizations.weight.original1"]
    return keys, shape[::-1], lambda a: np.transpose(a, (2, 1, 0))
  if leaf == "weight_g":  # [K] <- PyTorch [1, 1, K]
    return ([f"{module}.weight_g", f"{module}.parametrizations.weight.original0"], (1, 1) + shape,
            lambda a: a.reshape(-1))
  if leaf == "kernel" and len(shape) == 2:  # Dense [in, out] <- Linear [out, in]
    return [f"{module}.weight"], shape[::-1], lambda a: a.T
  if leaf == "kernel" and len(shape) == 3:  # Conv [k, in/g, out] <- Conv1d [out, in/g, k]
    return [f"{module}.weight"], shape[::-1], lambda a: np.transpose(a, (2, 1, 0))
  if leaf == "scale":
    return [f"{module}.weight"], shape, lambda a: a
  return [f"{module}.{leaf}"], shape, lambda a: a


def _flax_sources(path: tuple[str, ...], shape: tuple[int, ...]):
  """As `_torch_sources` for transformers' Flax tree (same names; pos conv in PyTorch layout)."""
  key = "/".join(path)
  if path[-1] == "weight_v":
    return [key], shape[::-1], lambda a: np.transpose(a, (2, 1, 0))
  if path[-1] == "weight_g":
    return [key], (1, 1) + shape, lambda a: a.reshape(-1)
  return [key], shape, lambda a: a


def _convert(file: str, tensors: dict[str, np.ndarray], shapes, sources, ignored) -> dict:
  """Builds the param tree from `tensors` (source name -> array) with `sources(path, shape)`.

  Raises:
    ValueError: naming `file` and every missing key, unexpected key and shape mismatch.
  """
  flat, used, missing, mismatched = {}, set(), [], []
  for path, sds in _flatten(shapes).items():
    keys, src_shape, fn = sources(path, tuple(sds.shape))
    key = next((k for k in keys if k in tensors), None)
    if key is None:
      missing.append(" or ".join(keys))
      continue
    used.add(key)
    a = np.asarray(tensors[key])
    if tuple(a.shape) != tuple(src_shape):
      mismatched.append(f"{key}: file {list(a.shape)}, config.json expects {list(src_shape)}")
      continue
    flat[path] = np.asarray(fn(a), np.float32)
  unexpected = sorted(k for k in tensors if k not in used and not ignored(k))
  if missing or unexpected or mismatched:
    msg = [f"{file}: weights do not match the wav2vec 2.0 model of config.json"]
    if missing:
      msg.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:20]))
    if unexpected:
      msg.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected[:20]))
    if mismatched:
      msg.append(f"shape mismatches ({len(mismatched)}): " + "; ".join(mismatched[:20]))
    raise ValueError("\n  ".join(msg))
  return _unflatten(flat)


def _read_safetensors(path: str) -> tuple[str, dict[str, np.ndarray]]:
  """(file name for messages, name -> array) of model.safetensors or its sharded index."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  try:
    if os.path.isfile(single):
      return single, load_file(single)
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    tensors = {}
    for shard in shards:
      tensors.update(load_file(os.path.join(path, shard)))
    return index, tensors
  except Exception as e:  # pylint: disable=broad-except  # safetensors raises several types.
    bad = single if os.path.isfile(single) else index
    raise ValueError(f"{bad}: cannot read safetensors ({type(e).__name__}: {e})") from e


def _safetensors_params(path: str, shapes) -> dict:
  file, tensors = _read_safetensors(path)
  prefix = "wav2vec2." if any(k.startswith("wav2vec2.") for k in tensors) else ""
  base = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
  pos = "encoder.pos_conv_embed.conv."
  if pos + "weight" in base and not any(
      pos + k in base for k in ("weight_g", "weight_v", "parametrizations.weight.original0")):
    # Weight norm already folded into a plain weight [D, D/G, K]: v = weight, g = its norm per tap.
    w = base.pop(pos + "weight")
    base[pos + "weight_v"] = w
    base[pos + "weight_g"] = np.sqrt(np.sum(np.square(w.astype(np.float64)), axis=(0, 1),
                                            keepdims=True)).astype(np.float32)
  heads = sorted(k for k in tensors if not k.startswith(prefix))
  if heads:
    logging.info("wav2vec 2.0 %s: ignoring %d head tensors (%s ...)", file, len(heads), heads[0])
  return _convert(file, base, shapes, _torch_sources, lambda k: k == "masked_spec_embed")


def _msgpack_params(path: str, shapes) -> dict:
  from flax import serialization  # pylint: disable=g-import-not-at-top
  file = os.path.join(path, "flax_model.msgpack")
  try:
    with open(file, "rb") as f:
      tree = serialization.msgpack_restore(f.read())
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises several types.
    raise ValueError(f"{file}: cannot read msgpack ({type(e).__name__}: {e})") from e
  if "wav2vec2" in tree and isinstance(tree["wav2vec2"], dict):  # FlaxWav2Vec2ForCTC & co.
    tree = tree["wav2vec2"]
  tensors = {"/".join(p): v for p, v in _flatten(tree).items()}
  return _convert(file, tensors, shapes, _flax_sources, lambda k: k == "masked_spec_embed")


def load_params(path: str, model: w2v_model.Wav2Vec2Model) -> dict:
  """Reads the weights in folder `path` into `model`'s float32 param tree (see module doc).

  Raises:
    ValueError: no readable weights file (a pytorch_model.bin alone gets conversion help), or
      missing / unexpected keys or shape mismatches (all named, with the file).
  """
  shapes = param_shapes(model)
  if (os.path.isfile(os.path.join(path, "model.safetensors"))
      or os.path.isfile(os.path.join(path, "model.safetensors.index.json"))):
    params = _safetensors_params(path, shapes)
  elif os.path.isfile(os.path.join(path, "flax_model.msgpack")):
    params = _msgpack_params(path, shapes)
  elif (os.path.isfile(os.path.join(path, "pytorch_model.bin"))
        or os.path.isfile(os.path.join(path, "pytorch_model.bin.index.json"))):
    raise ValueError(f"{os.path.join(path, 'pytorch_model.bin')}: {_BIN_HELP}")
  else:
    raise ValueError(f"wav2vec 2.0 folder {path!r} has no weights: expected model.safetensors "
                     f"(PyTorch names) or flax_model.msgpack; found {sorted(os.listdir(path))}")
  return jax.tree.map(jnp.asarray, params)


def load_wav2vec(path: str, dtype=jnp.float32):
  """Loads a local wav2vec 2.0 folder (config.json + weights, see module docstring).

  Args:
    path: the folder.
    dtype: compute dtype of the returned model (params are float32 either way).

  Returns:
    (model: `jaxtalk.models.wav2vec2.Wav2Vec2Model`, params: its float32 param tree); run with
    `model.apply({"params": params}, wav, mask=..., output_hidden_states=...)` or `hidden_state`.

  Raises:
    ValueError: from `read_config` and `load_params`, each naming the file and what was wrong.
  """
  model = model_from_config(read_config(path), dtype)
  return model, load_params(path, model)


# ------------------------------------------------------------------------------------------------
# The feature path.


def normalize_wav(wav: np.ndarray) -> np.ndarray:
  """Zero-mean, unit-variance waveform (Wav2Vec2FeatureExtractor's `do_normalize`), float32.

  `wav`: `[N]` float. Returns `(wav - mean) / sqrt(var + 1e-7)`, `[N]` float32.
  """
  wav = np.asarray(wav, np.float32)
  return (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)


def hidden_state(model: w2v_model.Wav2Vec2Model, params, wav, mask=None, layer: int = -1):
  """One hidden state of the model (jit-able; `model` and `layer` are static).

  Args:
    model, params: from `load_wav2vec`.
    wav: `[B, N]` float32 normalised samples. mask: optional `[B, N]` (1 = real sample).
    layer: -1 = last_hidden_state; k in [0, num_hidden_layers] = transformers' `hidden_states[k]`
      (0: the input of the first transformer layer, see `jaxtalk.models.wav2vec2`).

  Returns:
    `[B, L, D]` in the model's dtype.

  Raises:
    ValueError: layer out of range.
  """
  if not -1 <= layer <= model.num_hidden_layers:
    raise ValueError(f"wav2vec layer must be -1 or in [0, {model.num_hidden_layers}], got {layer}")
  out, aux = model.apply({"params": params}, wav, mask=mask, output_hidden_states=layer != -1)
  return out if layer == -1 else aux["hidden_states"][layer]


def to_video_frames(hidden: np.ndarray, num_frames: int, valid_frames: Optional[int] = None,
                    samples_per_frame: int = 320) -> np.ndarray:
  """wav2vec frames -> one row per 25 fps video frame (the alignment rule in the module doc).

  Args:
    hidden: `[L, C]` wav2vec frames (50 Hz for the standard conv stack).
    num_frames: T video frames wanted.
    valid_frames: frames of `hidden` computed from real audio (default L); later rows (padding)
      are never used.
    samples_per_frame: the model's total conv stride S (`model.samples_per_frame`).

  Returns:
    float32 `[T, C]`: row t = mean of frames r t .. r t + r - 1 (r = 640 / S = 2), each index
    clamped to `valid_frames - 1`.

  Raises:
    ValueError: S does not divide 640, `hidden` is not rank 2, or no valid frame.
  """
  hidden = np.asarray(hidden, np.float32)
  if SAMPLES_PER_VIDEO_FRAME % samples_per_frame:
    raise ValueError(f"to_video_frames: a 25 fps video frame ({SAMPLES_PER_VIDEO_FRAME} samples) "
                     f"is not a whole number of wav2vec frames of {samples_per_frame} samples")
  valid = hidden.shape[0] if valid_frames is None else min(int(valid_frames), hidden.shape[0])
  if hidden.ndim != 2 or valid < 1:
    raise ValueError(f"to_video_frames: need [L >= 1, C] frames, got {hidden.shape} with "
                     f"{valid_frames} valid")
  r = SAMPLES_PER_VIDEO_FRAME // samples_per_frame
  idx = np.minimum(r * np.arange(num_frames)[:, None] + np.arange(r)[None, :], valid - 1)
  return hidden[idx].mean(axis=1)


@functools.lru_cache(maxsize=8)
def _jitted_hidden_state(model, layer):
  return jax.jit(functools.partial(hidden_state, model, layer=layer))


def wav2vec_features(model, params, wav: np.ndarray, num_frames: Optional[int] = None,
                     layer: int = -1, normalize: bool = True) -> np.ndarray:
  """Per-video-frame wav2vec 2.0 features of one clip (no padding; compiles per length).

  `jaxtalk.features.audio.Wav2Vec2Features` is the same path with length buckets for many clips.

  Args:
    model, params: from `load_wav2vec`.
    wav: 16 kHz mono float `[N]` in [-1, 1].
    num_frames: T (default N // 640).
    layer: see `hidden_state`.
    normalize: apply `normalize_wav` (the checkpoint's `do_normalize`, `read_do_normalize`).

  Returns:
    float32 `[T, C]` at 25 fps (`to_video_frames`).

  Raises:
    ValueError: not mono, or shorter than the receptive field (400 samples); bad layer.
  """
  wav = np.asarray(wav, np.float32)
  if wav.ndim != 1 or wav.shape[0] < model.receptive_field:
    raise ValueError(f"wav2vec_features: need mono audio of >= {model.receptive_field} samples, "
                     f"got {wav.shape}")
  t = num_frames if num_frames is not None else wav.shape[0] // SAMPLES_PER_VIDEO_FRAME
  x = normalize_wav(wav) if normalize else wav
  h = np.asarray(_jitted_hidden_state(model, layer)(params, x[None])[0], np.float32)
  return to_video_frames(h, t, samples_per_frame=model.samples_per_frame)
