"""The app's requests, without the web page: loaded models, checked inputs, generate, clean up.

`App` holds one `TalkingHeadPipeline` per model folder (each bundle holds one method; the page's
method selector lists them) and the app's temporary folder. `App.generate(Request)` checks the
uploads (`jaxtalk.app.uploads`), turns the page's values into `TalkingHeadPipeline.generate`
keywords from the controls the method declares (`jaxtalk.methods.Control`), writes the video and
the aligned-crop preview into `<root>/results/<id>/`, and always removes the request's work
folder (its checked copies of the uploads and everything the pipeline writes besides the
result). Results and uploads older than `keep_seconds` are pruned when a request starts (uploads
are gradio's, stored once per content and shared by requests that send the same file, so they
cannot go with the first request that used them). Errors never escape as exceptions: `Result.message` carries what
`jaxtalk generate` would print (`InputError`, with the app's file names replaced by the
uploads' own), or "internal error" for a bug (its traceback goes to the server log only).

Controls the page shows by themselves rather than per method: `text` (the prompt box),
`pose_template` and `pose_from` (the motion source). `gaze_pitch` / `gaze_yaw` become
`generate(gaze=(pitch, yaw))`; a str control named `*_from` is a video upload; every other
control is passed to `generate` under its own name.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
import uuid
from typing import Any, Callable, Optional

from jaxtalk.app import uploads
from jaxtalk.serve.video_io import InputError

SHARED = ("text", "pose_template", "pose_from")
MOTION_SOURCES = ("pose model", "template", "reference video")
GAZE = ("gaze_pitch", "gaze_yaw")
VIDEO_NAME = "talking_head.mp4"
CROP_NAME = "aligned_crop.png"


@dataclasses.dataclass
class Request:
  """One generate request, as the page sends it.

  Attributes:
    portrait, speech: upload paths (inside the app's temp folder) or None.
    prompt: head-motion text ("" for none).
    method: a label of `App.pipelines`.
    motion_source: one of `MOTION_SOURCES`.
    template: pose template name (motion source "template").
    reference: reference video upload path (motion source "reference video").
    paste_back: blend the face back into the full portrait.
    controls: `{control name: value}` of the selected method's controls (None or "" = the
      method's default).
  """
  portrait: Optional[str]
  speech: Optional[str]
  prompt: str = ""
  method: Optional[str] = None
  motion_source: str = "pose model"
  template: Optional[str] = None
  reference: Optional[str] = None
  paste_back: bool = False
  controls: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Result:
  """What a request gives back: `video` (mp4 path) and `crop` (png path) or None, `ok`, and a
  one-line `message` for the page ("error: ..." when not ok)."""
  video: Optional[str]
  crop: Optional[str]
  ok: bool
  message: str


def method_labels(pipelines: list) -> list[str]:
  """Page labels of loaded pipelines: the method name, plus the folder name when two models
  are of the same method."""
  names = [p.method.name for p in pipelines]
  return [n if names.count(n) == 1 else f"{n} ({pathlib.Path(p.bundle.path).name})"
          for n, p in zip(names, pipelines)]


class App:
  """Loaded models and the app's temp folder (see module docstring).

  Args:
    pipelines: `TalkingHeadPipeline`s, one per model folder.
    root: the app's temporary folder (created if needed; removed by `close`).
    limits: upload limits.
    keep_seconds: how long results stay downloadable before `generate` prunes them.
  """

  def __init__(self, pipelines: list, *, root=None, limits: uploads.Limits = uploads.Limits(),
               keep_seconds: float = 3600.0):
    if not pipelines:
      raise ValueError("App needs at least one pipeline")
    self.pipelines = dict(zip(method_labels(pipelines), pipelines))
    self.root = pathlib.Path(root or tempfile.mkdtemp(prefix="jaxtalk-app-")).resolve()
    self.root.mkdir(parents=True, exist_ok=True)
    self.limits = limits
    self.keep_seconds = keep_seconds

  @classmethod
  def load(cls, model_dirs, *, wav2vec: Optional[str] = None, **kwargs) -> "App":
    """An App over the model folders written by `jaxtalk export`.

    Raises:
      InputError: a folder that is not a loadable bundle (naming it).
    """
    from jaxtalk.serve import generate  # pylint: disable=g-import-not-at-top
    return cls([generate.TalkingHeadPipeline(d, wav2vec=wav2vec) for d in model_dirs], **kwargs)

  def controls(self, label: str) -> tuple:
    """The controls of the method `label` that the page shows per method (not `SHARED`)."""
    return tuple(c for c in self.pipelines[label].method.controls if c.name not in SHARED)

  def close(self) -> None:
    """Removes the app's temp folder (uploads, results, work folders)."""
    shutil.rmtree(self.root, ignore_errors=True)

  def prune(self, keep=()) -> None:
    """Removes results and uploads older than `keep_seconds`, except the upload folders of the
    paths in `keep` (the running request's).

    Uploads are gradio's: `<root>/<sha256 of the content>/<name>`, shared by every request that
    sends the same file (so they cannot go with the request that used them).
    """
    now = time.time()
    spare = {pathlib.Path(p).resolve().parent for p in keep if p}
    folders = list((self.root / "results").glob("*")) + [
        d for d in self.root.iterdir() if d.is_dir() and d.name not in ("results", "work")]
    for d in folders:
      try:
        old = now - d.stat().st_mtime > self.keep_seconds
      except FileNotFoundError:
        continue
      if old and d.resolve() not in spare:
        shutil.rmtree(d, ignore_errors=True)

  def generate(self, request: Request, progress: Optional[Callable] = None) -> Result:
    """Runs one request (see module docstring); never raises for bad input.

    progress: optional `progress(fraction, desc=...)` (gradio's `Progress`).
    """
    self.prune(keep=[request.portrait, request.speech, request.reference,
                     *[v for v in request.controls.values() if isinstance(v, str)]])
    work = self.root / "work" / uuid.uuid4().hex
    out = self.root / "results" / uuid.uuid4().hex
    work.mkdir(parents=True)
    out.mkdir(parents=True)
    names: dict[str, str] = {}
    crop = None
    try:
      result = self._generate(request, work, out, names, progress or (lambda *a, **k: None))
    except InputError as e:
      crop = out / CROP_NAME
      result = Result(None, str(crop) if crop.is_file() else None, False,
                      "error: " + self.user_message(str(e), names))
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("jaxtalk app: request failed")
      result = Result(None, None, False, f"error: internal error ({type(e).__name__}); the "
                      "server log has the details")
    finally:
      shutil.rmtree(work, ignore_errors=True)
    if result.video is None and result.crop is None:
      shutil.rmtree(out, ignore_errors=True)
    return result

  def _generate(self, request: Request, work, out, names: dict, progress) -> Result:
    if request.method not in self.pipelines:
      raise InputError(f"method {request.method!r}: this server has "
                       f"{', '.join(self.pipelines)}")
    pipe = self.pipelines[request.method]
    if not request.portrait:
      raise InputError("no portrait: upload one (or take a webcam snapshot)")
    if not request.speech:
      raise InputError("no speech: upload a recording (or record one with the microphone)")
    image = self.upload(request.portrait, "image", "the portrait", work, names)
    speech = self.upload(request.speech, "audio", "the speech", work, names)
    kwargs, note = self.generate_kwargs(pipe.method, request, work, names)
    progress(0.02, desc="aligning the face")
    from jaxtalk.serve import generate  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top
    aligned = generate.align_portrait(image, pipe.resolution, pipe.bundle.crop_scale)
    Image.fromarray(aligned.crop).save(out / CROP_NAME)
    progress(0.1, desc="generating")
    info = pipe.generate(image, speech, out / VIDEO_NAME, progress=True, **kwargs)
    total = sum(info["timings"].values())
    return Result(str(out / VIDEO_NAME), str(out / CROP_NAME), True,
                  f"done: {info['frames']} frames ({info['seconds']:.2f} s of speech) in "
                  f"{total:.1f} s{note}")

  def upload(self, path, kind: str, what: str, work, names: dict) -> pathlib.Path:
    """`uploads.checked_copy` into `work`; records how messages name the copy."""
    copy = uploads.checked_copy(path, kind=kind, what=what, root=self.root, workdir=work,
                                limits=self.limits)
    names[str(copy)] = f"{what} ({pathlib.Path(path).name})"
    return copy

  def generate_kwargs(self, method, request: Request, work, names: dict) -> tuple[dict, str]:
    """`TalkingHeadPipeline.generate` keywords for `request` under `method`'s declared controls,
    and a note for the message (e.g. an unused prompt).

    Raises:
      InputError: a value of the wrong type or out of its declared range, a motion source or
        prompt the method does not declare, gaze pitch without yaw (or yaw without pitch).
    """
    declared = {c.name: c for c in method.controls}
    kw: dict[str, Any] = {"paste_back": bool(request.paste_back)}
    gaze = {}
    for c in method.controls:
      if c.name in SHARED:
        continue
      value = coerce(c, request.controls.get(c.name))
      if value is None:
        continue
      if c.name in GAZE:
        gaze[c.name] = value
      elif c.name.endswith("_from") and c.type is str:
        kw[c.name] = self.upload(value, "video", f"the {c.name.replace('_', ' ')} video",
                                 work, names)
      else:
        kw[c.name] = value
    if gaze:
      if len(gaze) != 2:
        raise InputError("gaze pitch and gaze yaw go together: set both (or neither)")
      kw["gaze"] = (gaze["gaze_pitch"], gaze["gaze_yaw"])
    prompt = (request.prompt or "").strip()
    source = request.motion_source
    if source not in MOTION_SOURCES:
      raise InputError(f"motion source {source!r}: expected one of {', '.join(MOTION_SOURCES)}")
    if source == "pose model" and prompt:
      if "text" not in declared:
        raise InputError(f"the {method.name} method takes no text prompt")
      kw["text"] = prompt
    elif source == "template":
      if "pose_template" not in declared:
        raise InputError(f"the {method.name} method has no pose templates")
      kw["pose_template"] = coerce(declared["pose_template"], request.template)
      if kw["pose_template"] is None:
        raise InputError("motion source template: choose a pose template")
    elif source == "reference video":
      if "pose_from" not in declared:
        raise InputError(f"the {method.name} method takes no reference video")
      if not request.reference:
        raise InputError("motion source reference video: upload a video with a face")
      kw["pose_from"] = self.upload(request.reference, "video", "the reference video", work,
                                    names)
    note = f" (the prompt was not used: the motion comes from the {source})" if (
        prompt and source != "pose model") else ""
    return kw, note

  def user_message(self, message: str, names: dict) -> str:
    """`message` with the app's own file paths replaced by the uploads' names."""
    for path, label in sorted(names.items(), key=lambda kv: -len(kv[0])):
      message = message.replace(path + ": ", label + ": ").replace(path, label)
    return re.sub(re.escape(str(self.root)) + r"/[^\s:,;]*",
                  lambda m: os.path.basename(m.group(0)), message)


def coerce(control, value):
  """A page value as the control's type; None for "use the method's default".

  Raises:
    InputError: a value that does not convert, is outside `range` or not in `choices`.
  """
  if value is None or (isinstance(value, str) and not value.strip() and control.type is not str):
    return None
  if control.type is str:
    value = str(value).strip()
    if not value:
      return None
  label = control.name.replace("_", " ")
  try:
    if control.type is int and isinstance(value, float) and not value.is_integer():
      raise ValueError
    value = control.type(value) if control.type is not bool else bool(value)
  except (TypeError, ValueError) as e:
    kind = {int: "a whole number", float: "a number"}.get(control.type, control.type.__name__)
    raise InputError(f"{label}: {value!r} is not {kind}") from e
  if control.range is not None and not control.range[0] <= value <= control.range[1]:
    raise InputError(f"{label}: {value:g} is outside {control.range[0]:g} .. "
                     f"{control.range[1]:g}")
  if control.choices is not None and value not in control.choices:
    raise InputError(f"{label}: {value!r} is not one of {', '.join(control.choices)}")
  return value
