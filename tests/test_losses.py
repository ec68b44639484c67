"""Perceptual (eq. 6), mouth-region and L1 losses; crop-and-resize; feature-net fallback."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtalk import losses
from jaxtalk.core import logging_utils
from jaxtalk.models import vgg
from tests.models.test_vgg import _fake_torchvision_state_dict


_perc = jax.jit(losses.perceptual_loss, static_argnames=("net", "scales", "weight"))
_mouth_perc = jax.jit(losses.mouth_perceptual_loss, static_argnames=("net", "size", "scales"))


@pytest.fixture(scope="module")
def random_net():
  return losses.PerceptualNet.create(None)


def _images(key, shape):
  return jax.random.uniform(jax.random.PRNGKey(key), shape, minval=-1.0, maxval=1.0)


def test_crop_and_resize_identity_and_pixel_aligned_crop():
  x = _images(0, (2, 3, 64, 64, 3))
  full = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0, 1.0]), (2, 3, 4))
  np.testing.assert_allclose(losses.crop_and_resize(x, full, 64), x, atol=1e-6)
  box = jnp.broadcast_to(jnp.array([0.25, 0.5, 0.75, 1.0]), (2, 3, 4))
  np.testing.assert_allclose(losses.crop_and_resize(x, box, (32, 32)), x[:, :, 32:64, 16:48],
                             atol=1e-6)
  # Gradients reach the box coordinates.
  g = jax.grad(lambda b: losses.crop_and_resize(x, b, 16).sum())(box * 0.9)
  assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_perceptual_loss_zero_iff_equal(random_net, dtype):
  net, params = random_net
  net = losses.PerceptualNet(net.kind, dtype=dtype)
  x = _images(1, (2, 3, 32, 32, 3)).astype(dtype)
  y = _images(2, (2, 3, 32, 32, 3)).astype(dtype)
  same = _perc(x, x, net=net, params=params)
  diff = _perc(x, y, net=net, params=params)
  assert same.dtype == jnp.float32 and diff.dtype == jnp.float32 and diff.shape == ()
  assert float(same) == 0.0 and float(diff) > 1.0
  # Scales add up: 2-scale loss = 1-scale loss at full + at half resolution.
  half = _perc(x, y, net=net, params=params, scales=(0.5,))
  full = _perc(x, y, net=net, params=params, scales=(1.0,))
  np.testing.assert_allclose(diff, full + half, rtol=2e-2 if dtype == jnp.bfloat16 else 1e-5)


def test_perceptual_mask_ignores_padding_frames(random_net):
  net, params = random_net
  x, y = _images(3, (1, 4, 16, 16, 3)), _images(4, (1, 4, 16, 16, 3))
  mask = jnp.array([[True, True, False, False]])
  y2 = y.at[:, 2:].set(x[:, 2:])
  a = _perc(x, y, net=net, params=params, mask=mask)
  b = _perc(x[:, :2], y2[:, :2], net=net, params=params)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  with pytest.raises(ValueError, match="mask shape"):
    _perc(x, y, net=net, params=params, mask=mask[0])


def test_mouth_terms_only_see_the_mouth(random_net):
  net, params = random_net
  x = _images(5, (2, 2, 64, 64, 3))
  boxes = jnp.broadcast_to(jnp.array([0.3, 0.6, 0.7, 0.85]), (2, 2, 4))
  outside = x.at[:, :, :30].set(-x[:, :, :30])      # rows 0..29 are above the mouth (y >= 38)
  inside = x.at[:, :, 40:52, 22:42].set(0.0)
  assert float(losses.mouth_l1(outside, x, boxes)) == 0.0
  assert float(_mouth_perc(outside, x, boxes, net=net, params=params)) == 0.0
  assert float(losses.mouth_l1(inside, x, boxes)) > 0.1
  assert float(_mouth_perc(inside, x, boxes, net=net, params=params)) > 1.0
  assert float(losses.l1_loss(outside, x)) > 0.1


def test_fallback_warns_once(caplog):
  logging_utils._ANNOUNCED.discard(losses.SUBSTITUTE_KEY)  # pylint: disable=protected-access
  with caplog.at_level(logging.WARNING):
    net1, _ = losses.PerceptualNet.create(None)
    net2, _ = losses.PerceptualNet.create("")
  assert net1.kind == net2.kind == "random"
  assert sum("SUBSTITUTE" in r.getMessage() for r in caplog.records) == 1


def test_vgg_weights_path(tmp_path):
  np.savez(tmp_path / "tv.npz", **_fake_torchvision_state_dict())
  from jaxtalk.pretrained import vgg19 as convert_vgg19
  convert_vgg19.convert(str(tmp_path / "tv.npz"), str(tmp_path / "vgg19.npz"))
  net, params = losses.PerceptualNet.create(str(tmp_path / "vgg19.npz"))
  assert net.kind == "vgg19" and set(params) == set(vgg.CONV_NAMES)
  x, y = _images(6, (2, 32, 32, 3)), _images(7, (2, 32, 32, 3))
  assert len(net.features(params, x)) == 5
  assert float(_perc(x, y, net=net, params=params)) > 0.0
  with pytest.raises(ValueError, match="nope.npz"):
    losses.PerceptualNet.create(str(tmp_path / "nope.npz"))


def test_perceptual_loss_drives_an_image_to_the_target(random_net):
  """Minimising eq. 6 w.r.t. the prediction recovers the target (the loss is usable)."""
  net, params = random_net
  target = _images(8, (1, 32, 32, 3))
  pred = jnp.zeros_like(target)
  opt = optax.adam(0.05)
  state = opt.init(pred)
  loss_fn = jax.jit(jax.value_and_grad(
    lambda p: losses.perceptual_loss(jnp.tanh(p), target, net=net, params=params)))
  first = None
  for _ in range(60):
    loss, g = loss_fn(pred)
    first = first if first is not None else float(loss)
    updates, state = opt.update(g, state)
    pred = optax.apply_updates(pred, updates)
  assert float(loss) < 0.3 * first
  assert float(jnp.abs(jnp.tanh(pred) - target).mean()) < 0.25
