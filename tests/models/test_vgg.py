"""VGG19 module, converted-weight loader and the torchvision/Keras converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.pretrained import vgg19 as convert_vgg19
from jaxtalk.models import vgg


def _fake_torchvision_state_dict(seed=0):
  """A torchvision-layout vgg19 state dict built with numpy only (random values)."""
  rng = np.random.default_rng(seed)
  sd, c_in = {}, 3
  for name, idx in vgg.TORCHVISION_INDEX.items():
    c_out = vgg.CONV_CHANNELS[name]
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
    sd[f"features.{idx}.weight"] = w * 0.05
    sd[f"features.{idx}.bias"] = rng.standard_normal((c_out,)).astype(np.float32) * 0.05
    c_in = c_out
  sd["classifier.0.weight"] = np.zeros((8, 4), np.float32)   # dropped by the converter
  return sd


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_vgg19_shapes(dtype):
  x = jnp.zeros((2, 32, 32, 3))
  model = vgg.VGG19(dtype=dtype)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  feats, aux = jax.eval_shape(model.apply, params, x)
  assert [f.shape for f in feats] == [(2, 32, 32, 64), (2, 16, 16, 128), (2, 8, 8, 256),
                                      (2, 4, 4, 512), (2, 2, 2, 512)]
  assert all(f.dtype == jnp.float32 for f in feats)
  assert set(aux) == set(vgg.PERCEPTUAL_LAYERS)


def test_vgg19_stops_at_deepest_layer():
  model = vgg.VGG19(output_layers=("relu2_1",))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
  assert set(params["params"]) == {"conv1_1", "conv1_2", "conv2_1"}
  with pytest.raises(ValueError, match="unknown VGG19 layers"):
    vgg.VGG19(output_layers=("relu9_1",)).init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))


def test_torchvision_npz_round_trip(tmp_path):
  sd = _fake_torchvision_state_dict()
  src, out = tmp_path / "vgg19_torch_keys.npz", tmp_path / "vgg19.npz"
  np.savez(src, **sd)
  assert convert_vgg19.main(["--src", str(src), "--out", str(out)]) == 0
  params, mode = vgg.load_vgg19(out)
  assert mode == "torch"
  for name, idx in vgg.TORCHVISION_INDEX.items():
    np.testing.assert_array_equal(params[name]["kernel"],
                                  sd[f"features.{idx}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[name]["bias"], sd[f"features.{idx}.bias"])
  # The loaded params compute what torch's conv (OIHW, cross-correlation, pad 1) computes.
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 16, 16, 3))
  feats, _ = vgg.VGG19(output_layers=("relu1_1",)).apply({"params": params}, x)
  ref = jax.lax.conv_general_dilated(
    x, jnp.asarray(sd["features.0.weight"]), (1, 1), ((1, 1), (1, 1)),
    dimension_numbers=("NHWC", "OIHW", "NHWC")) + sd["features.0.bias"]
  np.testing.assert_allclose(feats[0], jax.nn.relu(ref), rtol=1e-5, atol=1e-5)


def test_keras_conversion_flips_bgr_to_rgb():
  sd = _fake_torchvision_state_dict(1)
  layers = {}
  for name, idx in vgg.TORCHVISION_INDEX.items():
    layers[f"block{name[4]}_conv{name[6]}"] = (
      sd[f"features.{idx}.weight"].transpose(2, 3, 1, 0), sd[f"features.{idx}.bias"])
  params = convert_vgg19.from_keras(layers)
  x_rgb = jax.random.normal(jax.random.PRNGKey(2), (1, 8, 8, 3))
  conv = lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(conv(x_rgb, params["conv1_1"]["kernel"]),
                             conv(x_rgb[..., ::-1], layers["block1_conv1"][0]), atol=1e-5)
  np.testing.assert_array_equal(params["conv2_1"]["kernel"], layers["block2_conv1"][0])


def test_torch_pth_conversion(tmp_path):
  torch = pytest.importorskip("torch")
  sd = {k: torch.from_numpy(v) for k, v in _fake_torchvision_state_dict().items()}
  torch.save(sd, tmp_path / "vgg19.pth")
  params = convert_vgg19.convert(str(tmp_path / "vgg19.pth"), str(tmp_path / "out.npz"))
  assert params["conv5_4"]["kernel"].shape == (3, 3, 512, 512)


def test_bad_inputs_name_the_file(tmp_path):
  with pytest.raises(ValueError, match="missing.npz"):
    vgg.load_vgg19(tmp_path / "missing.npz")
  sd = _fake_torchvision_state_dict()
  del sd["features.34.weight"]
  np.savez(tmp_path / "partial.npz", **sd)
  with pytest.raises(ValueError, match="partial.npz.*features.34"):
    convert_vgg19.convert(str(tmp_path / "partial.npz"), str(tmp_path / "o.npz"))
  assert not (tmp_path / "o.npz").exists()
  assert convert_vgg19.main(["--src", str(tmp_path / "x.txt"), "--out", "o.npz"]) == 1
