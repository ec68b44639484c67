"""`jaxtalk app` in a real headless browser: Debian's chromium driven by Playwright
(tests/app/browser.py says how it is set up; these tests skip, saying so, without it)."""

import numpy as np
import pytest
from PIL import Image

from jaxtalk.app import page as page_lib
from jaxtalk.app import service
from tests.app import apptoy
from tests.app import browser as browser_lib

pytestmark = [
    pytest.mark.needs_data,
    pytest.mark.skipif(not browser_lib.CHROMIUM.is_file(), reason=browser_lib.MISSING),
]


@pytest.fixture(scope="module")
def served(toy_bundle, tmp_path_factory):
  """The app on the toy bundle, on a free loopback port, queue size 4: `(app, url)`."""
  app = service.App.load([toy_bundle], root=tmp_path_factory.mktemp("app_root"))
  port = browser_lib.free_port()
  blocks = page_lib.launch(app, port=port, queue_size=4, block=False)
  yield app, f"http://127.0.0.1:{port}"
  blocks.close()
  app.close()


@pytest.fixture
def page(browser, served):
  """A fresh page on the app; `page.console_errors` collects console errors and page errors."""
  p = browser.new_page(viewport={"width": 1280, "height": 1400})
  errors = []
  p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
  p.on("pageerror", lambda e: errors.append(str(e)))
  p.console_errors = errors
  p.goto(served[1])
  p.wait_for_selector("#generate", timeout=browser_lib.TIMEOUT_MS)
  yield p
  p.close()


def test_generate_in_the_browser_plays_a_video_as_long_as_the_speech(page, served, shared_data,
                                                                     speech_clip):
  apptoy.ToyModel.calls.clear()
  browser_lib.upload(page, shared_data / "images" / "HDTF_0.jpg", speech_clip)
  page.fill("#prompt textarea", "he nods slowly while talking")
  apptoy.ToyModel.gate.clear()  # hold the renderer at its second frame: the bar must show it
  try:
    page.click("#generate")
    page.wait_for_function(
        "() => /render/.test(document.body.innerText) && /1\\/33/.test(document.body.innerText)",
        timeout=browser_lib.TIMEOUT_MS)
  finally:
    apptoy.ToyModel.gate.set()
  page.wait_for_selector("#result video", timeout=browser_lib.TIMEOUT_MS)
  played = page.eval_on_selector("#result video", browser_lib.PLAY_JS)
  assert played["error"] is None and (played["width"], played["height"]) == (64, 64), played
  assert played["time"] > 0.2 or played["ended"], played  # it played
  assert abs(played["duration"] - 1.32) <= 0.04, played  # the speech's length within one frame
  page.wait_for_selector("#crop img", timeout=browser_lib.TIMEOUT_MS)
  assert "done: 33 frames" in page.inner_text("#status")
  assert apptoy.ToyModel.calls[-1]["text"] == "he nods slowly while talking"
  # The page's download link serves the same file.
  href = page.eval_on_selector("#result video", "v => v.currentSrc || v.src")
  assert page.request.get(href).body()[4:8] == b"ftyp"
  browser_lib.screenshot(page, "app_generate.png")
  # Reset: inputs back to their defaults, outputs cleared.
  page.click("#reset")
  page.wait_for_function("() => !document.querySelector('#result video')", timeout=browser_lib.TIMEOUT_MS)
  assert page.input_value("#prompt textarea") == ""
  assert page.query_selector("#portrait img") is None
  assert page.console_errors == []


def test_no_face_is_an_error_message_in_the_page(page, shared_data, speech_clip, tmp_path):
  noise = tmp_path / "no_face.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)).save(
      noise)
  browser_lib.upload(page, noise, speech_clip)
  page.click("#generate")
  page.wait_for_function("() => /no face found/.test(document.querySelector('#status')"
                         ".innerText)", timeout=browser_lib.TIMEOUT_MS)
  text = page.inner_text("#status")
  assert "error: the portrait (no_face.png): no face found in the portrait" in text, text
  assert "Traceback" not in page.inner_text("body")
  assert page.query_selector("#result video") is None
  browser_lib.screenshot(page, "app_no_face.png")
  assert page.console_errors == []


def _y4m(image_path, path, frames=10):
  """A still portrait as a Y4M clip: what chromium's fake camera plays."""
  ycc = np.asarray(Image.open(image_path).convert("YCbCr"))
  h, w = ycc.shape[:2]
  with open(path, "wb") as f:
    f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
    for _ in range(frames):
      f.write(b"FRAME\n" + ycc[..., 0].tobytes() + ycc[::2, ::2, 1].tobytes()
              + ycc[::2, ::2, 2].tobytes())
  return path


def test_webcam_snapshot_and_microphone_recording(launch_chromium, served, shared_data,
                                                  speech_clip, tmp_path):
  camera = _y4m(shared_data / "images" / "HDTF_0.jpg", tmp_path / "camera.y4m")
  b = launch_chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-video-capture={camera}",
                      f"--use-file-for-fake-audio-capture={speech_clip}")
  p = b.new_page(viewport={"width": 1280, "height": 1400})
  errors = []
  p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
  p.goto(served[1])
  t = browser_lib.TIMEOUT_MS
  p.click("#portrait button[aria-label='Capture from camera']", timeout=t)
  p.click("#portrait button:has-text('Click to Access Webcam')", timeout=t)
  p.click("#portrait button[aria-label='capture photo']", timeout=t)
  p.wait_for_selector("#portrait img", timeout=t)
  p.click("#speech button[aria-label='Record audio']", timeout=t)
  p.click("#speech button.record-button", timeout=t)
  p.wait_for_timeout(2000)
  p.click("#speech button.stop-button", timeout=t)
  p.wait_for_selector("#speech audio, #speech [data-testid=waveform-speech]", state="attached",
                      timeout=t)
  p.click("#generate")
  p.wait_for_selector("#result video", timeout=t)
  status = p.inner_text("#status")
  assert status.startswith("done: "), status
  seconds = float(status.split("(")[1].split(" s of speech")[0])
  assert seconds > 1.0, status  # about the 2 s recorded
  played = p.eval_on_selector("#result video", browser_lib.PLAY_JS)
  assert played["error"] is None and abs(played["duration"] - seconds) <= 0.04, (played, status)
  browser_lib.screenshot(p, "app_webcam_microphone.png")
  assert errors == []
