"""The method registry: what `jaxtalk export`, `jaxtalk generate`, the bundle and the demo run.

A *method* is one paper's way of making a talking head: the stages it trains (in order, with
their configs), how the trained stages are written into a bundle folder, and how a loaded bundle
turns speech (+ text) into a `Motion` (its generators) and a `Motion` into frames (its renderer).
PoseTalk (`jaxtalk.renderers.posetalk`), GoHD (`jaxtalk.renderers.gohd`) and PC-Talk
(`jaxtalk.renderers.pctalk`) are built in, each registered from its own module; export, the
bundle, generate and the demo stay as they are (tests/test_methods.py registers a toy method to
show it).

A method's `load(bundle_dir, manifest, **options)` returns a *loaded model* with:

  resolution: int, crop_scale: float     the aligned face crop the renderer takes (px; crop side
                                         / face size, as in preprocessing)
  sample_motion(wav, *, num_frames, text=None, guidance=<its default>, seed=0,
                source_motion=None) -> Motion, or None when the bundle has no motion generator:
                                         raw units, `[1, T, ...]`; source_motion the portrait's
                                         raw `Motion` `[1, 1, ...]` (GoHD starts from its p_0)
  render_motion(source, motion, *, mel, source_pose, progress=False, **render_controls)
                                         -> frames; source float32 `[R, R, 3]` in [-1, 1],
                                         motion raw `Motion` `[1, T, ...]`, mel `[T, 16, 80]`
                                         Wav2Lip log-mel windows (`features.audio.mel_windows`),
                                         source_pose the portrait's raw pose `[6]`; frames
                                         float32 `[T, R, R, 3]` in [-1, 1]; render_controls the
                                         method's own (GoHD: `lam`; PC-Talk: `lip_ratio`,
                                         `eye_ratio`)

A renderer that reads `Motion.expression` (GoHD's) also has
  expression_coefficients(landmarks [T, 478, 3] crop coords) -> e `[T, E]` (its basis)
  add_expression(motion, *, mel, source_expression=None, seed=0) -> Motion with expression

A renderer that reads `Motion.keypoints` (PC-Talk's) also has
  drive_motion(source [R, R, 3], frames [N, R, R, 3], *, region="all") -> Motion `[1, N, ...]`
                                         video-driven reenactment (`jaxtalk generate --drive`)

Controls that act on `Motion` (`jaxtalk.motion.controls`) are shared by every method; a method
declares the controls it understands in `controls` (name, type, default, range, help), so a
front end can show them without knowing the method.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Optional

# Methods that ship with jaxtalk: name -> module that registers it when imported.
BUILTIN = {"posetalk": "jaxtalk.renderers.posetalk", "gohd": "jaxtalk.renderers.gohd",
           "pctalk": "jaxtalk.renderers.pctalk"}
DEFAULT = "posetalk"


@dataclasses.dataclass(frozen=True)
class Control:
  """A user-facing control of a method: `name` (the keyword `generate` takes), `type` (float,
  int, str or bool), `default`, `help`, and optionally `range` (min, max) or `choices`."""
  name: str
  type: type
  default: Any
  help: str
  range: Optional[tuple[float, float]] = None
  choices: Optional[tuple[str, ...]] = None


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered method (see module docstring).

  Attributes:
    name: registry key, stored in `bundle.json["method"]`.
    stages: stage workdir names the bundle is exported from (looked up as `<runs>/<stage>` and
      `<runs>/train/<stage>` by `serve.bundle.find_stages`).
    required: the subset of `stages` export cannot do without.
    export: `(stage_dirs {stage: workdir}, out_dir, *, dtype, platforms) -> dict`: writes the
      method's files into `out_dir` (a fresh folder) and returns the `bundle.json` fields it adds.
    load: `(bundle_dir, manifest, **options) -> loaded model` (see module docstring).
    train_stages: `(stage, config module)` in training order (what the demo trains), including
      stages the bundle does not hold (e.g. the lip-sync expert used as a loss).
    controls: the controls `generate` accepts for this method.
    summary: one line for listings.
    stage_model: optional `(config, infer, params, frozen) -> loaded model` over one of the
      method's renderer stages while it trains (`infer` = the stage task's jitted `infer`), so
      in-training evaluators render exactly as generation does
      (`jaxtalk.evaluators.reenactment.HeldOutReenactment`).
  """
  name: str
  stages: tuple[str, ...]
  required: tuple[str, ...]
  export: Callable[..., dict]
  load: Callable[..., Any]
  train_stages: tuple[tuple[str, str], ...] = ()
  controls: tuple[Control, ...] = ()
  summary: str = ""
  stage_model: Optional[Callable[..., Any]] = None


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Adds (or replaces) `method` in the registry and returns it."""
  _REGISTRY[method.name] = method
  return method


def get(name: Optional[str] = None) -> Method:
  """The method called `name` (default `DEFAULT`), importing a built-in one on first use.

  Raises:
    ValueError: unknown name (the message lists the available methods).
  """
  name = name or DEFAULT
  if name not in _REGISTRY and name in BUILTIN:
    importlib.import_module(BUILTIN[name])
  if name not in _REGISTRY:
    raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
  return _REGISTRY[name]


def available() -> tuple[str, ...]:
  """Names of the built-in and registered methods, sorted."""
  return tuple(sorted(set(BUILTIN) | set(_REGISTRY)))
