"""LivePortrait's stitching and eye / lip retargeting MLPs (PC-Talk freezes them with the renderer).

Keypoints enter flattened (`[N, 3K]`, K = 21 -> 63). Sizes as LivePortrait's
`stitching_retargeting_module` config:

  stitching  [K_s ⊕ K_d] 126 -> 128-128-64 -> 65: Δ (63) added to K_d and a (dx, dy) shift of
             all driven keypoints, so that the animated face blends into the pasted-back frame;
  lip        [K_s ⊕ r_s^lip ⊕ r^lip] 65 -> 128-128-64 -> 63: Δ moving K_d's mouth to lip-open
             ratio r^lip (`keypoints.lip_open_ratio`);
  eye        [K_s ⊕ r_s^eye (2) ⊕ r^eye] 66 -> 256-256-128-128-64 -> 63: Δ for eye-open ratio
             r^eye (the mean of the two eyes' `keypoints.eye_open_ratio`).

Retargeting is applied as a difference, Δ = MLP(K_s, r_s, r) − MLP(K_s, r_s, r_s), so that
asking for the source's own ratio changes nothing by construction (LivePortrait relies on
training for that); jaxtalk's choice.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from flax import linen as nn

from jaxtalk.models import layers

Dtype = Any
STITCHING_HIDDEN = (128, 128, 64)
LIP_HIDDEN = (128, 128, 64)
EYE_HIDDEN = (256, 256, 128, 128, 64)


class MLP(nn.Module):
  """ReLU MLP with a zero-initialised output layer (starts as "no change")."""
  hidden: Sequence[int]
  out: int
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)
    for i, h in enumerate(self.hidden):
      x = nn.relu(layers.Dense(h, names=("embed", "mlp"), name=f"fc{i}",
                               param_dtype=self.param_dtype)(x))
    return layers.Dense(self.out, names=("mlp", "embed"), zero_init=True, name="out",
                        param_dtype=self.param_dtype)(x)


class StitchingRetargeting(nn.Module):
  """The three MLPs (module docstring). `hidden_scale` divides every hidden width (tiny)."""
  num_keypoints: int = 21
  hidden_scale: int = 1
  param_dtype: Dtype = jnp.float32

  def setup(self):
    k3, sc = 3 * self.num_keypoints, max(1, int(self.hidden_scale))
    div = lambda hs: tuple(max(8, h // sc) for h in hs)  # noqa: E731
    self.stitching_mlp = MLP(div(STITCHING_HIDDEN), k3 + 2, self.param_dtype)
    self.lip_mlp = MLP(div(LIP_HIDDEN), k3, self.param_dtype)
    self.eye_mlp = MLP(div(EYE_HIDDEN), k3, self.param_dtype)

  def stitch(self, kp_source, kp_driving):
    """K_d + Δ + (dx, dy, 0): `[N, K, 3]` each -> `[N, K, 3]`."""
    n, k, _ = kp_source.shape
    out = self.stitching_mlp(jnp.concatenate([kp_source.reshape(n, -1),
                                              kp_driving.reshape(n, -1)], -1))
    shift = jnp.concatenate([out[:, -2:], jnp.zeros_like(out[:, :1])], -1)
    return kp_driving + out[:, :-2].reshape(n, k, 3) + shift[:, None, :]

  def _retarget(self, mlp, kp_source, source_ratio, ratio):
    n, k, _ = kp_source.shape
    flat = kp_source.reshape(n, -1)
    cond = lambda r: jnp.concatenate([flat, source_ratio.reshape(n, -1),  # noqa: E731
                                      jnp.asarray(r, jnp.float32).reshape(n, -1)], -1)
    return (mlp(cond(ratio)) - mlp(cond(_own(source_ratio, ratio)))).reshape(n, k, 3)

  def lip(self, kp_source, source_ratio, ratio):
    """Δ `[N, K, 3]` for lip-open ratio `ratio [N]` (source ratio `[N]`); 0 when equal."""
    return self._retarget(self.lip_mlp, kp_source, source_ratio, ratio)

  def eye(self, kp_source, source_ratio, ratio):
    """Δ `[N, K, 3]` for eye-open ratio `ratio [N]` (source ratios `[N, 2]`); 0 when `ratio` is
    the source's mean ratio."""
    return self._retarget(self.eye_mlp, kp_source, source_ratio, ratio)

  def __call__(self, kp_source, kp_driving, lip_source, lip_ratio, eye_source, eye_ratio):
    """All three (for init): stitched K_d plus the lip and eye Δ."""
    return (self.stitch(kp_source, kp_driving) + self.lip(kp_source, lip_source, lip_ratio)
            + self.eye(kp_source, eye_source, eye_ratio))


def _own(source_ratio, ratio):
  """The source's own condition in `ratio`'s shape: the ratio itself for lips `[N]`, the mean
  of the two eyes for eyes `[N, 2]`."""
  r = jnp.asarray(source_ratio, jnp.float32)
  return r.reshape(jnp.shape(ratio)) if r.ndim == 1 else jnp.mean(r, -1).reshape(jnp.shape(ratio))
