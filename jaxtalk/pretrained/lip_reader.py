"""Φ_read of GoHD's lip-reading loss L_read (supplementary B.2, eq. 23): a user's lip reader.

GoHD uses the visual front end of Ma et al. 2022 (auto-AVSR) on rendered mouths. jaxtalk cannot
download or convert it, so the loss takes any lip reader the user has ported to JAX and
serialized with `jax.export` (`jaxtalk.pretrained.exported`), named by
`config.init_from.lipreader`:

  input   float32 `[N, T, 88, 88]` grey mouth crops in [0, 1] (N and T may be symbolic; the crop
          size is the file's and may differ from 88: jaxtalk renders at the file's size)
  output  float32 `[N, T, D]` per-frame features (any D)

serialized with `vjp_order >= 1`. The mouths it sees are `jaxtalk.features.mouth_render`'s
renders of the expression-only meshes' 68 landmarks. Without a file L_read is off (announced
once by the stage).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxtalk.features import mouth_render
from jaxtalk.pretrained import exported

KEY = "init_from.lipreader"
EXPECT = "one input float32[N, T, h, w] (grey mouths in [0, 1], h, w static) and one output " \
         "float32[N, T, D]"


@dataclasses.dataclass(frozen=True)
class LipReader:
  """A loaded Φ_read: `features(mouths [N, T, h, w]) -> [N, T, D]` float32 (jittable,
  differentiable), `size = (h, w)` its input crop, `source` the file."""
  features: Callable[[jax.Array], jax.Array]
  size: tuple[int, int]
  source: str


def _accepts(ins, outs) -> bool:
  return (len(ins) == 1 and len(outs) == 1 and ins[0].ndim == 4 and outs[0].ndim == 3
          and ins[0].dtype == jnp.float32 and outs[0].dtype == jnp.float32
          and all(isinstance(d, int) for d in ins[0].shape[2:])
          and isinstance(outs[0].shape[-1], int))


def load(path: str) -> LipReader:
  """The lip reader serialized at `path` (module docstring).

  Raises:
    ValueError: naming `init_from.lipreader` and the file (`exported.load`'s checks).
  """
  exp = exported.load(path, KEY, expect=EXPECT, check=_accepts)
  h, w = exp.in_avals[0].shape[2:]
  return LipReader(features=exp.call, size=(int(h), int(w)), source=path)


def read_loss(reader: LipReader, l68_true, l68_pred, center, mask):
  """GoHD eq. 23: mean over valid frames of 1 − cos(Φ_read(r_t), Φ_read(r̃_t)).

  Args:
    reader: the loaded lip reader.
    l68_true / l68_pred: `[B, T, 68, 3]` landmarks of the target / predicted expression-only
      meshes (IOD units), rendered with `mouth_render.render_mouth` at the reader's size (the
      target's features are constants: no gradient).
    center: `[2]` the crop centre (`mouth_render.mouth_center` of the neutral landmarks).
    mask: `[B, T]` valid frames.

  Returns:
    scalar float32 in [0, 2].
  """
  h, w = reader.size
  if h != w:
    raise ValueError(f"{reader.source}: lip reader input {h}x{w}; jaxtalk renders square mouths")
  r_true = mouth_render.render_mouth(l68_true, center, size=h)
  r_pred = mouth_render.render_mouth(l68_pred, center, size=h)
  f_true = jax.lax.stop_gradient(reader.features(r_true))
  f_pred = reader.features(r_pred)
  cos = jnp.sum(f_true * f_pred, -1) / jnp.maximum(
      jnp.linalg.norm(f_true, axis=-1) * jnp.linalg.norm(f_pred, axis=-1), 1e-8)
  wgt = mask.astype(jnp.float32)
  return jnp.sum((1.0 - cos) * wgt) / jnp.maximum(jnp.sum(wgt), 1.0)
