"""LSE-D / LSE-C (Chung & Zisserman): offset search, confidence, SyncEvaluator plumbing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtalk.evaluators import sync
from jaxtalk.models import syncnet as syncnet_lib


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("shift", [-7, 0, 4, 12])
def test_finds_the_constructed_offset(shift):
  """Audio embeddings equal the video embeddings `shift` frames later -> offset == shift."""
  rng = np.random.default_rng(0)
  t = 80
  per_frame = _unit(rng.standard_normal((t + 40, 16)))       # one "event" embedding per frame
  audio = _unit(per_frame[20:20 + t] + 0.1 * rng.standard_normal((t, 16)))
  centers = np.arange(2, t - 2)
  video = per_frame[20 + centers + shift]                    # lips at c match audio at c + shift
  out = sync.sync_scores(video, audio, centers=centers)
  assert out["offset"] == shift
  assert out["dists"].shape == (31,)
  assert out["lse_d"] == pytest.approx(np.nanmin(out["dists"]))
  assert out["lse_c"] == pytest.approx(np.nanmedian(out["dists"]) - out["lse_d"])
  assert out["lse_c"] > 0.8 and out["lse_d"] < 0.5
  # Unrelated audio: no confident offset.
  noise = sync.sync_scores(video, _unit(rng.standard_normal((t, 16))), centers=centers)
  assert noise["lse_c"] < 0.25 * out["lse_c"]


def test_offset_distances_counts_only_pairs_inside_the_clip():
  v = np.zeros((1, 2))
  a = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]])
  d = sync.offset_distances(v, a, centers=np.array([1]), max_offset=2)
  np.testing.assert_allclose(d, [np.nan, 5.0, 1.0, 1.0, np.nan])
  with pytest.raises(ValueError, match="do not match"):
    sync.offset_distances(np.zeros((3, 2)), a, centers=np.array([1]))


def test_sync_evaluator_embeds_and_scores_a_clip():
  model = syncnet_lib.SyncNet(face_widths=(8, 8, 8, 8, 8), face_res=(0,) * 5,
                              audio_widths=(8, 8, 8, 8), audio_res=(0,) * 4, embed_dim=16)
  key = jax.random.key(0, impl="rbg")
  params = jax.jit(model.init)(key, jnp.zeros((1, 5, 32, 32, 3)), jnp.zeros((1, 16, 80)))
  ev = sync.SyncEvaluator(model, params["params"], image_size=32, chunk=8)
  frames = np.asarray(jax.random.uniform(key, (24, 48, 48, 3), minval=-1, maxval=1))
  mel = np.asarray(jax.random.normal(key, (24, 16, 80)))
  v, a = ev.embed(frames, mel)
  assert v.shape == (20, 16) and a.shape == (24, 16)
  mask = np.arange(24) < 20
  out = ev(frames, mel, mask=mask)
  assert set(out) >= {"lse_c", "lse_d", "offset"} and -15 <= out["offset"] <= 15
  assert out["lse_c"] >= 0.0
  with pytest.raises(ValueError, match="need >= 5"):
    ev(frames[:4], mel[:4])


def test_shift_accuracies_counts_every_shift_inside_the_clip():
  """Hand-checked: 3 windows, audio of 7 frames; shifts |o| in {1, 2}."""
  a = _unit(np.eye(7)[:, :7] + 0.0)                           # orthonormal audio embeddings
  centers = np.array([2, 3, 4])
  v = a[centers].copy()
  v[1] = a[5]                                                 # window 1 matches audio at o = +2
  out = sync.shift_accuracies(v, a, centers=centers, min_shift=1, max_shift=2, segment=2,
                              segment_stride=1)
  # Windows 0 and 2: s(0) = 1 > s(o) = 0 for each of their 4 shifts (all inside 0..6).
  # Window 1: s(0) = 0, equal to every s(o) except o = +2 (1): 0 of 4 correct.
  assert (out["window_correct"], out["window_pairs"]) == (8, 12)
  assert out["window_accuracy"] == pytest.approx(8 / 12)
  # Segments (0, 1) and (1, 2) averaged: mean s(0) = 0.5 vs mean s(o) <= 0.5 (equal only for
  # o = +2 in segment (0, 1)... s_0(+2) = 0, s_1(+2) = 1 -> mean 0.5, not greater).
  assert out["segment_pairs"] == 8
  assert out["segment_correct"] == 6
  with pytest.raises(ValueError, match="min_shift"):
    sync.shift_accuracies(v, a, centers=centers, min_shift=3, max_shift=2)
  with pytest.raises(ValueError, match="shift_accuracies: .* do not match"):
    sync.shift_accuracies(v, a[:, :5], centers=centers)


def test_shift_accuracies_separates_matched_from_unrelated_embeddings():
  rng = np.random.default_rng(1)
  t = 60
  audio = _unit(rng.standard_normal((t, 16)))
  centers = np.arange(2, t - 2)
  matched = _unit(audio[centers] + 0.3 * rng.standard_normal((len(centers), 16)))
  good = sync.shift_accuracies(matched, audio, centers=centers)
  bad = sync.shift_accuracies(_unit(rng.standard_normal((len(centers), 16))), audio,
                              centers=centers)
  assert good["window_accuracy"] > 0.8 and good["segment_accuracy"] == 1.0
  assert 0.35 < bad["window_accuracy"] < 0.65
  assert good["window_pairs"] == bad["window_pairs"] > 0
