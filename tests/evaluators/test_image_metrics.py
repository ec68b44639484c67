"""SSIM / PSNR / perceptual distance, dlib identity similarity and FaceMesh mouth LMD."""

import jax
import numpy as np
import pytest

from jaxtalk import losses
from jaxtalk.evaluators import image


_ssim = jax.jit(image.ssim)
_psnr = jax.jit(image.psnr)


def _img(seed, shape=(2, 3, 32, 32, 3)):
  return np.asarray(jax.random.uniform(jax.random.key(seed, impl="rbg"), shape, minval=-1,
                                       maxval=1))


def test_ssim_psnr_known_values():
  x = _img(0)
  np.testing.assert_allclose(_ssim(x, x), np.ones((2, 3)), atol=1e-5)
  assert _ssim(x, _img(1)).shape == (2, 3)
  assert float(_ssim(x, _img(1)).mean()) < 0.1
  # PSNR = 10 log10(1 / MSE) in [0, 1] units: a uniform offset of 0.1 in [-1, 1] is 0.05 in [0, 1].
  y = np.clip(x, -0.8, 0.8)
  z = y + 0.1
  np.testing.assert_allclose(_psnr(z, y), 10 * np.log10(1 / 0.05 ** 2), rtol=1e-4)
  np.testing.assert_allclose(_psnr(x, x), 100.0)
  with pytest.raises(ValueError, match="must both be"):
    image.ssim(x, x[:, :2])


def test_ssim_matches_skimage():
  from skimage.metrics import structural_similarity  # pylint: disable=g-import-not-at-top
  x, y = _img(2, (48, 48, 3)), np.clip(_img(2, (48, 48, 3)) + 0.3 * _img(3, (48, 48, 3)), -1, 1)
  ref = structural_similarity((x + 1) / 2, (y + 1) / 2, channel_axis=-1, data_range=1.0,
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
  assert float(_ssim(x, y)) == pytest.approx(ref, abs=2e-3)


def test_perceptual_distance():
  net, params = losses.PerceptualNet.create(None)
  x, y = _img(4), _img(5)
  fn = jax.jit(lambda a, b: image.perceptual_distance(a, b, net=net, params=params))
  same, diff = fn(x, x), fn(x, y)
  assert same.shape == (2, 3) and np.all(np.asarray(same) == 0.0)
  near = fn(x, np.clip(x + 0.05, -1, 1))
  assert np.all(np.asarray(diff) > np.asarray(near)) and np.all(np.asarray(near) > 0)
  assert "substitute" in image.backbone_name(net)


def _video_frame(path, index):
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path)) as container:
    for i, frame in enumerate(container.decode(video=0)):
      if i == index:
        return frame.to_ndarray(format="rgb24")
  raise ValueError(f"{path} has no frame {index}")


@pytest.mark.needs_data
def test_identity_same_person_beats_different_people(shared_data):
  from jaxtalk.evaluators import identity  # pylint: disable=g-import-not-at-top
  emb = identity.IdentityEmbedder()
  videos = shared_data / "videos"
  roy0 = _video_frame(videos / "hdtf_WRA_RoyBlunt_000.mp4", 0)
  roy1 = _video_frame(videos / "hdtf_WRA_RoyBlunt_000.mp4", 300)
  katie = _video_frame(videos / "hdtf_WDA_KatieHill_000.mp4", 0)
  aoc = _video_frame(videos / "hdtf_WDA_AlexandriaOcasioCortez_000.mp4", 0)
  same = identity.identity_similarity(emb, roy0, roy1[None])
  diff = identity.identity_similarity(emb, roy0, np.stack([katie[::2, ::2], aoc[::2, ::2]]))
  assert same["source_detected"] and same["detected_fraction"] == 1.0
  assert same["identity"] > 0.9
  assert same["identity"] > diff["per_frame"].max() + 0.02
  print(f"identity cosine: same person {same['identity']:.3f}, "
        f"different people {diff['per_frame'].round(3)}")


@pytest.mark.needs_data
def test_mouth_lmd_on_real_frames(shared_data):
  from jaxtalk.evaluators import landmarks  # pylint: disable=g-import-not-at-top
  video = shared_data / "videos" / "hdtf_WRA_RoyBlunt_000.mp4"
  frames = np.stack([_video_frame(video, i) for i in (0, 40)])
  with landmarks.MouthLandmarks() as det:
    pts = det(frames[0])
    assert pts.shape == (40, 2) and np.all((pts > 0) & (pts < 256))
    same = landmarks.mouth_lmd(det, frames, frames)
    moved = landmarks.mouth_lmd(det, frames, np.roll(frames, 6, axis=2))
  assert same["lmd"] == 0.0 and same["found_fraction"] == 1.0
  # Shifting the image 6 px right moves every lip point ~6 px.
  assert moved["lmd"] == pytest.approx(6.0, abs=1.5)


def _synthetic_eval_batches(n):
  from configs import syncnet as syncnet_config  # pylint: disable=g-import-not-at-top
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  c = syncnet_config.get_config("size=tiny,synthetic=true")
  c.batch_size = 2
  c.input.window = 8
  c.input.keys = ("frames", "mel", "mask", "pose")
  it = input_pipeline.create_iterator(c, split="eval")
  return [next(it) for _ in range(n)]


def test_reenactment_oracle_beats_repeat_source():
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  batches = _synthetic_eval_batches(1)
  perceptual = losses.PerceptualNet.create(None)
  seen = {}

  def oracle(source, batch):
    seen["source_is_frame0"] = np.array_equal(source, batch["frames"][:, 0])
    seen["source_pose"] = np.array_equal(batch["source_pose"], batch["pose"][:, 0])
    return reenactment.ground_truth(source, batch)

  gt = reenactment.evaluate_reenactment(oracle, batches, perceptual=perceptual)
  rep = reenactment.evaluate_reenactment(reenactment.repeat_source, batches, perceptual=perceptual)
  assert seen == {"source_is_frame0": True, "source_pose": True}
  assert gt["num_clips"] == 2 and gt["num_frames"] == 14       # frame 0 is excluded
  assert gt["ssim"] == pytest.approx(1.0, abs=1e-5) and gt["psnr"] == 100.0 and gt["lpips"] == 0
  assert rep["ssim"] < gt["ssim"] and rep["psnr"] < 60 and rep["lpips"] > 0
  table = reenactment.format_table({"ground truth": gt, "repeat source": rep})
  assert "| repeat source |" in table and "SSIM↑" in table and "IP↑" not in table
  with pytest.raises(ValueError, match="render_fn returned"):
    reenactment.evaluate_reenactment(lambda s, b: s, batches)


@pytest.mark.needs_data
def test_reenactment_on_real_clips(real_shards):
  """Oracle vs repeat-the-source on real held-out clips: every Table-1 column is computed."""
  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import identity, landmarks, reenactment
  clips = reenactment.read_clips(str(real_shards), max_frames=6)[:2]
  batches = [{k: c[k][None] for k in ("frames", "mel", "pose")} for c in clips]
  kw = dict(perceptual=losses.PerceptualNet.create(None), identity=identity.IdentityEmbedder())
  with landmarks.MouthLandmarks() as lm:
    gt = reenactment.evaluate_reenactment(reenactment.ground_truth, batches, landmarks=lm, **kw)
    rep = reenactment.evaluate_reenactment(reenactment.repeat_source, batches, landmarks=lm,
                                           **kw)
  print("\n" + reenactment.format_table({"ground truth": gt, "repeat source": rep}))
  assert gt["lmd"] == 0.0 and rep["lmd"] > 0.0
  assert gt["ssim"] > rep["ssim"] and gt["lpips"] < rep["lpips"]
  assert rep["identity"] > 0.95                                 # the source itself, every frame
  assert 0.7 < gt["identity"] <= 1.0                            # same person, other frames


@pytest.mark.needs_data
def test_measured_gaze_on_real_frames_is_mirror_symmetric(shared_data):
  """The gaze measured on generated frames is preprocessing's (`features.face.gaze` of FaceMesh
  landmarks): mirroring a frame left-right negates the yaw and keeps the pitch (up to FaceMesh's
  own asymmetry); the error against
  the measured gaze itself is 0; a frame without a face is left out (NaN), not fatal."""
  from jaxtalk.evaluators import landmarks  # pylint: disable=g-import-not-at-top
  videos = shared_data / "videos"
  # Frames whose eyes look clearly sideways (|yaw| 0.19-0.32 rad), both directions, two sizes.
  frames = [_video_frame(videos / "vox2_00086.mp4", 25), _video_frame(videos / "vox2_00373.mp4", 0),
            _video_frame(videos / "hdtf_WDA_KatieHill_000.mp4", 50)[::2, ::2]]
  frames = np.stack([f[:224, :224] if f.shape[0] == 224 else f[16:240, 16:240] for f in frames])
  with landmarks.MouthLandmarks() as det:
    g = landmarks.measured_gaze(det, frames)
    mirrored = landmarks.measured_gaze(det, frames[:, :, ::-1])
    blank = landmarks.gaze_error(det, np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 2)))
    self_err = landmarks.gaze_error(det, frames, g)
  print("gaze", g.round(3).tolist(), "mirrored", mirrored.round(3).tolist())
  assert np.isfinite(g).all() and np.all(np.abs(g[:, 1]) > 0.12) and np.all(np.abs(g) < 0.6)
  assert (g[:, 1] > 0).any() and (g[:, 1] < 0).any()
  # FaceMesh itself is not exactly mirror-symmetric (0.04-0.06 rad apart here): the sign flips on
  # every frame and the magnitude agrees to within a third of the yaw.
  assert np.all(np.sign(mirrored[:, 1]) == -np.sign(g[:, 1]))
  assert np.all(np.abs(mirrored[:, 1] + g[:, 1]) < np.abs(g[:, 1]) / 3), (g, mirrored)
  np.testing.assert_allclose(mirrored[:, 0], g[:, 0], atol=0.05)
  assert self_err["yaw_error"] == 0.0 and self_err["found_fraction"] == 1.0
  assert blank["found_fraction"] == 0.0 and np.isnan(blank["yaw_error"])
