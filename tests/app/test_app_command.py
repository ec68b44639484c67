"""The `jaxtalk app` command itself: a bad model folder, and (slow) serving the tiny PoseTalk
bundle from a subprocess to headless chromium, then stopping cleanly."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.app import browser as browser_tests

pytestmark = pytest.mark.needs_data
REPO = pathlib.Path(__file__).resolve().parents[2]


def _command(*args, tmp):
  env = {**os.environ, "TMPDIR": str(tmp), "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen([sys.executable, "-m", "jaxtalk.cli", "app", *args], cwd=REPO,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_missing_model_folder_is_a_clear_error(tmp_path):
  proc = _command("--model", str(tmp_path / "nope"), tmp=tmp_path)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 2, err[-3000:]
  assert f"jaxtalk app: error: {tmp_path / 'nope'}: model folder not found" in err
  assert "Traceback" not in err
  assert not list(tmp_path.glob("jaxtalk-app-*"))


@pytest.mark.slow
@pytest.mark.skipif(not browser_tests.CHROMIUM.is_file(), reason=browser_tests.MISSING)
def test_command_serves_posetalk_to_the_browser(model_dir, browser, shared_data, speech_clip,
                                                tmp_path):
  port = browser_tests.free_port()
  proc = _command("--model", str(model_dir), "--port", str(port), tmp=tmp_path)
  try:
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
      assert proc.poll() is None, proc.communicate()[1][-3000:]
      try:
        if httpx.get(url, timeout=2).status_code == 200:
          break
      except httpx.TransportError:
        time.sleep(1)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    browser_tests.upload(page, shared_data / "images" / "vox1_25.jpg", speech_clip)
    page.click("#motion_source label:has-text('template')")
    page.wait_for_selector("#template", state="visible", timeout=browser_tests.TIMEOUT_MS)
    page.click("#generate")
    page.wait_for_selector("#result video", timeout=browser_tests.TIMEOUT_MS)
    info = page.eval_on_selector("#result video", browser_tests.PLAY_JS)
    assert info["error"] is None and (info["width"], info["height"]) == (64, 64), info
    assert abs(info["duration"] - 1.32) <= 0.04, info
    assert "done: 33 frames" in page.inner_text("#status")
    browser_tests.screenshot(page, "app_command_posetalk.png")
    assert errors == []
  finally:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-3000:]
  assert not list(tmp_path.glob("jaxtalk-app-*"))  # the temp folder went with the server
