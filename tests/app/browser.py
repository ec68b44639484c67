"""Helpers of the app's browser tests: Debian's chromium, driven by Playwright.

`playwright install` downloads browsers, which fails offline; the tests drive the chromium that
`apt-get update && apt-get install -y chromium` installs (or $JAXTALK_CHROMIUM) with
`executable_path`. Screenshots go to $JAXTALK_TEST_ARTIFACTS (default: outputs/test_artifacts/,
git-ignored).
"""

import os
import pathlib
import socket

REPO = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = pathlib.Path(os.environ.get("JAXTALK_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = pathlib.Path(os.environ.get("JAXTALK_TEST_ARTIFACTS",
                                        REPO / "outputs" / "test_artifacts"))
TIMEOUT_MS = 180_000
MISSING = (f"{CHROMIUM} not found: the browser tests drive Debian's chromium "
           "(`apt-get update && apt-get install -y chromium`)")

# Plays the video element for 0.8 s and reports what the browser made of it.
PLAY_JS = """async v => {
    if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r));
    await v.play();
    await new Promise(r => setTimeout(r, 800));
    return {duration: v.duration, time: v.currentTime, paused: v.paused, ended: v.ended,
            error: v.error && v.error.code, width: v.videoWidth, height: v.videoHeight};
}"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def upload(page, portrait, speech):
  """Uploads the portrait and the speech and waits until the page shows both."""
  page.set_input_files("#portrait input[type=file]", str(portrait))
  page.wait_for_selector("#portrait img", timeout=TIMEOUT_MS)
  page.set_input_files("#speech input[type=file]", str(speech))
  page.wait_for_selector("#speech audio, #speech wave, #speech [data-testid=waveform-x]",
                         state="attached", timeout=TIMEOUT_MS)


def screenshot(page, name):
  ARTIFACTS.mkdir(parents=True, exist_ok=True)
  path = ARTIFACTS / name
  page.screenshot(path=str(path), full_page=True)
  assert path.stat().st_size > 10_000
  return path
