"""Bundles the app tests serve.

* `toy_bundle`: the "apptoy" method (tests/app/apptoy.py), registered for the session here only
  and exported by `export_bundle` like any other method.
* `model_dir`: the tiny untrained PoseTalk bundle of tests/serve/test_generate.py (the same
  fixtures, not a copy).
"""

import json

import numpy as np
import pytest

from jaxtalk import methods
from jaxtalk.core import checkpointing
from jaxtalk.serve import bundle as bundle_lib
from tests.app import apptoy
from tests.app import browser as browser_lib
from tests.serve import test_generate as _serve_tests

runs_dir = _serve_tests.runs_dir
model_dir = _serve_tests.model_dir  # The tiny PoseTalk bundle.


@pytest.fixture(scope="session")
def toy_method():
  """Registers "apptoy" for the session (the registry is restored afterwards)."""
  registry = dict(methods._REGISTRY)  # pylint: disable=protected-access
  methods.register(apptoy.TOY)
  apptoy.ToyModel.gate.set()
  yield apptoy.TOY
  methods._REGISTRY.clear()  # pylint: disable=protected-access
  methods._REGISTRY.update(registry)  # pylint: disable=protected-access


@pytest.fixture(scope="session")
def toy_bundle(toy_method, tmp_path_factory):
  """An exported "apptoy" bundle folder."""
  del toy_method
  runs = tmp_path_factory.mktemp("apptoy_runs")
  (runs / "apptoy").mkdir()
  (runs / "apptoy" / "config.json").write_text(json.dumps({"task": "apptoy"}))
  checkpointing.save_params(runs / "apptoy" / "params", {"gain": np.float32(0.8)})
  out = tmp_path_factory.mktemp("apptoy_export") / "bundle"
  bundle_lib.export_bundle(str(runs), str(out), method="apptoy")
  return out


@pytest.fixture(scope="session")
def speech_clip(shared_data, tmp_path_factory):
  """1.32 s (33 frames) of real English speech from ../shared/data/audio, 16 kHz mono wav."""
  from jaxtalk.features import audio as audio_lib  # pylint: disable=g-import-not-at-top
  wav = audio_lib.load_audio(str(shared_data / "audio" / "RD_Radio31_000.wav"))
  return apptoy.write_wav(tmp_path_factory.mktemp("speech") / "speech.wav", wav[8000:8000 + 21120])


@pytest.fixture(scope="session")
def launch_chromium():
  """`launch(*args) -> Browser`: headless chromium (Debian's, through Playwright) with extra
  command-line flags; skips when it is not installed. Browsers close at the session's end."""
  if not browser_lib.CHROMIUM.is_file():
    pytest.skip(browser_lib.MISSING)
  playwright = pytest.importorskip("playwright.sync_api")
  with playwright.sync_playwright() as p:
    opened = []

    def launch(*args):
      opened.append(p.chromium.launch(
          executable_path=str(browser_lib.CHROMIUM), headless=True,
          args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox", *args]))
      return opened[-1]

    yield launch
    for b in opened:
      b.close()


@pytest.fixture(scope="session")
def browser(launch_chromium):
  """A headless chromium for the session."""
  return launch_chromium()
