"""The differentiable mouth image of GoHD's L_read (jaxtalk/features/mouth_render.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.features import expression as ex
from jaxtalk.features import mouth_render as mr


def test_soft_polygon_of_a_square():
  """Pixel centres inside a square are ~1, outside ~0, on the edge 0.5."""
  grid = jnp.stack(jnp.meshgrid(jnp.arange(10.0) + 0.5, jnp.arange(10.0) + 0.5,
                                indexing="xy"), -1)
  square = jnp.asarray([[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]])
  s = np.asarray(mr.soft_polygon(square, grid, sharpness=20.0))
  inside = np.zeros((10, 10), bool)
  inside[2:8, 2:8] = True
  assert (s[inside] > 0.99).all() and (s[~inside] < 0.01).all()
  edge = np.asarray(mr.soft_polygon(square, jnp.asarray([[[2.0, 5.0]]]), sharpness=20.0))
  np.testing.assert_allclose(edge, 0.5, atol=1e-3)


def _landmarks(opening: float):
  m68, c68 = ex.landmark_basis(ex.synthetic_basis())
  e = np.zeros(ex.NUM_COMPONENTS, np.float32)
  e[ex.SYNTHETIC_MOUTH] = opening
  return m68, m68 + np.einsum("k,kpc->pc", e, c68)


def test_an_open_mouth_is_darker_and_gradients_reach_the_lips():
  m68, closed = _landmarks(0.0)
  _, opened = _landmarks(3.0)
  c = mr.mouth_center(m68)
  img_c, img_o = np.asarray(mr.render_mouth(closed, c)), np.asarray(mr.render_mouth(opened, c))
  assert img_c.shape == (mr.SIZE, mr.SIZE) and img_c.dtype == np.float32
  assert 0.0 <= img_o.min() and img_o.max() <= 1.0
  assert (img_o < 0.2).mean() > (img_c < 0.2).mean() + 0.05   # the interior shows.
  assert np.isclose(img_c[0, 0], mr.SKIN, atol=1e-3)           # corners are skin.
  g = np.asarray(jax.grad(lambda l: jnp.mean(mr.render_mouth(l, c)))(jnp.asarray(opened)))
  assert np.isfinite(g).all()
  moved = np.abs(g).sum(-1) > 0
  assert moved[list(mr.MOUTH_68)].sum() >= 12 and not moved[:48].any()


def test_batched_and_checked():
  m68, opened = _landmarks(2.0)
  batch = np.broadcast_to(opened, (2, 3, 68, 3))
  out = mr.render_mouth(batch, mr.mouth_center(m68), size=32)
  assert out.shape == (2, 3, 32, 32)
  np.testing.assert_allclose(out[1, 2], mr.render_mouth(opened, mr.mouth_center(m68), size=32),
                             atol=1e-6)
  with pytest.raises(ValueError, match="68"):
    mr.render_mouth(np.zeros((478, 3)), mr.mouth_center(m68))
