"""Tests of jaxtalk/features/wav2vec.py and jaxtalk/models/wav2vec2.py: the Flax wav2vec 2.0 port.

* stable-layer-norm / layer-norm conv stack (large-lv60 style): against transformers'
  `FlaxWav2Vec2Model` (an independent implementation), weights written as PyTorch-named
  safetensors by a converter in this file that goes the opposite way from the loader.
* group-norm / post-LN (wav2vec2-base style): transformers has no JAX model for it and torch is
  not installed, so against a float64 NumPy reference written here from the PyTorch semantics,
  reading the PyTorch-layout state dict directly (no shared conversion code).
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxtalk.features import wav2vec

# Tiny conv stack: kernels 10,3,2 / strides 5,2,2 -> stride 20 samples, receptive field 30.
TINY = dict(conv_dim=(8, 12, 8), conv_kernel=(10, 3, 2), conv_stride=(5, 2, 2), hidden_size=32,
            num_hidden_layers=2, num_attention_heads=4, intermediate_size=40)


def _write_config(path, **kw):
  path.mkdir(parents=True, exist_ok=True)
  (path / "config.json").write_text(json.dumps(dict(model_type="wav2vec2", **kw)))


def _save(path, state, cfg):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  _write_config(path, **cfg)
  save_file({k: np.ascontiguousarray(v, np.float32) for k, v in state.items()},
            str(path / "model.safetensors"))


@functools.lru_cache(maxsize=None)  # models with equal attributes share the compiled function.
def _jit_apply(model):
  return jax.jit(lambda p, x, m: model.apply({"params": p}, x, mask=m, output_hidden_states=True))


# ------------------------------------------------------------------------------------------------
# Stable-layer-norm variant vs transformers' FlaxWav2Vec2Model.


def _flax_to_torch(tree, weight_norm="weight_gv"):
  """transformers Flax params -> PyTorch state dict (names and layouts), the loader's inverse."""
  out = {}

  def walk(node, path):
    for k, v in node.items():
      if isinstance(v, dict):
        walk(v, path + [k])
        continue
      v, mod = np.asarray(v, np.float32), ".".join(path)
      if k == "kernel":
        out[f"{mod}.weight"] = v.T if v.ndim == 2 else v.transpose(2, 1, 0)
      elif k == "scale":
        out[f"{mod}.weight"] = v
      elif k in ("weight_g", "weight_v") and weight_norm == "parametrizations":
        out[f"{mod}.parametrizations.weight.original{0 if k == 'weight_g' else 1}"] = v
      elif k in ("weight_g", "weight_v"):  # transformers' Flax keeps PyTorch layout here.
        out[f"{mod}.{k}"] = v
      else:
        out[".".join(path + [k])] = v

  walk(tree, [])
  return out


@pytest.fixture(scope="module")
def stable(tmp_path_factory):
  """A tiny transformers FlaxWav2Vec2Model with random params (its param tree's shapes, every
  value random so norms and biases are not identities) saved as PyTorch-named safetensors and as
  msgpack."""
  from transformers import FlaxWav2Vec2Model, Wav2Vec2Config  # pylint: disable=g-import-not-at-top
  cfg = dict(TINY, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
             num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
  hf = FlaxWav2Vec2Model(Wav2Vec2Config(**cfg), _do_init=False)
  shapes = jax.eval_shape(functools.partial(hf.init_weights, input_shape=(1, 400)),
                          jax.random.PRNGKey(0))
  leaves, tdef = jax.tree.flatten(shapes)
  rng = np.random.default_rng(0)
  params = tdef.unflatten([(0.3 * rng.standard_normal(a.shape)).astype(np.float32)
                           for a in leaves])
  root = tmp_path_factory.mktemp("stable")
  _save(root / "st", _flax_to_torch(params), cfg)
  hf.save_pretrained(str(root / "msgpack"), params=params)
  return hf, params, cfg, root


def test_stable_matches_transformers_flax(stable):
  hf, hf_params, _, root = stable
  model, params = wav2vec.load_wav2vec(str(root / "st"))
  rng = np.random.default_rng(1)
  wav = rng.standard_normal([2, 1001]).astype(np.float32)  # odd length
  mask = np.ones_like(wav, bool)
  mask[1, 700:] = False  # row 1: 700 real samples, then padding.
  ref = jax.jit(lambda p, x, m: hf(x, attention_mask=m, params=p, output_hidden_states=True,
                                   train=False))(hf_params, wav, mask.astype(np.int32))
  out, aux = _jit_apply(model)(params, wav, mask)
  assert out.shape == ref.last_hidden_state.shape == (2, model.num_frames(1001), 32)
  assert len(aux["hidden_states"]) == len(ref.hidden_states) == 3
  valid = model.num_frames(700)
  np.testing.assert_array_equal(aux["frame_mask"][1], np.arange(out.shape[1]) < valid)
  np.testing.assert_allclose(aux["extract_features"], ref.extract_features, atol=1e-5)
  diffs = []
  for a, b in zip((out,) + aux["hidden_states"], (ref.last_hidden_state,) + ref.hidden_states):
    a, b = np.asarray(a), np.asarray(b)
    diffs.append(max(np.abs(a[0] - b[0]).max(), np.abs(a[1, :valid] - b[1, :valid]).max()))
  print("stable vs transformers max abs diff (last, hidden_states...):", diffs)
  assert max(diffs) < 1e-5, diffs
  # The msgpack folder maps into the same params.
  _, params_mp = wav2vec.load_wav2vec(str(root / "msgpack"))
  jax.tree.map(np.testing.assert_array_equal, params_mp, params)


def test_weight_norm_namings_prefix_and_heads_load_identically(stable, tmp_path):
  hf, hf_params, cfg, root = stable
  _, ref = wav2vec.load_wav2vec(str(root / "st"))
  state = _flax_to_torch(hf_params, "parametrizations")
  # Wav2Vec2ForCTC-style: `wav2vec2.` prefix plus a head that is ignored.
  ctc = {"wav2vec2." + k: v for k, v in state.items()}
  ctc["lm_head.weight"] = np.zeros([5, 32], np.float32)
  _save(tmp_path / "ctc", ctc, cfg)
  _, p = wav2vec.load_wav2vec(str(tmp_path / "ctc"))
  jax.tree.map(np.testing.assert_array_equal, p, ref)
  # A folded (plain) positional conv weight gives the same kernel.
  folded = dict(state)
  g = folded.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original0")
  v = folded.pop("encoder.pos_conv_embed.conv.parametrizations.weight.original1")
  folded["encoder.pos_conv_embed.conv.weight"] = g * v / np.linalg.norm(v, axis=(0, 1),
                                                                         keepdims=True)
  _save(tmp_path / "folded", folded, cfg)
  model, p = wav2vec.load_wav2vec(str(tmp_path / "folded"))
  wav = np.random.default_rng(2).standard_normal([1, 500]).astype(np.float32)
  a = _jit_apply(model)(ref, wav, None)[0]
  b = _jit_apply(model)(p, wav, None)[0]
  np.testing.assert_allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# NumPy reference of the PyTorch forward (float64), reading the PyTorch state dict.


def _np_conv1d(x, w, b, stride=1, groups=1, pad=0):
  """PyTorch Conv1d: x [Cin, N], w [Cout, Cin/groups, k] -> [Cout, L]."""
  x = np.pad(x, ((0, 0), (pad, pad)))
  c_out, c_in_g, k = w.shape
  length = (x.shape[1] - k) // stride + 1
  out = np.zeros([c_out, length])
  per = c_out // groups
  for o in range(c_out):
    g = o // per
    xs = x[g * c_in_g:(g + 1) * c_in_g]
    for t in range(length):
      out[o, t] = np.sum(w[o] * xs[:, t * stride:t * stride + k])
  return out if b is None else out + b[:, None]


def _np_gelu(x):
  return 0.5 * x * (1 + special.erf(x / np.sqrt(2)))


def _np_ln(x, w, b, eps=1e-5):
  m = x.mean(-1, keepdims=True)
  v = ((x - m) ** 2).mean(-1, keepdims=True)
  return (x - m) / np.sqrt(v + eps) * w + b


def _np_forward(sd, cfg, wav):
  """wav2vec 2.0 forward of one row `wav [N]` -> (last [L, D], hidden_states list)."""
  sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
  x = wav[None].astype(np.float64)
  for i, (k, s) in enumerate(zip(cfg["conv_kernel"], cfg["conv_stride"])):
    p = f"feature_extractor.conv_layers.{i}."
    x = _np_conv1d(x, sd[p + "conv.weight"], sd.get(p + "conv.bias"), stride=s)
    if cfg["feat_extract_norm"] == "layer":
      x = _np_ln(x.T, sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"]).T
    elif i == 0:  # GroupNorm(C, C): each channel over time.
      m, v = x.mean(1, keepdims=True), x.var(1, keepdims=True)
      x = (x - m) / np.sqrt(v + 1e-5) * sd[p + "layer_norm.weight"][:, None] \
          + sd[p + "layer_norm.bias"][:, None]
    x = _np_gelu(x)
  x = _np_ln(x.T, sd["feature_projection.layer_norm.weight"],
             sd["feature_projection.layer_norm.bias"])
  x = x @ sd["feature_projection.projection.weight"].T + sd["feature_projection.projection.bias"]
  g, v = sd["encoder.pos_conv_embed.conv.weight_g"], sd["encoder.pos_conv_embed.conv.weight_v"]
  w = g * v / np.sqrt((v ** 2).sum(axis=(0, 1), keepdims=True))
  kernel = w.shape[2]
  pos = _np_conv1d(x.T, w, sd["encoder.pos_conv_embed.conv.bias"],
                   groups=cfg["num_conv_pos_embedding_groups"], pad=kernel // 2)
  if kernel % 2 == 0:
    pos = pos[:, :-1]
  x = x + _np_gelu(pos.T)
  stable = cfg["do_stable_layer_norm"]
  enc_ln = (sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"])
  if not stable:
    x = _np_ln(x, *enc_ln)
  hidden = [x]
  heads = cfg["num_attention_heads"]
  for li in range(cfg["num_hidden_layers"]):
    p = f"encoder.layers.{li}."
    lin = lambda h, n, p=p: h @ sd[p + n + ".weight"].T + sd[p + n + ".bias"]

    def attn(h, lin=lin):
      q, k, v = (lin(h, f"attention.{n}_proj") for n in "qkv")
      dh = q.shape[1] // heads
      out = np.zeros_like(q)
      for hd in range(heads):
        sl = slice(hd * dh, (hd + 1) * dh)
        sc = q[:, sl] @ k[:, sl].T / np.sqrt(dh)
        e = np.exp(sc - sc.max(1, keepdims=True))
        out[:, sl] = (e / e.sum(1, keepdims=True)) @ v[:, sl]
      return lin(out, "attention.out_proj")

    ff = lambda h, lin=lin: lin(_np_gelu(lin(h, "feed_forward.intermediate_dense")),
                                "feed_forward.output_dense")
    ln1 = lambda h, p=p: _np_ln(h, sd[p + "layer_norm.weight"], sd[p + "layer_norm.bias"])
    ln2 = lambda h, p=p: _np_ln(h, sd[p + "final_layer_norm.weight"],
                                sd[p + "final_layer_norm.bias"])
    if stable:
      x = x + attn(ln1(x))
      x = x + ff(ln2(x))
    else:
      x = ln1(x + attn(x))
      x = ln2(x + ff(x))
    hidden.append(x)
  if stable:
    x = _np_ln(x, *enc_ln)
    hidden[-1] = x
  return x, hidden


def _random_state(cfg, rng, weight_norm="weight_gv"):
  """A random PyTorch-layout state dict for `cfg` (shapes written out from the PyTorch modules)."""
  sd, c_in = {}, 1
  for i, (c, k) in enumerate(zip(cfg["conv_dim"], cfg["conv_kernel"])):
    p = f"feature_extractor.conv_layers.{i}."
    sd[p + "conv.weight"] = rng.standard_normal([c, c_in, k]) / np.sqrt(c_in * k)
    if cfg.get("conv_bias"):
      sd[p + "conv.bias"] = 0.1 * rng.standard_normal([c])
    if cfg["feat_extract_norm"] == "layer" or i == 0:
      sd[p + "layer_norm.weight"] = 1 + 0.2 * rng.standard_normal([c])
      sd[p + "layer_norm.bias"] = 0.2 * rng.standard_normal([c])
    c_in = c
  d, f = cfg["hidden_size"], cfg["intermediate_size"]
  kernel, groups = cfg["num_conv_pos_embeddings"], cfg["num_conv_pos_embedding_groups"]

  def lin(name, n_out, n_in):
    sd[name + ".weight"] = rng.standard_normal([n_out, n_in]) / np.sqrt(n_in)
    sd[name + ".bias"] = 0.1 * rng.standard_normal([n_out])

  def ln(name, n):
    sd[name + ".weight"] = 1 + 0.2 * rng.standard_normal([n])
    sd[name + ".bias"] = 0.2 * rng.standard_normal([n])

  ln("feature_projection.layer_norm", c_in)
  lin("feature_projection.projection", d, c_in)
  g = 1 + 0.2 * rng.standard_normal([1, 1, kernel])
  v = rng.standard_normal([d, d // groups, kernel])
  pc = "encoder.pos_conv_embed.conv."
  if weight_norm == "parametrizations":
    sd[pc + "parametrizations.weight.original0"] = g
    sd[pc + "parametrizations.weight.original1"] = v
  else:
    sd[pc + "weight_g"], sd[pc + "weight_v"] = g, v
  sd[pc + "bias"] = 0.1 * rng.standard_normal([d])
  ln("encoder.layer_norm", d)
  for li in range(cfg["num_hidden_layers"]):
    p = f"encoder.layers.{li}."
    for n in "qkv":
      lin(p + f"attention.{n}_proj", d, d)
    lin(p + "attention.out_proj", d, d)
    ln(p + "layer_norm", d)
    lin(p + "feed_forward.intermediate_dense", f, d)
    lin(p + "feed_forward.output_dense", d, f)
    ln(p + "final_layer_norm", d)
  sd["masked_spec_embed"] = rng.uniform(size=[d])  # in every checkpoint; unused at inference.
  return {k: v.astype(np.float32) for k, v in sd.items()}


BASE = dict(TINY, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False,
            num_conv_pos_embeddings=5, num_conv_pos_embedding_groups=4)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  root = tmp_path_factory.mktemp("base")
  sd = _random_state(BASE, np.random.default_rng(3))
  _save(root / "gv", sd, BASE)
  return sd, root


def test_base_group_norm_post_ln_matches_numpy_reference(base):
  sd, root = base
  model, params = wav2vec.load_wav2vec(str(root / "gv"))
  wav = np.random.default_rng(4).standard_normal(777).astype(np.float32)
  out, aux = _jit_apply(model)(params, wav[None], None)
  ref, ref_hidden = _np_forward(sd, BASE, wav)
  assert out.shape == (1,) + ref.shape == (1, model.num_frames(777), 32)
  diffs = [float(np.abs(np.asarray(a[0]) - b).max())
           for a, b in zip((out,) + aux["hidden_states"], [ref] + ref_hidden)]
  print("base vs NumPy reference max abs diff (last, hidden_states...):", diffs)
  assert max(diffs) < 2e-5, diffs


def test_variant_flag_matters_and_both_match_reference(base, tmp_path):
  sd, root = base
  wav = np.random.default_rng(5).standard_normal(777).astype(np.float32)
  _, params = wav2vec.load_wav2vec(str(root / "gv"))
  outs = {}
  for stable in (False, True):
    cfg = dict(BASE, do_stable_layer_norm=stable)
    model = wav2vec.model_from_config(cfg)
    out, aux = _jit_apply(model)(params, wav[None], None)
    ref, ref_hidden = _np_forward(sd, cfg, wav)
    np.testing.assert_allclose(out[0], ref, atol=2e-5)
    np.testing.assert_allclose(aux["hidden_states"][0][0], ref_hidden[0], atol=2e-5)
    outs[stable] = np.asarray(out[0])
  assert np.abs(outs[True] - outs[False]).max() > 0.1
  # The layer-norm conv stack has a norm after every conv: a group-norm checkpoint lacks them.
  cfg = dict(BASE, feat_extract_norm="layer")
  _save(tmp_path / "layer", sd, cfg)
  with pytest.raises(ValueError, match=r"conv_layers\.1\.layer_norm\.weight"):
    wav2vec.load_wav2vec(str(tmp_path / "layer"))


def test_padding_mask_gives_the_unpadded_frames_for_group_norm(base):
  sd, root = base
  model, params = wav2vec.load_wav2vec(str(root / "gv"))
  rng = np.random.default_rng(6)
  a, b = rng.standard_normal(640).astype(np.float32), rng.standard_normal(411).astype(np.float32)
  padded = np.zeros([2, 777], np.float32)
  padded[0, :640], padded[1, :411] = a, b
  mask = padded != 0
  out, aux = _jit_apply(model)(params, padded, mask)
  for row, w in enumerate((a, b)):
    alone, _ = _np_forward(sd, BASE, w)
    n = model.num_frames(w.size)
    assert int(aux["frame_mask"][row].sum()) == n == alone.shape[0]
    np.testing.assert_allclose(out[row, :n], alone, atol=2e-5)
  # Unmasked padding would change the group-norm statistics (why the mask matters).
  unmasked = _jit_apply(model)(params, padded, None)[0]
  assert np.abs(unmasked[1, :model.num_frames(411)] - out[1, :model.num_frames(411)]).max() > 1e-3


def test_frame_counts_for_odd_and_short_lengths(base):
  from jaxtalk.models import wav2vec2  # pylint: disable=g-import-not-at-top
  # The standard stack: receptive field 400, stride 320.
  std = wav2vec.CONFIG_DEFAULTS
  assert wav2vec2.receptive_field(std["conv_kernel"], std["conv_stride"]) == 400
  for n in (399, 400, 719, 720, 1001, 16000, 16001, 640 * 75):
    expect = max(0, (n - 400) // 320 + 1)
    assert wav2vec2.conv_output_length(n, std["conv_kernel"], std["conv_stride"]) == expect, n
  assert wav2vec2.conv_output_length(16000, std["conv_kernel"], std["conv_stride"]) == 49
  # The tiny model: field 30, stride 20.
  _, root = base
  model, params = wav2vec.load_wav2vec(str(root / "gv"))
  assert (model.receptive_field, model.samples_per_frame) == (30, 20)
  for n in (30, 49, 50, 77, 131):
    out = jax.eval_shape(model.apply, {"params": params}, np.ones([1, n], np.float32))[0]
    assert out.shape[1] == model.num_frames(n) == (n - 30) // 20 + 1, n
  with pytest.raises(ValueError, match="receptive field is 30"):
    model.apply({"params": params}, np.ones([1, 29], np.float32))


def test_bf16_runs_close_to_f32(base):
  _, root = base
  model, params = wav2vec.load_wav2vec(str(root / "gv"))
  model16, params16 = wav2vec.load_wav2vec(str(root / "gv"), dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params16))
  wav = np.random.default_rng(7).standard_normal([1, 777]).astype(np.float32)
  out16, aux16 = _jit_apply(model16)(params16, wav, None)
  out32 = _jit_apply(model)(params, wav, None)[0]
  assert out16.dtype == jnp.bfloat16 and out16.shape == out32.shape
  assert all(h.dtype == jnp.bfloat16 for h in aux16["hidden_states"])
  err = np.abs(np.asarray(out16, np.float32) - np.asarray(out32))
  assert np.isfinite(err).all() and err.mean() < 0.05 * np.asarray(out32).std(), err.mean()


def test_parametrizations_naming_loads_like_weight_g_v(base, tmp_path):
  sd, root = base
  _, ref = wav2vec.load_wav2vec(str(root / "gv"))
  sd2 = _random_state(BASE, np.random.default_rng(3), weight_norm="parametrizations")
  assert "encoder.pos_conv_embed.conv.weight_g" not in sd2
  _save(tmp_path / "param", sd2, BASE)
  _, p = wav2vec.load_wav2vec(str(tmp_path / "param"))
  jax.tree.map(np.testing.assert_array_equal, p, ref)


def test_clear_errors(base, tmp_path):
  sd, _ = base
  bad = dict(sd)
  del bad["encoder.layers.1.attention.k_proj.weight"]
  _save(tmp_path / "missing", bad, BASE)
  with pytest.raises(ValueError, match=r"model\.safetensors(.|\n)*missing keys \(1\): "
                                       r"encoder\.layers\.1\.attention\.k_proj\.weight"):
    wav2vec.load_wav2vec(str(tmp_path / "missing"))
  bad = dict(sd, **{"encoder.layers.0.feed_forward.output_dense.weight": np.zeros([32, 41])})
  _save(tmp_path / "shape", bad, BASE)
  with pytest.raises(ValueError, match=r"output_dense\.weight: file \[32, 41\], config\.json "
                                       r"expects \[32, 40\]"):
    wav2vec.load_wav2vec(str(tmp_path / "shape"))
  bad = dict(sd, **{"encoder.layers.0.extra.weight": np.zeros([2])})
  _save(tmp_path / "extra", bad, BASE)
  with pytest.raises(ValueError, match=r"unexpected keys \(1\): encoder\.layers\.0\.extra"):
    wav2vec.load_wav2vec(str(tmp_path / "extra"))
  (tmp_path / "nocfg").mkdir()
  with pytest.raises(ValueError, match="has no config.json"):
    wav2vec.load_wav2vec(str(tmp_path / "nocfg"))
  _write_config(tmp_path / "bin", **BASE)
  (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
  with pytest.raises(ValueError, match=r"pytorch_model\.bin: torch-pickled(.|\n)*"
                                       r"safetensors\.torch\.save_file"):
    wav2vec.load_wav2vec(str(tmp_path / "bin"))
  _write_config(tmp_path / "empty", **BASE)
  with pytest.raises(ValueError, match="has no weights"):
    wav2vec.load_wav2vec(str(tmp_path / "empty"))
  _write_config(tmp_path / "adapter", add_adapter=True, **BASE)
  with pytest.raises(ValueError, match="adapters"):
    wav2vec.load_wav2vec(str(tmp_path / "adapter"))


def test_config_defaults_are_transformers_defaults():
  from transformers import Wav2Vec2Config  # pylint: disable=g-import-not-at-top
  ref = Wav2Vec2Config()
  for k, v in wav2vec.CONFIG_DEFAULTS.items():
    got = getattr(ref, k)
    assert (tuple(got) if isinstance(got, list) else got) == v, k


# ------------------------------------------------------------------------------------------------
# The one feature path: 25 fps alignment and Wav2Vec2Features.


def test_to_video_frames_alignment():
  feats = np.arange(100, dtype=np.float32)[:, None]  # wav2vec frame j has value j
  out = wav2vec.to_video_frames(feats, 50)
  np.testing.assert_array_equal(out[:, 0], 2 * np.arange(50) + 0.5)  # mean of frames 2t, 2t+1
  # A clip of T = 5 video frames (3200 samples) has 2T - 1 = 9 valid frames; padding is unused.
  padded = np.concatenate([np.arange(9), np.full(7, 1e6)]).astype(np.float32)[:, None]
  out = wav2vec.to_video_frames(padded, 5, valid_frames=9)
  np.testing.assert_array_equal(out[:, 0], [0.5, 2.5, 4.5, 6.5, 8.0])
  # The same as linear interpolation at feature position 2t + 0.5, clamped (the former rule).
  x = np.random.default_rng(8).standard_normal([40, 3]).astype(np.float32)
  pos = np.clip(2 * np.arange(22) + 0.5, 0, 39)
  lo = np.floor(pos).astype(int)
  hi, w = np.minimum(lo + 1, 39), (pos - lo)[:, None]
  np.testing.assert_allclose(wav2vec.to_video_frames(x, 22), (1 - w) * x[lo] + w * x[hi],
                             atol=1e-6)
  with pytest.raises(ValueError, match="whole number"):
    wav2vec.to_video_frames(x, 3, samples_per_frame=300)


def test_wav2vec2_features_buckets_match_one_shot(base):
  from jaxtalk.features import audio  # pylint: disable=g-import-not-at-top
  sd, root = base
  feats = audio.Wav2Vec2Features(str(root / "gv"), bucket_seconds=0.1)
  assert feats.dim == 32 and feats.normalize
  wav = 0.3 * np.sin(np.arange(2000) * 0.05).astype(np.float32)  # 3 video frames + 80 samples
  out = feats(wav)
  assert out.shape == (3, 32) and out.dtype == np.float32
  one = wav2vec.wav2vec_features(feats.model, feats.params, wav)
  np.testing.assert_allclose(out, one, atol=1e-5)
  # = the NumPy reference's frames pooled by the alignment rule (stride 20: 32 frames per row).
  ref, _ = _np_forward(sd, BASE, wav2vec.normalize_wav(wav))
  np.testing.assert_allclose(out, wav2vec.to_video_frames(ref, 3, samples_per_frame=20),
                             atol=2e-5)
  mid = audio.Wav2Vec2Features(str(root / "gv"), layer=0, bucket_seconds=0.1)(wav)
  assert mid.shape == (3, 32) and np.abs(mid - out).max() > 1e-3
  with pytest.raises(ValueError, match="layer must be"):
    audio.Wav2Vec2Features(str(root / "gv"), layer=3)
  with pytest.raises(ValueError, match=">= 640 samples"):
    feats(wav[:600])
  assert os.path.isfile(root / "gv" / "model.safetensors")


def test_standard_conv_stack_gives_one_row_per_video_frame(tmp_path):
  """The released conv arithmetic (field 400, stride 320): 1 s -> 49 frames -> 25 rows."""
  from jaxtalk.features import audio  # pylint: disable=g-import-not-at-top
  cfg = dict(wav2vec.CONFIG_DEFAULTS, conv_dim=(4,) * 7, hidden_size=16, num_hidden_layers=1,
             num_attention_heads=2, intermediate_size=16, num_conv_pos_embeddings=8,
             num_conv_pos_embedding_groups=2)
  sd = _random_state(cfg, np.random.default_rng(9))
  _save(tmp_path / "std", sd, cfg)
  feats = audio.Wav2Vec2Features(str(tmp_path / "std"))
  wav = 0.3 * np.sin(np.arange(16000) * 0.05).astype(np.float32)
  out = feats(wav)
  assert out.shape == (25, 16) and feats.num_frames(wav.size) == 49
  ref, _ = _np_forward(sd, cfg, wav2vec.normalize_wav(wav))
  assert ref.shape == (49, 16)
  np.testing.assert_allclose(out[:24], (ref[0:48:2] + ref[1:48:2]) / 2, atol=2e-5)
  np.testing.assert_allclose(out[24], ref[48], atol=2e-5)  # frame 49 does not exist: clamped.
