"""`jaxtalk expression-basis --bfm` (data_pipelines/expression_pass.py, item 3) on shards of
imported Deep3DFaceRecon coefficients, `expression.basis_for_config` on them, and a tiny
gohd_exp_lip stage training on them; synthetic clips (expression_clips.py) and a synthetic BFM
file (tests/features/bfm_files.py)."""

import contextlib
import io
import json
import shutil

import jax
import numpy as np
import pytest

from configs.gohd import exp_lip as lip_config
from data_pipelines import expression_pass
from data_pipelines import schema
from jaxtalk import cli
from jaxtalk import tasks
from jaxtalk.core import input_pipeline
from jaxtalk.features import expression as ex
from tests.data_pipelines import expression_clips
from tests.features import bfm_files

CLIPS = ("aa_c000", "ab_c000", "ba_c000", "bb_c000")
HELD_OUT = "bb_c000"


def _imported_record(cid, frames, rng):
  e = (0.5 * rng.standard_normal((frames, 64))).astype(np.float32)
  return expression_clips.record(cid, frames, rng, expression=e,
                                 expression_source=schema.DEEP3DFACERECON)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  """Shards whose clips all carry imported coefficients, and a BFM file (never written to)."""
  root = tmp_path_factory.mktemp("bfm_pass")
  rng = np.random.default_rng(0)
  expression_clips.write_shards(root / "shards", [_imported_record(c, 40 + 5 * i, rng)
                                                  for i, c in enumerate(CLIPS)])
  return root / "shards", bfm_files.write_mat(root / "BFM_model_front.mat")


def _run(data_dir, *extra):
  with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = cli.main(["jaxtalk", "expression-basis", "--data_dir", str(data_dir), "--holdout",
                   HELD_OUT, *extra])
  return rc, out.getvalue()


@pytest.fixture(scope="module")
def fitted(imported, tmp_path_factory):
  shards, bfm = imported
  out = tmp_path_factory.mktemp("bfm_pass") / "fitted"
  shutil.copytree(shards, out)
  rc, stdout = _run(out, "--bfm", bfm)
  assert rc == 0, stdout
  return out, bfm, stdout


def _lip_config(data_dir):
  c = lip_config.get_config(f"size=tiny,data_dir={data_dir},max_av_offset=-1")
  c.batch_size, c.input.window = 2, 12
  c.input.holdout = (HELD_OUT,)
  c.model.update(hidden=(16,), audio_width=8)
  return c


def test_bfm_pass_writes_f_of_the_imported_e(imported, fitted):
  data_dir, bfm, stdout = fitted
  assert "f of the imported e: 4 clips written (2 shards rewritten)" in stdout
  before = expression_clips.read_records(imported[0])
  after = expression_clips.read_records(data_dir)
  stored = ex.load(str(data_dir / ex.BASIS_FILE))
  assert stored.kind == ex.BFM68
  assert ex.fingerprint(stored) == ex.fingerprint(ex.load_bfm(bfm))
  train_e = np.concatenate([before[c]["expression"] for c in sorted(CLIPS) if c != HELD_OUT])
  np.testing.assert_allclose(stored.std, np.sqrt(np.mean(train_e.astype(np.float64) ** 2, 0)),
                             rtol=1e-5)
  for cid, rec in after.items():
    np.testing.assert_array_equal(rec["expression"], before[cid]["expression"])  # e kept.
    assert rec["expression_source"] == schema.DEEP3DFACERECON
    assert rec["eye_features"].shape == (rec["num_frames"], 21)
    np.testing.assert_array_equal(rec["eye_features"],
                                  ex.eye_features_from_coefficients(stored, rec["expression"]))
    np.testing.assert_array_equal(rec["landmarks"], before[cid]["landmarks"])
  info = json.loads((data_dir / "dataset_info.json").read_text())
  entry = info[ex.INFO_KEY]
  tag = ex.source_tag(stored)
  assert entry["kind"] == "bfm68" and entry["source_tag"] == tag and tag.startswith("bfm68:v1:")
  assert entry["bfm_file"] == bfm and HELD_OUT not in entry["train_clips"]
  assert all(c["eye_features_source"] == tag for c in info["clips"])
  assert {"expression", "eye_features"} <= set(info["optional_features"])
  # Re-running changes nothing in the shards or dataset_info.json.
  shard_bytes = {p.name: p.read_bytes() for p in data_dir.glob("*.array_record")}
  text = (data_dir / "dataset_info.json").read_text()
  rc, again = _run(data_dir, "--bfm", bfm)
  assert rc == 0 and "0 clips written (0 shards rewritten), 4 already up to date" in again
  assert {p.name: p.read_bytes() for p in data_dir.glob("*.array_record")} == shard_bytes
  assert (data_dir / "dataset_info.json").read_text() == text


def test_basis_for_config_and_a_tiny_exp_lip_stage_on_imported_coefficients(fitted):
  data_dir, bfm, _ = fitted
  c = _lip_config(data_dir)
  basis = ex.basis_for_config(c)
  assert basis.kind == ex.BFM68 and ex.fingerprint(basis) == ex.fingerprint(ex.load_bfm(bfm))
  task = tasks.get_task(c, mesh=None)
  np.testing.assert_array_equal(np.asarray(task.frozen["landmarks"]["mean68"]), basis.mean)
  batch = next(input_pipeline.create_iterator(c))
  assert batch["eye_features"].shape == (2, 12, 21)
  params = task.init(jax.random.PRNGKey(0), batch)
  loss_fn = jax.jit(lambda p, b: task.loss(p, b, jax.random.PRNGKey(1), task.frozen, 0))
  total, terms = loss_fn(params, batch)
  assert np.isfinite(float(total)) and set(terms) == {"loss_lms", "loss_eye", "loss_shut",
                                                      "loss_l1"}
  # True coefficients give zero landmark / eye losses: f in the shards is f of e with this basis.
  from jaxtalk.tasks.gohd import exp_lip  # pylint: disable=g-import-not-at-top
  zero = exp_lip.distill_losses(batch["expression"], batch, task.frozen["landmarks"], c.loss)
  assert float(zero["loss_eye"]) == pytest.approx(0.0, abs=1e-4)
  assert float(zero["loss_lms"]) == 0.0
  grads = jax.grad(lambda p: loss_fn(p, batch)[0])(params)
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_without_bfm_imported_shards_name_the_bfm_fix(imported, tmp_path):
  data_dir = tmp_path / "shards"
  shutil.copytree(imported[0], data_dir)
  rc, stdout = _run(data_dir)
  assert rc == 0
  assert "4 with imported Deep3DFaceRecon coefficients kept (no eye features" in stdout
  assert "--bfm" in stdout
  with pytest.raises(ValueError, match=r"does not describe; run `jaxtalk expression-basis "
                                       rf"--data_dir {data_dir} --bfm BFM_model_front.mat`"):
    ex.basis_for_config(_lip_config(data_dir))


def test_stale_or_missing_bfm_eye_features_are_refused(fitted, imported, tmp_path):
  data_dir = tmp_path / "shards"
  shutil.copytree(fitted[0], data_dir)
  info = json.loads((data_dir / "dataset_info.json").read_text())
  info["clips"][1]["eye_features_source"] = "bfm68:v1:000000000000"
  (data_dir / "dataset_info.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match=r"eye features of 1 of 4 clips .* --bfm"):
    ex.basis_for_config(_lip_config(data_dir))
  # A BFM basis stored for shards of FaceMesh coefficients is refused too.
  info = json.loads((data_dir / "dataset_info.json").read_text())
  for clip in info["clips"]:
    clip["expression_source"] = "facemesh_pca:v1:000000000000"
  (data_dir / "dataset_info.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match=r"is a BFM-68 basis .* \(without --bfm\)"):
    ex.basis_for_config(_lip_config(data_dir))


def test_mixed_datasets_and_bfm_without_imported_clips_are_refused(imported, tmp_path, capsys):
  rng = np.random.default_rng(3)
  mixed = tmp_path / "mixed"
  expression_clips.write_shards(mixed, [_imported_record("aa_c000", 30, rng),
                                        expression_clips.record("ab_c000", 30, rng)])
  before = {p.name: p.read_bytes() for p in mixed.iterdir()}
  for extra in ((), ("--bfm", imported[1])):
    rc, _ = _run(mixed, *extra)
    assert rc == 2
    err = capsys.readouterr().err
    assert "1 of 2 clips carry imported Deep3DFaceRecon coefficients" in err
    assert "--bfm BFM_model_front.mat" in err and "drop the manifest's `coefficients`" in err
  assert {p.name: p.read_bytes() for p in mixed.iterdir()} == before  # nothing written.
  plain = tmp_path / "plain"
  expression_clips.write_shards(plain, [expression_clips.record("aa_c000", 30, rng)])
  with pytest.raises(ValueError, match="no clip has them; run .* without --bfm"):
    expression_pass.fit_bfm_shards(str(plain), imported[1], log=lambda _: None)
  rc, _ = _run(imported[0], "--bfm", imported[1], "--components", "16")
  assert rc == 2 and "--components 16 does not apply with --bfm" in capsys.readouterr().err
