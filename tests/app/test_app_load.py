"""`jaxtalk app` under load, on loopback only: 8 concurrent generate requests through gradio's
queue (one runs, `queue_size` wait, the rest get the busy answer); none is lost, and nothing but
the served results and the (shared) uploads is left in the app's temp folder."""

import concurrent.futures
import pathlib
import socket
import time

import pytest

from jaxtalk.app import page as page_lib
from jaxtalk.app import service
from jaxtalk.serve import video_io
from tests.app import apptoy
from tests.app.browser import free_port

pytestmark = pytest.mark.needs_data
REQUESTS = 8
QUEUE_SIZE = 3


def _files(root: pathlib.Path) -> set:
  return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def test_concurrent_requests_finish_or_get_busy(toy_bundle, shared_data, speech_clip,
                                                tmp_path):
  from gradio_client import Client, handle_file  # pylint: disable=g-import-not-at-top
  app = service.App.load([toy_bundle], root=tmp_path / "root")
  port = free_port()
  blocks = page_lib.launch(app, host="127.0.0.1", port=port, queue_size=QUEUE_SIZE, block=False)
  url = f"http://127.0.0.1:{port}/"
  portrait = shared_data / "images" / "HDTF_0.jpg"

  def request(i):
    client = Client(url, verbose=False, download_files=str(tmp_path / f"client{i}"))
    # The page's inputs in order; the toy's controls: guidance, seed, gaze pitch, gaze yaw,
    # gaze from.
    args = (handle_file(str(portrait)), handle_file(str(speech_clip)), f"request {i}",
            "apptoy", "pose model", "still", None, False, 2.0, i, "", "", None)
    try:
      return "done", client.predict(*args, api_name="/generate")
    except Exception as e:  # pylint: disable=broad-except
      return "refused", f"{type(e).__name__}: {e}"

  apptoy.ToyModel.calls.clear()
  apptoy.ToyModel.gate.clear()  # the first request holds the worker until all have arrived
  try:
    with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
      futures = [pool.submit(request, i) for i in range(REQUESTS)]
      deadline = time.monotonic() + 120
      while (sum(f.done() for f in futures) < REQUESTS - 1 - QUEUE_SIZE
             and time.monotonic() < deadline):
        time.sleep(0.2)
      apptoy.ToyModel.gate.set()
      outcomes = [f.result(timeout=600) for f in futures]
    left = _files(app.root)  # (before close: gradio then deletes the files it served)
  finally:
    apptoy.ToyModel.gate.set()
    blocks.close()
  done = [r for kind, r in outcomes if kind == "done"]
  refused = [r for kind, r in outcomes if kind == "refused"]
  assert len(done) + len(refused) == REQUESTS  # nothing lost
  assert len(done) >= QUEUE_SIZE and refused, outcomes
  assert all("Queue is full" in r for r in refused), refused  # the busy answer, nothing else
  for video, crop, message in done:
    assert message.startswith("done: 33 frames"), message
    assert video_io.probe(video["video"] if isinstance(video, dict) else video)[
        "video_frames"] == 33
    assert pathlib.Path(crop).is_file()
  assert len(apptoy.ToyModel.calls) == len(done)
  # Left in the temp folder: one result folder (video + crop) per finished request, and the
  # two uploads (gradio stores each content once); no work files.
  results = {p for p in left if p.parts[0] == "results"}
  assert len(results) == 2 * len(done)
  assert {p.name for p in left - results} == {portrait.name, speech_clip.name}, left
  assert not (app.root / "work").exists() or not any((app.root / "work").iterdir())
  app.close()
  assert not app.root.exists()


def _outward_address():
  """This machine's address on its default route (no packet is sent), or None."""
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    try:
      s.connect(("192.0.2.1", 9))
    except OSError:
      return None
    address = s.getsockname()[0]
  return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_uploads_over_the_limit_are_refused_and_loopback_is_the_default(toy_bundle, shared_data,
                                                                        tmp_path):
  import httpx  # pylint: disable=g-import-not-at-top
  from jaxtalk.app import uploads  # pylint: disable=g-import-not-at-top
  portrait = shared_data / "images" / "6.jpg"  # 74 kB
  app = service.App.load([toy_bundle], root=tmp_path / "root",
                         limits=uploads.Limits(max_upload_mb=20 / 1024))
  port = free_port()
  blocks = page_lib.launch(app, port=port, block=False)  # the default host
  try:
    url = f"http://127.0.0.1:{port}/gradio_api/upload"
    small = httpx.post(url, files={"files": ("small.wav", b"RIFF" + bytes(1000))})
    big = httpx.post(url, files={"files": (portrait.name, portrait.read_bytes())})
    assert small.status_code == 200, small.text
    assert big.status_code == 413 and "maximum allowed size" in big.text, big.text
    assert not list(app.root.rglob(portrait.name))
    address = _outward_address()
    if address is not None:  # this machine's outward address does not answer
      with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{address}:{port}/", timeout=2)
  finally:
    blocks.close()
    app.close()
