"""`jaxtalk eval` (jaxtalk/evaluators/tables.py): each metric against a reference value, the
papers' reported rows against the papers' text, and the command end to end (cache, rerun,
bad clips) on a toy bundle and the real clips of ../shared/data."""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from jaxtalk import losses
from jaxtalk.evaluators import image
from jaxtalk.evaluators import motion as motion_eval
from jaxtalk.evaluators import reenactment
from jaxtalk.evaluators import tables
from tests import test_methods

PAPERS = pathlib.Path(__file__).resolve().parents[3] / "shared" / "papers"


def _faces(n=6, size=48, seed=0):
  """`[n, size, size, 3]` in [-1, 1]: crops of the scikit-image astronaut portrait."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  import skimage.transform  # pylint: disable=g-import-not-at-top
  img = skimage.data.astronaut().astype(np.float32) / 127.5 - 1.0
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    y, x = rng.integers(0, 140, 2)
    crop = img[y:y + 200, 120 + x:320 + x]
    out.append(skimage.transform.resize(crop, (size, size), anti_aliasing=True))
  return np.stack(out).astype(np.float32)


def test_scorer_ssim_matches_skimage_and_psnr_the_formula():
  """The per-frame SSIM / PSNR that `jaxtalk eval` reports, frame by frame, against skimage's
  structural_similarity (Gaussian 11x11, sigma 1.5, population covariance, data range 1) and
  10 log10(1 / MSE) on the same [0, 1] images."""
  from skimage.metrics import structural_similarity  # pylint: disable=g-import-not-at-top
  real = _faces(5)
  noise = np.random.default_rng(1).normal(0, 0.15, real.shape).astype(np.float32)
  pred = np.clip(real + noise, -1, 1)
  out = reenactment.ClipScorer().score_clip(real[0], pred, real)
  assert out["num_frames"] == 4                         # frame 0 is the source, not scored
  for t in range(1, 5):
    a, b = (pred[t] + 1) / 2, (real[t] + 1) / 2
    ref = structural_similarity(a, b, channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)
    assert out["frames"]["ssim"][t - 1] == pytest.approx(ref, abs=2e-3)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert out["frames"]["psnr"][t - 1] == pytest.approx(10 * np.log10(1 / mse), rel=1e-4)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
  net, params = losses.PerceptualNet.create(None)
  feats = jax.jit(lambda x: image.frame_features(x, net=net, params=params))
  real = _faces(40, size=32)
  f_real = np.asarray(feats(real))
  assert f_real.shape == (40, 355)
  assert abs(motion_eval.frechet_distance(f_real, f_real)) < 1e-6
  rng = np.random.default_rng(0)
  fids = []
  for sigma in (0.05, 0.15, 0.4):
    noisy = np.clip(real + rng.normal(0, sigma, real.shape), -1, 1).astype(np.float32)
    fids.append(motion_eval.frechet_distance(f_real, np.asarray(feats(noisy))))
  assert 0 < fids[0] < fids[1] < fids[2], fids
  with pytest.raises(ValueError, match="must be"):
    image.frame_features(real[0, 0], net=net, params=params)


def _result(clip_id, metrics, counts, n=6, shift=0.0):
  rng = np.random.default_rng(len(clip_id))
  real = rng.normal(size=(n, 8)).astype(np.float32)
  return dict(clip_id=clip_id, metrics=metrics, counts=counts,
              arrays=dict(gen_feats=rng.normal(size=(n, 4)) + shift,
                          real_feats=rng.normal(size=(n, 4)), gen_motion=real + shift,
                          real_motion=real))


def test_aggregate_weights_frames_and_pools_sets():
  a = _result("a", {"ssim": 0.5, "lse_c": 2.0}, {"ssim": 3, "lse_c": 1})
  b = _result("bb", {"ssim": 0.9, "lse_c": 4.0}, {"ssim": 1, "lse_c": 1})
  row = tables.aggregate([a, b])
  assert row["ssim"] == pytest.approx((0.5 * 3 + 0.9 * 1) / 4)      # per frame
  assert row["lse_c"] == pytest.approx(3.0)                          # per clip
  assert row["num_clips"] == 2 and row["num_frames"] == 4
  pooled = lambda k: np.concatenate([a["arrays"][k], b["arrays"][k]])
  assert row["fid"] == pytest.approx(motion_eval.frechet_distance(pooled("real_feats"),
                                                                  pooled("gen_feats")))
  # The real motion itself: SSIM_p 1; a shifted copy scores lower and has a larger pose FD.
  same = tables.aggregate([_result("a", {}, {}, n=30), _result("bb", {}, {}, n=30)])
  moved = tables.aggregate([_result("a", {}, {}, n=30, shift=1.0),
                            _result("bb", {}, {}, n=30, shift=1.0)])
  assert same["ssim_p"] == pytest.approx(1.0) and moved["ssim_p"] < 0.9
  assert moved["pose_fd"] > same["pose_fd"] + 1.0


def _paper_rows(text: str, method: str) -> list[list[float]]:
  out = []
  for line in text.splitlines():
    cells = line.split("\t")
    if cells[0].strip() == method:
      vals = []
      for c in cells[1:]:
        c = c.replace("<u>", "").replace("</u>", "").replace("**", "").strip()
        try:
          vals.append(float(c))
        except ValueError:
          vals.append(None)
      out.append(vals)
  return out


@pytest.mark.skipif(not PAPERS.is_dir(), reason=f"papers' text not found at {PAPERS}")
def test_reported_rows_are_the_papers_numbers():
  rows = json.loads(pathlib.Path(tables.REPORTED_FILE).read_text())["rows"]
  assert {(r["paper"], r["table"]) for r in rows} == {
      ("PoseTalk", "Table 1"), ("PoseTalk", "Table 2"), ("GoHD", "Table 1"), ("GoHD", "Table 2"),
      ("GoHD", "Table 8")}
  for r in rows:
    text = (PAPERS / f"{r['paper'].lower()}.txt").read_text()
    cand = _paper_rows(text, r["method"])
    assert any(all(v in vals for v in r["values"].values()) for vals in cand), r
  # Spot checks by hand (PoseTalk Table 1 HDTF, GoHD Table 1 HDTF).
  get = {(r["paper"], r["table"], r["dataset"], r["method"]): r["values"] for r in rows}
  assert get[("PoseTalk", "Table 1", "HDTF", "PoseTalk (Ours)")] == {
      "ssim": 0.815, "lpips": 0.110, "identity": 0.850, "aed": 0.1763, "lse_c": 7.89}
  assert get[("GoHD", "Table 1", "HDTF", "Ours")] == {"lse_c": 8.13, "lse_d": 7.78, "fid": 30.40}
  labels = [x["label"] for x in tables.reported_rows("audio-driven")]
  assert "reported by GoHD (Tables 1, 2, 8; HDTF): GoHD (Ours)" in labels
  assert not any("VoxCeleb" in x for x in labels)


# ----------------------------------------------------------------------------------------------
# The command end to end: the toy method of tests/test_methods.py (brightness gain x head-pitch
# shading), exported as a bundle, on the real clips.
# ----------------------------------------------------------------------------------------------
class _Toy(test_methods.ToyModel):
  """tests/test_methods.py's toy renderer at gain 0.8, counting its renders."""
  renders = 0

  def __init__(self):
    super().__init__(0.8)

  def render_motion(self, *args, **kwargs):
    _Toy.renders += 1
    return super().render_motion(*args, **kwargs)


@pytest.fixture
def toy_bundle(monkeypatch, tmp_path):
  from jaxtalk import methods  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))  # pylint: disable=protected-access
  methods.register(methods.Method(
      name="toy", stages=("toy",), required=("toy",),
      export=lambda stages, out, **_: {"resolution": _Toy.resolution},
      load=lambda path, manifest, **_: _Toy()))
  stage = tmp_path / "runs" / "toy"
  stage.mkdir(parents=True)
  (stage / "config.json").write_text("{}")
  checkpointing.save_params(stage / "params", {"gain": np.float32(0.8)})
  bundle_lib.export_bundle(str(tmp_path / "runs"), str(tmp_path / "bundle"), method="toy")
  return tmp_path / "bundle"


def _shards_with_a_bad_record(real_shards, tmp_path) -> pathlib.Path:
  """A copy of the real shards plus one shard holding a record that is not a clip, and a video
  preprocessing dead-lettered."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  out = tmp_path / "shards"
  shutil.copytree(real_shards, out)
  w = array_record_module.ArrayRecordWriter(str(out / "broken.array_record"), "group_size:1")
  w.write(b"this is not a clip record")
  w.close()
  info = json.loads((out / "dataset_info.json").read_text())
  info["shards"] = list(info["shards"]) + ["broken.array_record"]
  (out / "dataset_info.json").write_text(json.dumps(info))
  with open(out / "dead_letter.jsonl", "a", encoding="utf-8") as f:   # as preprocessing writes
    f.write(json.dumps({"path": "/v/noface.mp4", "id": "noface", "stage": "detect",
                        "reason": "no face found"}) + "\n")
  return out


def _eval(bundle, videos, out, *args) -> dict:
  assert tables.run(["jaxtalk eval", "--model", str(bundle), "--videos", str(videos), "--out",
                     str(out), "--no-progress", *args]) == 0
  return json.loads((out / "metrics.json").read_text())


@pytest.mark.needs_data
def test_eval_command_tables_cache_and_bad_clips(toy_bundle, real_shards, tmp_path):
  """Self-reenactment and audio-driven on 2 real clips (0.4 s each; CSIM skipped here for speed,
  computed in the cross-identity test) plus an unreadable record."""
  shards = _shards_with_a_bad_record(real_shards, tmp_path)
  ids = [c["clip_id"] for c in json.loads((shards / "dataset_info.json").read_text())["clips"]]
  clip = reenactment.read_clips(str(real_shards), clip_ids=ids[:1], resolution=32,
                                max_frames=10)[0]
  for protocol in ("self-reenactment", "audio-driven"):
    out = tmp_path / protocol
    args = ["--protocol", protocol, "--seconds", "0.4", "--clips", ",".join(ids[:2]) + ",x",
            "--skip", "csim"]
    _Toy.renders = 0
    result = _eval(toy_bundle, shards, out, *args)
    assert _Toy.renders == 2
    assert list(result["rows"]) == ["toy", "source", "real"] and result["num_clips"] == 2
    assert [(s["clip_id"], s["reason"].split(":")[0]) for s in result["skipped"]] == [
        ("noface", "preprocessing (detect)"), ("record 9", "unreadable")]
    real, toy = result["rows"]["real"], result["rows"]["toy"]
    assert real["num_frames"] == 2 * 9 and real["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert real["psnr"] == 100.0 and real.get("lmd", 0.0) == 0.0 and real["fid"] < 1e-3
    assert "lse_c" not in toy and "identity" not in toy       # no --syncnet; --skip csim
    # The toy row's SSIM is the toy renderer's frames scored by hand (frames 1..T-1).
    pitch = (clip["pose"][:, 1] if protocol == "self-reenactment"
             else 0.3 * np.sin(np.arange(10) / 5.0))
    frames = np.clip(clip["frames"][0][None] * 0.8 * (1 - np.abs(pitch))[:, None, None, None],
                     -1, 1)
    first = [c for c in result["per_clip"] if c["method"] == "toy" and c["clip_id"] == ids[0]]
    assert first[0]["metrics"]["ssim"] == pytest.approx(
        float(np.mean(image.ssim(frames[1:], clip["frames"][1:]))), abs=1e-5)
    if protocol == "audio-driven":
      assert {"pose_fd", "diversity", "ssim_p"} <= set(toy)
      assert real["ssim_p"] == pytest.approx(1.0) and toy["ssim_p"] < 0.99
    md = (out / "metrics.md").read_text()
    assert "| **toy** |" in md and "reported by" in md and "SUBSTITUTE" in md
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3 + 3 * 2
  # A rerun renders nothing and writes the same numbers; other settings are not taken from the
  # cache.
  before = (out / "metrics.json").read_text()
  assert _eval(toy_bundle, shards, out, *args)["rows"] and _Toy.renders == 2
  assert (out / "metrics.json").read_text() == before
  _eval(toy_bundle, shards, out, *args[:-2], "--skip", "csim,lmd", "--methods", "toy")
  assert _Toy.renders == 4
  with pytest.raises(ValueError, match="--skip: unknown fid"):
    _eval(toy_bundle, shards, out, "--skip", "fid")


@pytest.mark.needs_data
def test_eval_command_cross_identity_uses_the_next_clips_portrait(toy_bundle, real_shards,
                                                                  tmp_path):
  ids = [c["clip_id"] for c in json.loads((real_shards / "dataset_info.json").read_text())[
      "clips"]]
  common = ["--seconds", "0.2", "--clips", f"{ids[0]},{ids[4]}", "--skip", "lmd"]
  result = _eval(toy_bundle, real_shards, tmp_path / "ci", "--protocol", "cross-identity",
                 "--methods", "source,toy,real", *common)
  assert list(result["rows"]) == ["source", "toy", "real"]
  assert "ssim" not in result["rows"]["toy"] and "identity" in result["rows"]["toy"]
  sr = _eval(toy_bundle, real_shards, tmp_path / "sr", "--methods", "source,real", *common)
  ci, sr = result["rows"], sr["rows"]
  # CSIM is measured against the OTHER clip's portrait: the repeated portrait scores 1, the
  # clip's real frames (another person) lower than against their own first frame.
  assert ci["source"]["identity"] == pytest.approx(1.0)
  assert ci["real"]["identity"] < sr["real"]["identity"]
  # FID* of the other person's frame to this clip's frames is larger than of its own frame.
  assert ci["source"]["fid"] > sr["source"]["fid"]
  with pytest.raises(ValueError, match="unknown nope"):
    tables.load_rows([str(toy_bundle)], "toy,nope")


@pytest.mark.needs_data
@pytest.mark.slow
def test_lse_of_in_sync_real_clips_beats_audio_shifted_by_10_frames(synced_shards):
  """LSE-D / LSE-C as `jaxtalk eval` computes them (ClipScorer -> sync.SyncEvaluator), with the
  tiny expert trained as tests/tasks/test_syncnet.py trains it (first 70% of each in-sync real
  clip; ~9 min), on the held-out last 30%: the clip with its own audio vs the same clip with the
  audio delayed by 10 frames. The offset search is +-5 frames, so the delayed audio has no
  matching offset (with +-15 the search would find it at +10, which is checked too)."""
  from jaxtalk.evaluators import sync  # pylint: disable=g-import-not-at-top
  from jaxtalk.tasks import syncnet as task_lib  # pylint: disable=g-import-not-at-top
  from tests.tasks import test_syncnet as syncnet_tests  # pylint: disable=g-import-not-at-top
  clips = syncnet_tests.in_sync_clips(synced_shards)
  config, _, params = syncnet_tests.train_tiny_expert_on_clips(clips)
  model = task_lib.build_model(config)
  near = reenactment.ClipScorer(sync=sync.SyncEvaluator(model, params, max_offset=5))
  wide = sync.SyncEvaluator(model, params, max_offset=15)
  scores = {"in_sync": [], "shifted": []}
  wide_dists = {"in_sync": [], "shifted": []}
  for c in clips:
    n = len(c["frames"])
    f, mel = c["frames"][int(0.7 * n):], c["mel"][int(0.7 * n):]
    shifted = np.concatenate([np.repeat(mel[:1], 10, 0), mel[:-10]])
    for name, m in (("in_sync", mel), ("shifted", shifted)):
      scores[name].append(near.score_clip(f[0], f, f, mel=m, reference_sync=False)["clip"])
      wide_dists[name].append(wide(f, m)["dists"])
  mean = {k: {m: float(np.mean([s[m] for s in v])) for m in ("lse_c", "lse_d")}
          for k, v in scores.items()}
  offsets = {k: int(np.nanargmin(np.nanmean(v, axis=0))) - 15 for k, v in wide_dists.items()}
  print(f"\nheld-out tails of {len(clips)} clips: {mean}; pooled offsets {offsets}")
  assert mean["in_sync"]["lse_d"] < mean["shifted"]["lse_d"]
  assert mean["in_sync"]["lse_c"] > mean["shifted"]["lse_c"]
  assert abs(offsets["in_sync"]) <= 1 and abs(offsets["shifted"] - 10) <= 1


class _RecordingModel:
  """Records the Motion each protocol hands to the method (GoHD reads expression and p_0)."""

  def __init__(self):
    self.rendered, self.started = [], []

  def sample_motion(self, wav, *, num_frames, text=None, seed=0, source_motion=None):
    del wav, text, seed
    self.started.append(source_motion)
    from jaxtalk import motion as motion_lib  # pylint: disable=g-import-not-at-top
    return motion_lib.Motion(pose=np.zeros((1, num_frames, 6), np.float32),
                             gaze=np.zeros((1, num_frames, 2), np.float32),
                             expression=np.full((1, num_frames, 4), 0.5, np.float32))

  def render_motion(self, source, motion, *, mel, source_pose):
    del mel, source_pose
    self.rendered.append(motion)
    return np.repeat(source[None], motion.pose.shape[1], 0)


def test_protocols_pass_the_clips_expression_and_the_portraits_motion():
  """Self-reenactment drives the method with the clip's own expression coefficients (when the
  shards have them), audio-driven starts the generators from the portrait's pose, gaze and e_0
  and keeps the expression they sample."""
  t = 5
  rng = np.random.default_rng(0)
  clip = {"frames": np.zeros((t, 8, 8, 3), np.float32), "pose": rng.normal(size=(t, 6)),
          "gaze": rng.normal(size=(t, 2)), "expression": rng.normal(size=(t, 4)),
          "mel": np.zeros((t, 16, 80), np.float32), "wav": np.zeros(16000, np.float32)}
  model = _RecordingModel()
  row = {"kind": "method", "model": model, "name": "m", "path": "m"}
  portrait = (np.zeros((8, 8, 3), np.float32), clip["pose"][0])
  tables.generate(row, "self-reenactment", clip, portrait)
  np.testing.assert_array_equal(model.rendered[-1].expression[0], clip["expression"])
  tables.generate(row, "audio-driven", clip, portrait)
  start = model.started[-1]
  np.testing.assert_allclose(start.pose[0, 0], clip["pose"][0], rtol=1e-6)
  np.testing.assert_allclose(start.expression[0, 0], clip["expression"][0], rtol=1e-6)
  assert np.all(model.rendered[-1].expression == 0.5)
