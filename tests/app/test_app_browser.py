"""`jaxtalk app` in a real headless browser: Debian's chromium driven by Playwright.

Set-up (see the README): `pip install -r requirements.txt` (playwright is pinned there) and
`apt-get install -y chromium` (`playwright install` downloads browsers, which fails offline);
these tests skip with that reason when /usr/bin/chromium (or $JAXTALK_CHROMIUM) is absent.
Screenshots go to $JAXTALK_TEST_ARTIFACTS (default: outputs/test_artifacts/, git-ignored).
"""

import os
import pathlib
import socket

import numpy as np
import pytest
from PIL import Image

from jaxtalk.app import page as page_lib
from jaxtalk.app import service
from tests.app import apptoy

REPO = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = pathlib.Path(os.environ.get("JAXTALK_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = pathlib.Path(os.environ.get("JAXTALK_TEST_ARTIFACTS",
                                        REPO / "outputs" / "test_artifacts"))
TIMEOUT_MS = 180_000

pytestmark = [
    pytest.mark.needs_data,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=(
        f"{CHROMIUM} not found: the browser tests drive Debian's chromium "
        "(`apt-get update && apt-get install -y chromium`)")),
]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(toy_bundle, tmp_path_factory):
  """The app on the toy bundle, on a free loopback port: `(app, url)`."""
  app = service.App.load([toy_bundle], root=tmp_path_factory.mktemp("app_root"))
  port = free_port()
  blocks = page_lib.launch(app, port=port, queue_size=4, block=False)
  yield app, f"http://127.0.0.1:{port}"
  blocks.close()
  app.close()


@pytest.fixture(scope="module")
def browser():
  playwright = pytest.importorskip("playwright.sync_api")
  with playwright.sync_playwright() as p:
    b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                          args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"])
    yield b
    b.close()


@pytest.fixture
def page(browser, served):
  """A fresh page on the app; `page.console_errors` collects console errors and page errors."""
  p = browser.new_page(viewport={"width": 1280, "height": 1400})
  errors = []
  p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
  p.on("pageerror", lambda e: errors.append(str(e)))
  p.console_errors = errors
  p.goto(served[1])
  p.wait_for_selector("#generate", timeout=TIMEOUT_MS)
  yield p
  p.close()


def _upload(page, portrait, speech):
  page.set_input_files("#portrait input[type=file]", str(portrait))
  page.wait_for_selector("#portrait img", timeout=TIMEOUT_MS)
  page.set_input_files("#speech input[type=file]", str(speech))
  page.wait_for_selector("#speech audio, #speech wave, #speech [data-testid=waveform-x]",
                         state="attached", timeout=TIMEOUT_MS)


def _screenshot(page, name):
  ARTIFACTS.mkdir(parents=True, exist_ok=True)
  path = ARTIFACTS / name
  page.screenshot(path=str(path), full_page=True)
  assert path.stat().st_size > 10_000
  return path


def test_generate_in_the_browser_plays_a_video_as_long_as_the_speech(page, served, shared_data,
                                                                     speech_clip):
  app, _ = served
  apptoy.ToyModel.calls.clear()
  _upload(page, shared_data / "images" / "HDTF_0.jpg", speech_clip)
  page.fill("#prompt textarea", "he nods slowly while talking")
  apptoy.ToyModel.gate.clear()  # hold the renderer at its second frame: the bar must show it
  try:
    page.click("#generate")
    page.wait_for_function(
        "() => /render/.test(document.body.innerText) && /1\\/33/.test(document.body.innerText)",
        timeout=TIMEOUT_MS)
  finally:
    apptoy.ToyModel.gate.set()
  page.wait_for_selector("#result video", timeout=TIMEOUT_MS)
  played = page.eval_on_selector("#result video", """async v => {
      if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r));
      await v.play();
      await new Promise(r => setTimeout(r, 800));
      return {duration: v.duration, time: v.currentTime, paused: v.paused, ended: v.ended,
              error: v.error && v.error.code, width: v.videoWidth, height: v.videoHeight};
  }""")
  assert played["error"] is None and (played["width"], played["height"]) == (64, 64), played
  assert played["time"] > 0.2 or played["ended"], played  # it played
  assert abs(played["duration"] - 1.32) <= 0.04, played  # the speech's length within one frame
  page.wait_for_selector("#crop img", timeout=TIMEOUT_MS)
  assert "done: 33 frames" in page.inner_text("#status")
  assert apptoy.ToyModel.calls[-1]["text"] == "he nods slowly while talking"
  # The page's download link serves the same file.
  href = page.eval_on_selector("#result video", "v => v.currentSrc || v.src")
  assert page.request.get(href).body()[4:8] == b"ftyp"
  _screenshot(page, "app_generate.png")
  # Reset: inputs back to their defaults, outputs cleared.
  page.click("#reset")
  page.wait_for_function("() => !document.querySelector('#result video')", timeout=TIMEOUT_MS)
  assert page.input_value("#prompt textarea") == ""
  assert page.query_selector("#portrait img") is None
  assert page.console_errors == []


def test_no_face_is_an_error_message_in_the_page(page, shared_data, speech_clip, tmp_path):
  noise = tmp_path / "no_face.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)).save(
      noise)
  _upload(page, noise, speech_clip)
  page.click("#generate")
  page.wait_for_function("() => /no face found/.test(document.querySelector('#status')"
                         ".innerText)", timeout=TIMEOUT_MS)
  text = page.inner_text("#status")
  assert "error: the portrait (no_face.png): no face found in the portrait" in text, text
  assert "Traceback" not in page.inner_text("body")
  assert page.query_selector("#result video") is None
  _screenshot(page, "app_no_face.png")
  assert page.console_errors == []
