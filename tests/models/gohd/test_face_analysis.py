"""jaxtalk's face-analysis substitute (models/gohd/face_analysis.py) and the loader the animator
calls (pretrained/face_analysis.py): shapes, dtypes, gradients, the jax.export route."""

import logging

from flax import linen as nn
import jax
from jax import export
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.core import checkpointing
from jaxtalk.core import logging_utils
from jaxtalk.features import regions
from jaxtalk.models.gohd import face_analysis as fa_models
from jaxtalk.pretrained import face_analysis as fa_lib

TINY = dict(widths=(8, 16), head_width=16, head_reduce=4)


def _images(n=2, res=16, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, res, res, 3), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_three_heads_shapes_and_dtypes(dtype):
  net = fa_models.FaceAnalysisNet(**TINY, dtype=dtype)
  params = nn.unbox(fa_models.init(net, jax.random.PRNGKey(0), 16))
  out, aux = net.apply({"params": params}, _images())
  assert out["expression"].shape == (2, 64) and out["gaze"].shape == (2, 2)
  assert out["parsing"].shape == (2, 16, 16, regions.NUM_REGIONS)
  assert all(v.dtype == jnp.float32 for v in out.values())
  assert [f.shape[1] for f in aux["features"]] == [8, 4]
  assert all(np.isfinite(np.asarray(v)).all() for v in out.values())


def test_untrained_regression_heads_predict_zero():
  """Zero-initialised output layers: an untrained network predicts e = 0 and g = 0 (~the
  training means), so the first losses are ~1 rather than the scale of random features."""
  net = fa_models.FaceAnalysisNet(**TINY)
  params = nn.unbox(fa_models.init(net, jax.random.PRNGKey(0), 16))
  out = fa_models.apply(net, params, _images())
  assert float(jnp.abs(out["expression"]).max()) == 0.0 and float(jnp.abs(out["gaze"]).max()) == 0


def test_gradient_wrt_the_image_is_finite_and_nonzero():
  net = fa_models.FaceAnalysisNet(**TINY)
  params = jax.tree.map(lambda p: p + 0.01, nn.unbox(fa_models.init(net, jax.random.PRNGKey(0),
                                                                   16)))
  for name in ("expression", "gaze", "parsing"):
    g = jax.grad(lambda x: jnp.sum(fa_models.apply(net, params, x)[name] ** 2))(_images())
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0, name


def test_rejects_resolution_not_divisible():
  net = fa_models.FaceAnalysisNet(**TINY)
  with pytest.raises(ValueError, match="divisible"):
    fa_models.init(net, jax.random.PRNGKey(0), 18)


def _export(fn, tmp_path, name, shape=("n", 32, 32, 3), vjp=1):
  spec = jax.ShapeDtypeStruct(export.symbolic_shape(",".join(map(str, shape))), jnp.float32)
  path = tmp_path / f"{name}.jax_export"
  path.write_bytes(export.export(jax.jit(fn))(spec).serialize(vjp_order=vjp))
  return str(path)


def _user_nets(tmp_path):
  w = jnp.asarray(np.random.default_rng(0).normal(size=(3, 50)), jnp.float32)
  return {
      "exp_export": _export(lambda x: jnp.mean(x, (1, 2)) @ w, tmp_path, "exp"),
      "gaze_export": _export(lambda x: jnp.mean(x, (1, 2))[:, :2] * 2.0, tmp_path, "gaze"),
      "parsing_export": _export(lambda x: jnp.concatenate([x, -x], -1)[:, ::2, ::2], tmp_path,
                                "pars"),
  }, w


def test_export_route_round_trips_and_differentiates(tmp_path):
  """Exported user networks (any D, R; 32 px input) wrapped to (params, images) functions: same
  values as the functions exported, images of another size resized in, parsing resized back."""
  paths, w = _user_nets(tmp_path)
  fa = fa_lib.load_face_analysis(paths)
  assert fa.params == {} and fa.dims == {"expression": 50, "gaze": 2, "parsing": 6}
  x = _images(2, 32)
  np.testing.assert_allclose(jax.jit(fa.expression)(fa.params, x), jnp.mean(x, (1, 2)) @ w,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fa.gaze(fa.params, x), jnp.mean(x, (1, 2))[:, :2] * 2, rtol=1e-6)
  assert fa.parsing(fa.params, _images(3, 64)).shape == (3, 64, 64, 6)
  g = jax.grad(lambda im: jnp.sum(fa.gaze(fa.params, im)))(_images(2, 64))
  assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0


def test_export_route_rejects_bad_files(tmp_path):
  paths, _ = _user_nets(tmp_path)
  with pytest.raises(ValueError, match="missing.jax_export.: no such file"):
    fa_lib.load_face_analysis({"gaze_export": str(tmp_path / "missing.jax_export"),
                               "exp_export": paths["exp_export"],
                               "parsing_export": paths["parsing_export"]})
  bad = tmp_path / "junk.bin"
  bad.write_bytes(b"not an export")
  with pytest.raises(ValueError, match="junk.bin.: not a jax.export serialization"):
    fa_lib.load_export(str(bad), "gaze")
  three = _export(lambda x: jnp.mean(x, (1, 2)), tmp_path, "three")  # [N, 3] is no gaze.
  with pytest.raises(ValueError, match=r"three.jax_export.: signature .*expected .*\[N, 2\]"):
    fa_lib.load_export(three, "gaze")
  with pytest.raises(ValueError, match="expected one input"):
    fa_lib.load_export(paths["exp_export"], "parsing")
  novjp = _export(lambda x: jnp.mean(x, (1, 2))[:, :2], tmp_path, "novjp", vjp=0)
  with pytest.raises(ValueError, match="vjp_order=1"):
    fa_lib.load_export(novjp, "gaze")
  with pytest.raises(ValueError, match="init_from.face_analysis"):
    fa_lib.load_face_analysis({"exp_export": paths["exp_export"]})


def test_substitute_route_announces_once_and_mixes_with_exports(tmp_path, caplog):
  """A gohd_face_analysis `<workdir>/params` (+ config.json) serves the networks without an
  export, each announced once; outputs equal the network's."""
  import json  # pylint: disable=g-import-not-at-top
  net = fa_models.FaceAnalysisNet(**TINY)
  params = nn.unbox(fa_models.init(net, jax.random.PRNGKey(1), 16))
  params = jax.tree.map(lambda p: p + 0.01, params)
  checkpointing.save_params(tmp_path / "params", params)
  (tmp_path / "config.json").write_text(json.dumps(
      {"model": dict(TINY), "input": {"resolution": 16}, "dtype": "float32"}))
  paths, _ = _user_nets(tmp_path)
  spec = {"face_analysis": str(tmp_path / "params"), "gaze_export": paths["gaze_export"]}
  logging_utils._ANNOUNCED.clear()  # pylint: disable=protected-access
  with caplog.at_level(logging.WARNING):
    fa = fa_lib.load_face_analysis(spec)
    fa_lib.load_face_analysis(spec)
  msgs = [r.getMessage() for r in caplog.records if "(substitute)" in r.getMessage()]
  assert len(msgs) == 2 and msgs[0].startswith("Φ_exp: DECA not given"), msgs
  assert fa.sources["gaze"].startswith("export:") and fa.dims["parsing"] == regions.NUM_REGIONS
  x = _images(2, 16)
  want = fa_models.apply(net, params, x)
  np.testing.assert_allclose(fa.expression(fa.params, x), want["expression"], rtol=1e-5,
                             atol=1e-6)
  assert fa.parsing(fa.params, _images(2, 32)).shape == (2, 32, 32, regions.NUM_REGIONS)
  bf = fa_lib.load_face_analysis(spec, dtype="bfloat16")
  assert bf.expression(bf.params, x).dtype == jnp.float32
