"""VGG19 feature extractor (Simonyan & Zisserman 2015) for perceptual losses and metrics.

PoseTalk's multi-scale perceptual loss (eq. 6, after Siarohin et al. 2019, FOMM) compares
ImageNet-trained VGG19 activations relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1. jaxtalk cannot
download weights, so this module loads them from a local converted file:

  python -m jaxtalk.pretrained.vgg19 --src vgg19.pth --out vgg19.npz   # torchvision state_dict
  python -m jaxtalk.pretrained.vgg19 --src vgg19.h5  --out vgg19.npz   # Keras VGG19 (notop or full)

The `.npz` holds `conv{b}_{i}/kernel` `[3, 3, C_in, C_out]` (HWIO, RGB input order), and
`conv{b}_{i}/bias` `[C_out]` float32 for the 16 convolutions, plus `preprocess` ("torch" or
"caffe"), which says how pixels are normalised (see `preprocess`). These names are exactly the
flax param names of `VGG19`, so `{"params": load_vgg19(path)[0]}` applies directly. Only the
convolutional trunk is kept (the classifier is not needed for features).
"""

from __future__ import annotations

import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# (name, output channels) in order; "pool" is a 2x2 / stride-2 max pool.
VGG19_LAYERS: tuple = (
  ("conv1_1", 64), ("conv1_2", 64), "pool",
  ("conv2_1", 128), ("conv2_2", 128), "pool",
  ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "pool",
  ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512), ("conv4_4", 512), "pool",
  ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512), ("conv5_4", 512),
)
CONV_NAMES: tuple[str, ...] = tuple(l[0] for l in VGG19_LAYERS if l != "pool")
CONV_CHANNELS: dict[str, int] = {l[0]: l[1] for l in VGG19_LAYERS if l != "pool"}
# Index of each conv in torchvision's `vgg19().features` Sequential.
TORCHVISION_INDEX: dict[str, int] = dict(zip(
  CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))
# Layers used by FOMM / PoseTalk's perceptual loss.
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
PREPROCESS_MODES = ("torch", "caffe")


def preprocess(images: jax.Array, mode: str = "torch") -> jax.Array:
  """Maps images in [-1, 1] to the normalisation the weights were trained with.

  Args:
    images: `[..., 3]` float RGB in [-1, 1].
    mode: "torch" (torchvision: `(x01 - mean) / std` with ImageNet mean/std) or "caffe" (Keras
      VGG19: `255 * x01 - mean_rgb`; the BGR channel order of those weights is already folded
      into the first kernel by the converter).

  Returns:
    float32 array of the same shape.
  """
  x01 = (images.astype(jnp.float32) + 1.0) * 0.5
  if mode == "torch":
    return (x01 - IMAGENET_MEAN) / IMAGENET_STD
  if mode == "caffe":
    return x01 * 255.0 - CAFFE_MEAN_RGB
  raise ValueError(f"VGG preprocess mode {mode!r}; expected one of {PREPROCESS_MODES}")


class VGG19(nn.Module):
  """VGG19 convolutional trunk returning the requested ReLU activations.

  Attributes:
    output_layers: names like "relu3_1" (after conv3_1's ReLU) to return, in this order. The
      network stops after the deepest one.
    dtype: compute dtype (params are float32; outputs are cast to float32).
  """

  output_layers: Sequence[str] = PERCEPTUAL_LAYERS
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[list[jax.Array], dict]:
    """Args: x `[N, H, W, 3]` already normalised by `preprocess`.

    Returns:
      (features, aux): features is a list of float32 `[N, H/2^k, W/2^k, C]`, one per
      `output_layers` entry; aux maps each requested layer name to its feature.

    Raises:
      ValueError: on an unknown layer name or a non-RGB input.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"VGG19 expects [N, H, W, 3], got {x.shape}")
    wanted = {n.replace("relu", "conv"): n for n in self.output_layers}
    unknown = [n for n in wanted if n not in CONV_CHANNELS]
    if unknown:
      raise ValueError(f"unknown VGG19 layers {unknown}; known relu{CONV_NAMES[0][4:]}..")
    last = max(CONV_NAMES.index(n) for n in wanted)
    h = x.astype(self.dtype)
    found = {}
    for layer in VGG19_LAYERS:
      if layer == "pool":
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        continue
      name, ch = layer
      h = nn.Conv(
        ch, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(
          nn.initializers.kaiming_normal(), ("kernel", "kernel", "conv_in", "conv_out")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
        name=name)(h)
      h = nn.relu(h)
      if name in wanted:
        found[wanted[name]] = h.astype(jnp.float32)
      if CONV_NAMES.index(name) == last:
        break
    feats = [found[n] for n in self.output_layers]
    return feats, dict(found)


def save_vgg19_npz(path: str, params: dict, preprocess_mode: str) -> None:
  """Writes `params` (`{conv_name: {"kernel", "bias"}}`) to `path` atomically (tmp + rename).

  Raises:
    ValueError: if a conv is missing or has the wrong shape.
  """
  validate_params(params, source=path)
  if preprocess_mode not in PREPROCESS_MODES:
    raise ValueError(f"preprocess mode {preprocess_mode!r} not in {PREPROCESS_MODES}")
  arrays = {"preprocess": np.array(preprocess_mode)}
  for name in CONV_NAMES:
    arrays[f"{name}/kernel"] = np.asarray(params[name]["kernel"], np.float32)
    arrays[f"{name}/bias"] = np.asarray(params[name]["bias"], np.float32)
  path = os.fspath(path)
  tmp = path + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def validate_params(params: dict, source: str = "params") -> None:
  """Checks every VGG19 conv is present with HWIO kernel shapes. Raises ValueError naming it."""
  c_in = 3
  for name in CONV_NAMES:
    c_out = CONV_CHANNELS[name]
    if name not in params:
      raise ValueError(f"{source}: missing VGG19 layer {name!r}")
    k, b = np.shape(params[name]["kernel"]), np.shape(params[name]["bias"])
    if k != (3, 3, c_in, c_out) or b != (c_out,):
      raise ValueError(f"{source}: {name} kernel {k} / bias {b}; expected "
                       f"{(3, 3, c_in, c_out)} / {(c_out,)}")
    c_in = c_out


def load_vgg19(path: str) -> tuple[dict, str]:
  """Loads converted VGG19 weights.

  Args:
    path: `.npz` written by `python -m jaxtalk.pretrained.vgg19` (or `save_vgg19_npz`).

  Returns:
    (params, preprocess_mode): params `{conv_name: {"kernel": f32 [3,3,Ci,Co], "bias": [Co]}}`
    usable as `VGG19().apply({"params": params}, x)`; mode for `preprocess`.

  Raises:
    ValueError: if the file is missing, unreadable or lacks a layer (the message names the file).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ValueError(f"{path}: VGG19 weights file not found (convert with "
                     "`python -m jaxtalk.pretrained.vgg19 --src vgg19.pth --out vgg19.npz`)")
  try:
    with np.load(path, allow_pickle=False) as z:
      data = {k: z[k] for k in z.files}
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{path}: not a readable .npz of VGG19 weights ({e})") from e
  mode = str(data.get("preprocess", np.array("torch")))
  if mode not in PREPROCESS_MODES:
    raise ValueError(f"{path}: preprocess={mode!r}; expected one of {PREPROCESS_MODES}")
  params = {}
  for name in CONV_NAMES:
    if f"{name}/kernel" not in data or f"{name}/bias" not in data:
      raise ValueError(f"{path}: missing {name}/kernel or {name}/bias")
    params[name] = {"kernel": data[f"{name}/kernel"].astype(np.float32),
                    "bias": data[f"{name}/bias"].astype(np.float32)}
  validate_params(params, source=path)
  return params, mode
