"""The frozen face-analysis networks of GoHD's animator losses (supplementary B.1): Φ_exp (eq. 13,
DECA/EMOCA in the paper), Φ_gaze (eq. 14, L2CS-Net) and Φ_pars (eq. 15, BiSeNet).

    fa = load_face_analysis(config)          # or a mapping with the keys below
    frozen["face_analysis"] = fa.params      # a frozen pytree; the stage never updates it
    e = fa.expression(frozen["face_analysis"], images)   # [N, D_e]  float32
    g = fa.gaze(frozen["face_analysis"], images)         # [N, 2]    float32
    s = fa.parsing(frozen["face_analysis"], images)      # [N, H, W, R] float32 logits

`images` is `[N, H, W, 3]` float in [-1, 1] (the batch's frames / the animator's output). All
three are pure functions of (params, images), jittable and differentiable w.r.t. the images (the
losses backpropagate through them). Images of another size than a network's input are resized
to it (bilinear, `jax.image.resize`), and parsing logits are resized back to H x W.

Where each one comes from (config keys under `config.init_from`, or the same keys in a mapping):
  exp_export / gaze_export / parsing_export: a user's network serialized with `jax.export`
      (the bytes of `Exported.serialize(vjp_order=1)` in a file). Signature: one input
      `[N, h, w, 3]` float32 in [-1, 1] (N may be symbolic, h, w static), one output:
      expression `[N, D]` float32 (any D: DECA's 50 expression parameters, EMOCA's 50 ...),
      gaze `[N, 2]` float32 (L2CS: pitch, yaw), parsing `[N, h', w', R]` float32 logits (any R:
      BiSeNet's 19 classes, NHWC). Exported with `vjp_order >= 1` (otherwise no gradient reaches
      the generator) and for the platform it runs on (`jax.export.export(fn, platforms=
      ("cpu", "cuda", "tpu"))`). DECA / L2CS / BiSeNet converters are not part of jaxtalk: a
      user exports their own JAX port. Its params are baked into the file (its `params` entry is
      `{}`).
  face_analysis: the `<workdir>/params` of jaxtalk's `gohd_face_analysis` stage (loaded with
      `jaxtalk.core.checkpointing.load_stage`: params + config.json), used for each network
      whose export is not given, announced once per network ("Φ_exp: DECA not given ...
      (substitute)"). Its outputs: the shards' expression coefficients (D = 64, FaceMesh basis),
      gaze in the shards' normalised units, R = 6 regions (`jaxtalk.features.regions.REGIONS`);
      see `jaxtalk.models.gohd.face_analysis`.

Errors (ValueError, naming the file / config key): an export file missing, unreadable, not a
`jax.export` serialization, with the wrong signature, without VJP, or for another platform; a
network with neither an export nor `face_analysis` given; an unreadable substitute checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from jaxtalk.core import logging_utils

PyTree = Any
NAMES = ("expression", "gaze", "parsing")
EXPORT_KEYS = {"expression": "exp_export", "gaze": "gaze_export", "parsing": "parsing_export"}
SUBSTITUTE_KEY = "face_analysis"
PAPER_NETWORK = {"expression": ("Φ_exp", "DECA", "expression regressor"),
                 "gaze": ("Φ_gaze", "L2CS-Net", "gaze regressor"),
                 "parsing": ("Φ_pars", "BiSeNet", "face parser")}
announce_once = logging_utils.announce_once


@dataclasses.dataclass(frozen=True)
class FaceAnalysis:
  """The three frozen networks (module docstring).

  Attributes:
    expression / gaze / parsing: `(params, images [N, H, W, 3] in [-1, 1]) -> [N, D] / [N, 2] /
      [N, H, W, R]` float32; `params` is the whole `params` tree below.
    params: `{"substitute": params of the gohd_face_analysis stage}` (absent when every network
      is exported); put it in the stage's `frozen`.
    sources: name -> "export:<file>" or "substitute:<params dir>".
    dims: name -> the output's last dimension (D, 2, R).
  """
  expression: Callable[[PyTree, jax.Array], jax.Array]
  gaze: Callable[[PyTree, jax.Array], jax.Array]
  parsing: Callable[[PyTree, jax.Array], jax.Array]
  params: PyTree
  sources: Mapping[str, str]
  dims: Mapping[str, int]


def _resize(images, h: int, w: int):
  if images.shape[1:3] == (h, w):
    return images
  return jax.image.resize(images, images.shape[:1] + (h, w) + images.shape[3:], "bilinear")


def _check_images(images, name: str):
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"face_analysis.{name}: images must be [N, H, W, 3] in [-1, 1], got "
                     f"{tuple(images.shape)}")


def _wrap(name: str, fn: Callable, in_hw) -> Callable:
  """`fn(params, images at in_hw) -> out` as the public `(params, images) -> out` (resizing in,
  and for parsing out)."""

  def call(params, images):
    _check_images(images, name)
    h, w = images.shape[1:3]
    out = fn(params, _resize(images.astype(jnp.float32), *in_hw)).astype(jnp.float32)
    return _resize(out, h, w) if name == "parsing" else out
  return call


def _expected_rank(name: str) -> int:
  return 4 if name == "parsing" else 2


def load_export(path: str, name: str) -> tuple[Callable, tuple[int, int], int]:
  """A user's `jax.export` serialization of network `name` (module docstring), through
  `jaxtalk.pretrained.exported.load` (file, serialization, VJP and platform checks).

  Returns:
    `(fn(images) -> out, (h, w) input size, output last dimension)`.

  Raises:
    ValueError: naming `path`: missing or unreadable, not a serialization, wrong signature, no
      VJP, or exported for other platforms.
  """
  from jaxtalk.pretrained import exported  # pylint: disable=g-import-not-at-top
  want = {"expression": "[N, D]", "gaze": "[N, 2]", "parsing": "[N, h, w, R]"}[name]

  def check(ins, outs):
    return (len(ins) == 1 and len(outs) == 1 and ins[0].ndim == 4
            and ins[0].dtype == jnp.float32 and ins[0].shape[-1] == 3
            and all(isinstance(d, int) for d in ins[0].shape[1:3])
            and outs[0].ndim == _expected_rank(name) and outs[0].dtype == jnp.float32
            and isinstance(outs[0].shape[-1], int) and (name != "gaze" or outs[0].shape[-1] == 2))

  exp = exported.load(path, f"init_from.{EXPORT_KEYS[name]}", check=check,
                      expect=f"one input float32[N, h, w, 3] (h, w static) and one output "
                      f"float32{want}")
  ins, outs = exp.in_avals, exp.out_avals
  return exp.call, tuple(ins[0].shape[1:3]), int(outs[0].shape[-1])


def load_substitute(params_dir: str, dtype: Optional[str] = None):
  """`(net, params, resolution)` of a gohd_face_analysis stage's `<workdir>/params`.

  Raises:
    ValueError: unreadable params or config.json (naming the path).
  """
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.gohd import face_analysis as fa_models  # pylint: disable=g-import-not-at-top
  cfg, params = checkpointing.load_stage(params_dir, what=f"init_from.{SUBSTITUTE_KEY}")
  net = fa_models.from_config(cfg["model"], dtype or cfg.get("dtype", "float32"))
  return net, params, int(cfg["input"]["resolution"])


def _paths(spec) -> dict:
  """The four paths of a stage config (its `init_from`) or a mapping; missing keys are ""."""
  node = spec.init_from if hasattr(spec, "init_from") else spec
  get = node.get if hasattr(node, "get") else lambda k, d: getattr(node, k, d)
  keys = (SUBSTITUTE_KEY,) + tuple(EXPORT_KEYS.values())
  return {k: str(get(k, "") or "") for k in keys}


def load_face_analysis(spec, *, dtype: Optional[str] = None,
                       announce: Callable[[str, str], None] = announce_once) -> FaceAnalysis:
  """The three networks of `spec` (module docstring).

  Args:
    spec: a stage config (reads `init_from.face_analysis`, `.exp_export`, `.gaze_export`,
      `.parsing_export`) or a mapping with those keys ("" / absent = not given).
    dtype: compute dtype of the substitute ("float32" | "bfloat16"; default: its training one).
    announce: `(key, message)` logger of the substitute announcements (e.g. a stage's
      `exp_lip.announce`); called once per network that falls back to the substitute.

  Raises:
    ValueError: see module docstring.
  """
  paths = _paths(spec)
  params, sources, dims, fns = {}, {}, {}, {}
  sub = None
  for name in NAMES:
    path = paths[EXPORT_KEYS[name]]
    if path:
      call, hw, dims[name] = load_export(path, name)
      fns[name] = _wrap(name, lambda p, x, call=call: call(x), hw)
      sources[name] = f"export:{path}"
      continue
    if not paths[SUBSTITUTE_KEY]:
      raise ValueError(f"face analysis: {PAPER_NETWORK[name][0]} has neither "
                       f"init_from.{EXPORT_KEYS[name]} (a jax.export file of "
                       f"{PAPER_NETWORK[name][1]}) nor init_from.{SUBSTITUTE_KEY} (a "
                       "gohd_face_analysis stage's <workdir>/params)")
    if sub is None:
      sub = load_substitute(paths[SUBSTITUTE_KEY], dtype)
      params["substitute"] = sub[1]
    net, res = sub[0], sub[2]
    fns[name] = _wrap(name, lambda p, x, name=name, net=net: net.apply(
        {"params": p["substitute"]}, x)[0][name], (res, res))
    dims[name] = {"expression": net.num_coeffs, "gaze": 2, "parsing": net.num_regions}[name]
    sources[name] = f"substitute:{paths[SUBSTITUTE_KEY]}"
    symbol, paper, what = PAPER_NETWORK[name]
    announce(f"face_analysis:{name}", f"{symbol}: {paper} not given "
             f"(init_from.{EXPORT_KEYS[name]}), using jaxtalk's trained {what} from "
             f"{paths[SUBSTITUTE_KEY]} (substitute)")
  return FaceAnalysis(expression=fns["expression"], gaze=fns["gaze"], parsing=fns["parsing"],
                      params=params, sources=sources, dims=dims)
