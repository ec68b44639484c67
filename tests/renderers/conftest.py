"""Session fixtures of the gohd method's tests: tiny GoHD stages (tests/renderers/gohd_runs.py)
and the bundles exported from them, made once for test_gohd_method.py and test_generate_gohd.py.
"""

import os

import pytest

from jaxtalk.serve import bundle as bundle_lib
from tests.renderers import gohd_runs


@pytest.fixture(scope="session")
def gohd_runs_dir(tmp_path_factory):
  """A runs folder: gohd_animator (2 steps), gohd_pose, gohd_gaze, gohd_exp_eye; gohd_exp_lip
  beside it (named by gohd_exp_eye's init_from)."""
  return gohd_runs.make_runs(tmp_path_factory.mktemp("gohd") / "runs")


@pytest.fixture(scope="session")
def gohd_bundle(gohd_runs_dir, tmp_path_factory):
  """The full gohd bundle (animator + every motion stage)."""
  out = tmp_path_factory.mktemp("gohd_export") / "bundle"
  bundle_lib.export_bundle(str(gohd_runs_dir), str(out), method="gohd")
  return out


@pytest.fixture(scope="session")
def gohd_renderer_bundle(gohd_runs_dir, tmp_path_factory):
  """A gohd bundle of the animator alone (no motion stages)."""
  runs = tmp_path_factory.mktemp("gohd_animator_only")
  os.symlink(gohd_runs_dir / "gohd_animator", runs / "gohd_animator")
  out = runs.parent / (runs.name + "_bundle")
  bundle_lib.export_bundle(str(runs), str(out), method="gohd")
  return out
