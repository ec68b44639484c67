"""Shared pytest setup: 8 simulated CPU devices, absl flags, real-data fixtures.

XLA_FLAGS must be set before jax is imported anywhere, so it is set at the top of this file.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pathlib  # pylint: disable=g-import-not-at-top

from absl import flags  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# grain's worker processes and absl-using libraries read flags; under pytest they are never parsed.
flags.FLAGS.mark_as_parsed()

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("JAXTALK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def _has_data() -> bool:
  return (SHARED_DATA / "manifest.jsonl").is_file()


def pytest_collection_modifyitems(config, items):
  del config
  if _has_data():
    return
  skip = pytest.mark.skip(reason=f"real clips not found at {SHARED_DATA} (../shared/data)")
  for item in items:
    if "needs_data" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """Path of ../shared/data (real clips, portraits, speech); skips when absent."""
  if not _has_data():
    pytest.skip(f"real clips not found at {SHARED_DATA}")
  return SHARED_DATA


@pytest.fixture(scope="session")
def real_shards(shared_data, tmp_path_factory) -> pathlib.Path:
  """ArrayRecord shards + dataset_info.json of ../shared/data, made once per session: the one
  real-data preprocessing pass of the default run.

  The Beam pipeline (DirectRunner) on `manifest.jsonl` at 64 px, the resolution the tiny stages
  train at, measuring every clip's audio-visual offset without correcting it
  (`sync_audio=False`), so the windows are the clips' own and the stage tests' bars stay
  comparable across pipeline changes. Returns the output directory.
  """
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("real_shards")
  pipeline.preprocess(input_path=str(shared_data / "manifest.jsonl"), output_dir=str(out),
                      resolution=64, sync_audio=False)
  return out


@pytest.fixture(scope="session")
def expression_shards(real_shards, tmp_path_factory) -> pathlib.Path:
  """`real_shards` with GoHD's expression basis fitted and e / f written (`jaxtalk
  expression-basis`, on a copy so that `real_shards` stays as preprocessing wrote it)."""
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  from jaxtalk import cli  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("expression_shards") / "shards"
  shutil.copytree(real_shards, out)
  assert cli.main(["jaxtalk", "expression-basis", "--data_dir", str(out)]) == 0
  assert "expression" in json.load(open(out / "dataset_info.json"))["optional_features"]
  return out


@pytest.fixture(scope="session")
def synced_shards(shared_data, tmp_path_factory) -> pathlib.Path:
  """Like `real_shards` with the pipeline's defaults (confident audio-visual offsets corrected):
  what a user's `jaxtalk preprocess` writes. Used by the slow SyncNet learning test only, so the
  default run makes one real-data pass."""
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("synced_shards")
  pipeline.preprocess(
      input_path=str(shared_data / "manifest.jsonl"), output_dir=str(out), resolution=64)
  return out
