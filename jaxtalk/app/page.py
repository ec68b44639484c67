"""`jaxtalk app`: the gradio web page over exported models.

  jaxtalk app --model EXPORT_DIR [--model EXPORT_DIR ...] [--host 127.0.0.1] [--port 7860] \
      [--queue-size 8] [--max-upload-mb 50] [--max-seconds 60] [--keep-minutes 60] [--wav2vec DIR]

The page: portrait (upload or webcam snapshot), speech (upload or microphone), head-motion
prompt, method (one per `--model` folder), motion source (pose model / template / reference
video), paste-back, and every control the selected method declares (`jaxtalk.methods.Control`:
a slider over its range with its default, a number, a text box for an optional number (blank:
the method's default), a dropdown of its choices, a checkbox, or a video upload for `*_from`;
the help is shown under each), a reset button; a progress bar fed by
the pipeline's own tqdm bars; the result video (plays in the page, downloadable), the
aligned-crop preview and a status line with `jaxtalk generate`'s error messages.

Serving: binds 127.0.0.1 unless `--host` says otherwise; uploads over `--max-upload-mb` are
refused by gradio and checked again by the app, with speech and videos over `--max-seconds`;
file types are checked by content (`jaxtalk.app.uploads`); one request runs at a time and up to
`--queue-size` wait in gradio's queue; beyond that a request gets gradio's busy answer (HTTP 503
"Queue is full"; the page shows it). Everything lives in one temporary folder: each request's
work files are removed when it ends, results and uploads after `--keep-minutes`, and the folder
when the server stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional

from jaxtalk.app import service
from jaxtalk.app import uploads
from jaxtalk.serve.video_io import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
NO_CHOICE = "(method default)"


# ----------------------------------------------------------------------------------------------
# Widgets from declared controls.
# ----------------------------------------------------------------------------------------------
def initial(control):
  """The value a control's widget starts (and resets) with."""
  if control.type is bool:
    return bool(control.default)
  if control.default is None:
    return ""  # blank: the method's default (a number box would send 0)
  return control.default


def widget(control, elem_id: Optional[str] = None):
  """The gradio input for a `jaxtalk.methods.Control` (see module docstring)."""
  import gradio as gr  # pylint: disable=g-import-not-at-top
  label = control.name.replace("_", " ")
  info = control.help + (" (blank: the method's default)" if control.default is None else "")
  common = {"label": label, "info": info, "elem_id": elem_id}
  if control.type is bool:
    return gr.Checkbox(value=initial(control), **common)
  if control.choices is not None:
    choices = ([(NO_CHOICE, "")] if control.default is None else []) + [
        (c, c) for c in control.choices]
    return gr.Dropdown(choices=choices, value=initial(control), **common)
  if control.type is str and control.name.endswith("_from"):
    return gr.File(label=f"{label} (video)", file_types=["video"], type="filepath",
                   elem_id=elem_id)
  if control.type is str:
    return gr.Textbox(value=initial(control), **common)
  lo, hi = control.range if control.range is not None else (None, None)
  if control.default is None:  # an optional number: blank means the method's default
    return gr.Textbox(value="", placeholder=f"{lo:g} .. {hi:g}" if control.range else
                      control.type.__name__, **common)
  if control.range is not None:
    step = 1 if control.type is int else (hi - lo) / 100
    return gr.Slider(minimum=lo, maximum=hi, value=control.default, step=step, **common)
  return gr.Number(value=control.default, minimum=lo, maximum=hi,
                   precision=0 if control.type is int else None, **common)


# ----------------------------------------------------------------------------------------------
# The page.
# ----------------------------------------------------------------------------------------------
def _shared_choices(app: service.App, name: str) -> list[str]:
  """Choices of a shared control (e.g. pose_template) over the loaded methods, in order."""
  out = []
  for pipe in app.pipelines.values():
    for c in pipe.method.controls:
      if c.name == name and c.choices:
        out += [x for x in c.choices if x not in out]
  return out


def build(app: service.App):
  """The gradio Blocks of the page over `app` (not launched)."""
  import gradio as gr  # pylint: disable=g-import-not-at-top
  labels = list(app.pipelines)
  templates = _shared_choices(app, "pose_template")
  keep = max(60, int(app.keep_seconds))
  with gr.Blocks(title="jaxtalk", delete_cache=(keep, keep), analytics_enabled=False) as blocks:
    gr.Markdown("# jaxtalk\nA portrait and speech in, a talking head out.")
    with gr.Row():
      with gr.Column():
        portrait = gr.Image(label="portrait", sources=["upload", "webcam"], type="filepath",
                            elem_id="portrait")
        speech = gr.Audio(label="speech", sources=["upload", "microphone"], type="filepath",
                          elem_id="speech")
        prompt = gr.Textbox(label="head-motion prompt", elem_id="prompt",
                            placeholder="e.g. he nods slowly while talking")
        method = gr.Dropdown(choices=labels, value=labels[0], label="method", elem_id="method")
        source = gr.Radio(list(service.MOTION_SOURCES), value="pose model",
                          label="motion source", elem_id="motion_source")
        template = gr.Dropdown(choices=templates, value=templates[0] if templates else None,
                               label="pose template", visible=False, elem_id="template")
        reference = gr.File(label="reference video", file_types=["video"], type="filepath",
                            visible=False, elem_id="reference")
        paste = gr.Checkbox(label="paste back", value=False, elem_id="paste_back",
                            info="blend the face back into the full portrait")
        groups, widgets = [], []
        for i, label in enumerate(labels):
          with gr.Group(visible=i == 0) as group:
            for c in app.controls(label):
              widgets.append((label, c, widget(c, elem_id=f"control_{i}_{c.name}")))
          groups.append(group)
        with gr.Row():
          go = gr.Button("generate", variant="primary", elem_id="generate")
          reset = gr.Button("reset", elem_id="reset")
      with gr.Column():
        status = gr.Markdown(elem_id="status")
        video = gr.Video(label="result", interactive=False, elem_id="result")
        crop = gr.Image(label="aligned crop", interactive=False, elem_id="crop")

    method.change(lambda m: [gr.update(visible=m == label) for label in labels], method, groups)
    source.change(lambda s: (gr.update(visible=s == "template"),
                             gr.update(visible=s == "reference video")), source,
                  [template, reference])
    inputs = [portrait, speech, prompt, method, source, template, reference, paste]

    def run_request(values: dict, progress=gr.Progress(track_tqdm=True)):
      # `values`: {component: value} (inputs given as a set, so that gradio passes `progress`).
      chosen = values[method]
      controls = {c.name: values[w] for label, c, w in widgets if label == chosen}
      result = app.generate(service.Request(*[values[w] for w in inputs], controls=controls),
                            progress=progress)
      return result.video, result.crop, result.message

    go.click(run_request, set(inputs + [w for _, _, w in widgets]), [video, crop, status],
             api_name="generate", concurrency_limit=1)
    defaults = [None, None, "", labels[0], "pose model", templates[0] if templates else None,
                None, False] + [initial(c) if not c.name.endswith("_from") else None
                                for _, c, _ in widgets]
    reset.click(lambda: defaults + [None, None, ""], None,
                inputs + [w for _, _, w in widgets] + [video, crop, status], api_name="reset")
  return blocks


def launch(app: service.App, *, host: str = DEFAULT_HOST, port: Optional[int] = DEFAULT_PORT,
           queue_size: int = 8, block: bool = True):
  """Builds the page, queues it and serves it on http://host:port (gradio's server).

  The app's temp folder becomes gradio's upload folder (`GRADIO_TEMP_DIR`) for this process.
  block=False returns the launched Blocks (`.local_url`; stop with `.close()`).
  """
  os.environ["GRADIO_TEMP_DIR"] = str(app.root)
  os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
  blocks = build(app)
  blocks.queue(max_size=queue_size, default_concurrency_limit=1)
  blocks.launch(server_name=host, server_port=port, max_file_size=int(
      app.limits.max_upload_mb * 2**20), prevent_thread_lock=not block, show_error=False,
                ssr_mode=False, quiet=True, share=False, inbrowser=False)
  return blocks


# ----------------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------------
def parse_args(argv):
  p = argparse.ArgumentParser(prog=argv[0], description=__doc__.split("\n\n")[0])
  p.add_argument("--model", action="append", required=True, metavar="EXPORT_DIR",
                 help="folder written by `jaxtalk export` (repeat for several methods)")
  p.add_argument("--host", default=DEFAULT_HOST,
                 help="address to bind (default 127.0.0.1: this machine only)")
  p.add_argument("--port", type=int, default=DEFAULT_PORT)
  p.add_argument("--queue-size", type=int, default=8,
                 help="requests that may wait while one runs; more get a busy answer")
  p.add_argument("--max-upload-mb", type=float, default=uploads.Limits.max_upload_mb)
  p.add_argument("--max-seconds", type=float, default=uploads.Limits.max_seconds,
                 help="longest speech or reference video")
  p.add_argument("--keep-minutes", type=float, default=60.0,
                 help="how long results stay downloadable")
  p.add_argument("--wav2vec", default=None, help="wav2vec 2.0 folder (as for generate)")
  return p.parse_args(argv[1:])


def run(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  args = parse_args(argv)
  limits = uploads.Limits(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds)
  try:
    app = service.App.load(args.model, wav2vec=args.wav2vec, limits=limits,
                           keep_seconds=args.keep_minutes * 60)
  except InputError as e:
    print(f"jaxtalk app: error: {e}", file=sys.stderr)
    return 2
  print(f"jaxtalk app: serving {', '.join(app.pipelines)} on http://{args.host}:{args.port}",
        flush=True)

  def stop(signum, frame):
    del signum, frame
    raise KeyboardInterrupt  # gradio's server loop closes the server on it

  signal.signal(signal.SIGTERM, stop)
  try:
    launch(app, host=args.host, port=args.port, queue_size=args.queue_size)
  except KeyboardInterrupt:
    pass
  finally:
    app.close()
  return 0


if __name__ == "__main__":
  sys.exit(run())
