"""jaxtalk's substitute for the three frozen face-analysis networks of GoHD's animator losses
(supplementary B.1): Φ_exp (DECA/EMOCA expression, eq. 13), Φ_gaze (L2CS-Net, eq. 14) and Φ_pars
(BiSeNet face parsing, eq. 15). None of the three can be downloaded here, so jaxtalk trains one
small network with a shared backbone and three heads on the shards' own labels (stage
`gohd_face_analysis`, `jaxtalk/tasks/gohd/face_analysis.py`):

  expression  [N, 64] float32  the shards' expression coefficients e (the FaceMesh linear basis,
                               `jaxtalk.features.expression`; raw basis coordinates, unit IOD)
  gaze        [N, 2]  float32  (pitch, yaw) of the FaceMesh iris gaze in the batch's *normalised*
                               units ((radians - gaze_mean) / gaze_std of the shards'
                               dataset_info.json; ~unit std)
  parsing     [N, H, W, R] float32 logits over `jaxtalk.features.regions.REGIONS` (R = 6:
                               background, skin, brows, eyes, lips, mouth interior)

Architecture (jaxtalk's choice; the papers' networks are ResNet-based DECA / L2CS and BiSeNet):
a stem conv, then per width a stride-2 conv + `layers.ResBlock` (GroupNorm, so no batch
statistics: the network is a pure function of (params, images)). Expression head: the last
feature map (H/2^L) reduced by a 1x1 conv, flattened, 2-layer MLP (flattening keeps where things
are: the coefficients describe landmark positions). Gaze head: the same on the previous level
(H/2^(L-1), finer, the eyes are small). Parsing head: a U-Net decoder (upsample, concatenate the
skip, conv) back to H x W, then a 1x1 conv to R logits.

Sizes (`SIZES`, `from_config`): tiny widths (16, 32, 64, 128), head 128 (0.75M params at 64 px;
the flattening heads make the count depend on the resolution); paper-ish widths (32, 64, 128,
256, 512), head 512 (13.4M params at 256 px, about BiSeNet's size).

Everything is differentiable w.r.t. the input image: the animator's losses backpropagate through
the frozen network to the generated frame.
"""

from __future__ import annotations

from typing import Any, Sequence

from flax import linen as nn
import jax
import jax.numpy as jnp

from jaxtalk.features import regions
from jaxtalk.models import layers

Dtype = Any
NUM_COEFFS = 64
GAZE_DIMS = 2


def _act(x):
  return nn.leaky_relu(x, 0.2)


class _Head(nn.Module):
  """1x1 conv reduce -> flatten -> Dense(width) -> LReLU -> Dense(out), the last zero-initialised
  (an untrained head predicts 0: ~the mean of e and of normalised g). `[N, h, w, C] -> [N, out]`
  float32."""
  out: int
  width: int
  reduce: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = _act(layers.Conv(self.reduce, 1, name="reduce", **kw)(x))
    x = x.reshape(x.shape[0], -1)
    x = _act(layers.Dense(self.width, names=("embed", "mlp"), name="fc", **kw)(x))
    out = layers.Dense(self.out, names=("mlp", "embed"), zero_init=True, name="out", **kw)(x)
    return out.astype(jnp.float32)


class FaceAnalysisNet(nn.Module):
  """Shared backbone + expression, gaze and parsing heads (module docstring).

  Attributes:
    widths: channels of the L stride-2 levels (H and W must be divisible by 2^L).
    head_width: hidden width of the expression and gaze MLPs.
    head_reduce: channels the 1x1 conv reduces a feature map to before flattening.
    num_coeffs: expression coefficients (64, GoHD's e).
    num_regions: parsing classes (`regions.NUM_REGIONS`).
    dtype / param_dtype: compute / parameter dtypes (outputs are float32).
  """
  widths: Sequence[int] = (16, 32, 64, 128)
  head_width: int = 128
  head_reduce: int = 16
  num_coeffs: int = NUM_COEFFS
  num_regions: int = regions.NUM_REGIONS
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    """images `[N, H, W, 3]` float in [-1, 1] -> (outputs, aux).

    Returns:
      outputs: {"expression": [N, 64], "gaze": [N, 2], "parsing": [N, H, W, R]}, float32.
      aux: {"features": the L backbone maps, coarsest last}.

    Raises:
      ValueError: images not `[N, H, W, 3]`, or H / W not divisible by 2^L.
    """
    del train
    n_levels = len(self.widths)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FaceAnalysisNet: images must be [N, H, W, 3], got {images.shape}")
    if images.shape[1] % 2 ** n_levels or images.shape[2] % 2 ** n_levels:
      raise ValueError(f"FaceAnalysisNet: H, W {images.shape[1:3]} must be divisible by "
                       f"2^{n_levels} (len(widths) = {n_levels})")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = _act(layers.Conv(self.widths[0], 3, name="stem", **kw)(images.astype(self.dtype)))
    stem, feats = x, []
    for i, w in enumerate(self.widths):
      x = _act(layers.Conv(w, 3, strides=2, name=f"down{i}", **kw)(x))
      x = layers.ResBlock(w, name=f"res{i}", **kw)(x)
      feats.append(x)
    expression = _Head(self.num_coeffs, self.head_width, self.head_reduce, name="expression",
                       **kw)(feats[-1])
    gaze_in = feats[-2] if n_levels > 1 else feats[-1]
    gaze = _Head(GAZE_DIMS, self.head_width, max(self.head_reduce // 2, 1), name="gaze",
                 **kw)(gaze_in)
    y = feats[-1]
    for i, skip in reversed(list(enumerate([stem] + feats[:-1]))):
      y = jnp.concatenate([layers.upsample2x(y), skip], -1)
      y = _act(layers.Conv(skip.shape[-1], 3, name=f"up{i}", **kw)(y))
    parsing = layers.Conv(self.num_regions, 1, name="parsing", **kw)(y).astype(jnp.float32)
    return {"expression": expression, "gaze": gaze, "parsing": parsing}, {"features": feats}


SIZES = {
    "tiny": dict(widths=(16, 32, 64, 128), head_width=128, head_reduce=16),
    "paper": dict(widths=(32, 64, 128, 256, 512), head_width=512, head_reduce=32),
}


def from_config(model_cfg, dtype: str = "float32") -> FaceAnalysisNet:
  """`FaceAnalysisNet` of a stage config's `model` (`widths`, `head_width`, `head_reduce`) and
  compute dtype name ("float32" | "bfloat16")."""
  return FaceAnalysisNet(widths=tuple(model_cfg["widths"]), head_width=int(model_cfg["head_width"]),
                         head_reduce=int(model_cfg["head_reduce"]), dtype=jnp.dtype(dtype))


def apply(net: FaceAnalysisNet, params, images) -> dict:
  """`net`'s three outputs for `images [N, H, W, 3]` in [-1, 1] (a pure function, jittable)."""
  return net.apply({"params": params}, images)[0]


def init(net: FaceAnalysisNet, rng: jax.Array, resolution: int):
  """Params of `net` for `[1, resolution, resolution, 3]` images (may hold partitioning boxes)."""
  return net.init({"params": rng}, jnp.zeros([1, resolution, resolution, 3]))["params"]
