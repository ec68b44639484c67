"""data_pipelines/av_sync.py: audio-visual offset estimation and its correction in preprocessing."""

import json
import wave

import numpy as np
import pytest

from data_pipelines import av_sync
from data_pipelines import pipeline
from data_pipelines import readers
from jaxtalk.features import audio as audio_lib

SPF = audio_lib.SAMPLES_PER_FRAME
MIN_CONFIDENCE = pipeline.Options().sync_min_confidence


def _smooth_noise(rng, n, sigma=1.5):
  """Speech-envelope-like signal: white noise smoothed over ~sigma frames."""
  k = np.exp(-0.5 * (np.arange(-4 * sigma, 4 * sigma + 1) / sigma) ** 2)
  return np.convolve(rng.standard_normal(n + k.size), k / k.sum(), "valid")[:n]


def _pair(rng, t, delay, noise=0.5):
  """(mouth [t], energy [t]) where the energy is the mouth signal `delay` frames LATER."""
  s = _smooth_noise(rng, t + 40)
  mouth = s[20:20 + t]
  energy = s[20 - delay:20 - delay + t] + noise * s.std() * rng.standard_normal(t)
  return mouth, energy


# ----------------------------------------------------------------------------------------------
# The estimator.
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("delay", [-7, -3, 0, 2, 5, 8])
def test_known_shift_is_recovered_with_the_documented_sign(delay):
  rng = np.random.default_rng(10 + delay)
  mouth, energy = _pair(rng, 200, delay)
  # energy[t + delay] == mouth[t] (+ noise): audio LATE by `delay` frames -> offset == +delay.
  offset, confidence = av_sync.estimate_av_offset(mouth, energy)
  assert offset == delay
  assert confidence > 2 * MIN_CONFIDENCE
  assert isinstance(offset, int) and isinstance(confidence, float)
  lags, r = av_sync.lag_correlations(mouth, energy)
  assert lags[int(np.argmax(r))] == delay and r.max() > 0.7


def test_unrelated_signals_give_low_confidence():
  rng = np.random.default_rng(0)
  conf = np.array([av_sync.estimate_av_offset(_smooth_noise(rng, 200), _smooth_noise(rng, 200))[1]
                   for _ in range(200)])
  assert np.median(conf) < 2.0
  assert np.mean(conf >= MIN_CONFIDENCE) < 0.05
  # The same clips with a real relation are far above that.
  related = [av_sync.estimate_av_offset(*_pair(rng, 200, 4, noise=2.0))[1] for _ in range(20)]
  assert np.median(related) > MIN_CONFIDENCE


def test_short_or_flat_clips_give_low_confidence():
  rng = np.random.default_rng(1)
  for t in (12, 20):  # perfectly related, but too short to be sure.
    x = _smooth_noise(rng, t)
    assert av_sync.estimate_av_offset(x, x)[1] < MIN_CONFIDENCE
  x = _smooth_noise(rng, 200)
  assert av_sync.estimate_av_offset(x, x)[1] > MIN_CONFIDENCE
  assert av_sync.estimate_av_offset(np.full(100, 0.3), x[:100]) == (0, 0.0)
  assert av_sync.estimate_av_offset(x[:3], x[:3]) == (0, 0.0)
  # Lags are limited to half the clip.
  lags, _ = av_sync.lag_correlations(x[:10], x[:10], max_offset=10)
  assert lags.min() == -5 and lags.max() == 5


def test_bad_inputs_raise():
  x = np.zeros(20)
  with pytest.raises(ValueError, match="shapes"):
    av_sync.estimate_av_offset(x, np.zeros(21))
  with pytest.raises(ValueError, match="shapes"):
    av_sync.estimate_av_offset(np.zeros([20, 2]), np.zeros([20, 2]))
  with pytest.raises(ValueError, match="finite"):
    av_sync.estimate_av_offset(np.r_[x[:-1], np.nan], x)
  with pytest.raises(ValueError, match="landmarks"):
    av_sync.mouth_opening(np.zeros([5, 68, 2]))


def test_correction_rule():
  assert av_sync.correction(5, 4.0, min_confidence=3.0) == 5
  assert av_sync.correction(-4, 3.0, min_confidence=3.0) == -4
  assert av_sync.correction(-4, 2.9, min_confidence=3.0) == 0
  assert av_sync.correction(1, 9.0, min_confidence=3.0) == 0
  assert av_sync.correction(2, 9.0, min_confidence=3.0, min_offset=3) == 0


def test_signals_are_per_video_frame():
  # A 1-4 kHz burst in video frame 10 of 30 is the energy peak of frame 10.
  rng = np.random.default_rng(2)
  wav = 1e-3 * rng.standard_normal(30 * SPF)
  n = np.arange(SPF)
  wav[10 * SPF:11 * SPF] += 0.3 * np.sin(2 * np.pi * 2000 * n / 16000)
  energy = av_sync.speech_energy(audio_lib.log_mel(wav), 30)
  assert energy.shape == (30,) and int(np.argmax(energy)) == 10
  # Mouth opening: outer-lip height over inter-ocular distance, the same in any unit.
  lm = np.zeros([3, 478, 3], np.float32)
  lm[:, 33, 0], lm[:, 263, 0] = 0.3, 0.7
  lm[:, 0, 1] = 0.6
  lm[:, 17, 1] = 0.6 + np.array([0.1, 0.12, 0.2])
  np.testing.assert_allclose(av_sync.mouth_opening(lm), [0.25, 0.3, 0.5], rtol=1e-5)
  np.testing.assert_allclose(av_sync.mouth_opening(lm * 256), [0.25, 0.3, 0.5], rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# The correction in preprocessing (synthetic clip, no face tracking).
# ----------------------------------------------------------------------------------------------
def _synthetic_clip(rng, frames, delay):
  """Landmarks whose mouth follows an envelope, and audio whose loudness follows it `delay`
  frames later (audio late by `delay`)."""
  env = _smooth_noise(rng, frames + 40)
  env = (env - env.min()) / np.ptp(env)
  lm = np.zeros([frames, 478, 3], np.float32)
  lm[:, 33, 0], lm[:, 263, 0] = 100.0, 200.0
  lm[:, 0, 1] = 250.0
  lm[:, 17, 1] = 260.0 + 40.0 * env[20:20 + frames]
  loud = np.repeat(env[20 - delay:20 - delay + frames], SPF)
  wav = (0.02 + 0.3 * loud) * rng.uniform(-1, 1, frames * SPF)
  return lm, wav.astype(np.float32)


@pytest.mark.parametrize("delay", [4, -3])
def test_sync_clip_shifts_audio_and_trims_only_where_no_audio(delay):
  rng = np.random.default_rng(3)
  n = 200
  lm, wav = _synthetic_clip(rng, n, delay)
  opts = pipeline.Options()
  # Two clips of one video: [0, 100) and [100, 200); the source has audio for frames 0..199.
  first = pipeline._sync_clip(0, 100, lm[:100], wav, opts, min_frames=25)
  last = pipeline._sync_clip(100, 200, lm[100:], wav, opts, min_frames=25)
  for sync in (first, last):
    assert sync["offset"] == delay and sync["confidence"] > MIN_CONFIDENCE
    assert sync["shift"] == delay and "audio shifted by" in sync["note"]
  # Frame k gets the audio of frame k + shift; frames are trimmed only where that audio does not
  # exist: at the start of the video (shift < 0) or at its end (shift > 0).
  if delay > 0:
    assert (first["start"], first["stop"]) == (0, 100)
    assert (last["start"], last["stop"]) == (100, 200 - delay)
  else:
    assert (first["start"], first["stop"]) == (-delay, 100)
    assert (last["start"], last["stop"]) == (100, 200)
  # Re-estimated on the corrected clip (what process_video stores): in sync.
  for sync in (first, last):
    s, e, a = sync["start"], sync["stop"], sync["start"] + sync["shift"]
    mel = audio_lib.log_mel(wav[a * SPF:(a + e - s) * SPF])
    offset, _ = av_sync.estimate_av_offset(av_sync.mouth_opening(lm[s:e]),
                                           av_sync.speech_energy(mel, e - s))
    assert offset == 0
  # --sync_audio=false only measures; a shift that would leave too few frames is not made.
  off = pipeline._sync_clip(100, 200, lm[100:], wav, pipeline.Options(sync_audio=False), 25)
  assert off["shift"] == 0 and off["offset"] == delay and (off["start"], off["stop"]) == (100, 200)
  if delay > 0:
    short = pipeline._sync_clip(100, 200, lm[100:], wav, opts, min_frames=99)
    assert short["shift"] == 0 and "NOT corrected" in short["note"]


def test_cli_flags_and_summary(tmp_path, capsys):
  # Booleans parse as words (argparse's bool("false") would be True); parsing happens before the
  # input is read, so a missing input shows the flags were accepted.
  assert pipeline.run(["p", f"--input={tmp_path}/none/*.mp4", f"--output_dir={tmp_path}/o",
                       "--sync_audio=false", "--sync_min_confidence=3.5"]) == 2
  assert "no input videos" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    pipeline.run(["p", f"--input={tmp_path}/x", f"--output_dir={tmp_path}/o", "--sync_audio=maybe"])
  with pytest.raises(ValueError, match="sync_min_offset"):
    pipeline.preprocess(f"{tmp_path}/none/*.mp4", f"{tmp_path}/o", sync_min_offset=0)
  info = dict(options=dict(sync_audio=True, sync_min_confidence=3.0, sync_min_offset=2), clips=[
      dict(clip_id="a_c000", av_offset=5, av_confidence=4.0, audio_shift=5),
      dict(clip_id="b_c000", av_offset=6, av_confidence=2.8, audio_shift=0),
      dict(clip_id="c_c000", av_offset=1, av_confidence=4.0, audio_shift=0)])
  text = pipeline.sync_summary(info)
  assert "audio shifted in 1 of 3 clips" in text
  assert "shifted  a_c000: offset +5 frames, confidence 4.0" in text
  assert "left as is b_c000: offset +6" in text and "c_c000" not in text


# ----------------------------------------------------------------------------------------------
# Real clips.
# ----------------------------------------------------------------------------------------------
def _records(out_dir):
  from array_record.python import array_record_data_source  # pylint: disable=g-import-not-at-top
  from data_pipelines import schema  # pylint: disable=g-import-not-at-top
  info = json.loads((out_dir / "dataset_info.json").read_text())
  src = array_record_data_source.ArrayRecordDataSource([str(out_dir / s) for s in info["shards"]])
  return info, {r["clip_id"]: r for r in (schema.decode_record(src[i]) for i in range(len(src)))}


@pytest.mark.needs_data
def test_real_clips_hdtf_is_corrected_and_others_left_alone(real_shards):
  """The `--sync_audio` rule on the real clips' stored estimates: exactly the three confident
  late HDTF clips would be shifted, and shifting any HDTF clip by its estimate (what the pipeline
  does: audio advanced by the offset, the last frames trimmed; `test_pipeline_undoes_...` below
  runs the pipeline's own shift) puts it in sync. `real_shards` measures without shifting."""
  info, recs = _records(real_shards)
  opts = info["options"]
  assert not opts["sync_audio"] and opts["sync_min_confidence"] == MIN_CONFIDENCE
  report = []
  for c in info["clips"]:
    r = recs[c["clip_id"]]
    for k in ("av_offset", "av_confidence", "audio_shift"):
      assert r[k] == c[k], (c["clip_id"], k)
    assert c["audio_shift"] == 0, c  # measured only
    t, lag = r["num_frames"], c["av_offset"]
    shift = av_sync.correction(c["av_offset"], c["av_confidence"],
                               min_confidence=opts["sync_min_confidence"],
                               min_offset=opts["sync_min_offset"])
    after = av_sync.clip_offset(r["landmarks"], r["mel"], num_frames=t)
    if c["dataset"] == "hdtf":
      # Their audio is 3-7 frames late (see module docstring of av_sync.py).
      assert 3 <= c["av_offset"] <= 7, c
      pcm = r["audio"][lag * SPF:]
      after = av_sync.clip_offset(r["landmarks"][:t - lag],
                                  audio_lib.log_mel(audio_lib.from_int16(pcm)))
      assert abs(after[0]) <= 1, (c, after)
    else:
      assert shift == 0 and abs(c["av_offset"]) <= 2, c
    report.append((c["clip_id"], c["av_offset"], round(c["av_confidence"], 2), shift,
                   after[0], round(after[1], 2)))
  print("\n(clip, offset, confidence, shift the rule gives, offset and confidence re-estimated "
        "after shifting HDTF clips by their offset):", *report, sep="\n")
  shifted = sorted(c["clip_id"] for c in info["clips"] if av_sync.correction(
      c["av_offset"], c["av_confidence"], min_confidence=opts["sync_min_confidence"],
      min_offset=opts["sync_min_offset"]))
  # Measured at confidence 4.0-4.3 (KatieHill, +6 at 2.8, stays below the default 3.0).
  assert shifted == ["hdtf_WDA_AlexandriaOcasioCortez_000_c000", "hdtf_WRA_RoyBlunt_000_c000",
                     "hdtf_WRA_RoyBlunt_000_c001"]


def _write_wav(path, pcm):
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(16000)
    w.writeframes(np.asarray(pcm, "<i2").tobytes())


@pytest.mark.needs_data
def test_pipeline_undoes_a_known_audio_delay_on_a_real_clip(real_shards, shared_data, tmp_path):
  """vox2_00086 (in sync) with its audio delayed by 6 frames and cut at the video's end: the
  pipeline measures +6, shifts the audio back and trims the 6 frames that have no audio left."""
  _, recs = _records(real_shards)
  orig = recs["vox2_00086_c000"]
  assert orig["start_time"] == 0.0 and orig["audio_shift"] == 0 and abs(orig["av_offset"]) <= 1
  delay, t = 6, orig["num_frames"]
  _write_wav(tmp_path / "late.wav",
             np.concatenate([np.zeros(delay * SPF, np.int16), orig["audio"]])[:t * SPF])
  item = readers.VideoItem(id="late", video=str(shared_data / "videos" / "vox2_00086.mp4"),
                           audio=str(tmp_path / "late.wav"), dataset="voxceleb2")
  (rec,), warnings = pipeline.process_video(item, pipeline.Options(resolution=64))
  assert rec["av_offset"] == delay and rec["av_confidence"] >= MIN_CONFIDENCE
  assert rec["audio_shift"] == delay and any("audio shifted by +6" in w for w in warnings)
  assert any("6 frames trimmed" in n for n in rec["notes"])
  # Every per-frame array has the same T - 6 frames as the original's first T - 6 frames, and
  # the audio is the original's again (int16 through float and back: within 1 LSB).
  n = t - delay
  assert rec["num_frames"] == n and rec["start_time"] == 0.0
  assert rec["frames"] == orig["frames"][:n]
  for k in ("crop_box", "landmarks", "face_found", "pose", "gaze", "mouth_box"):
    assert rec[k].shape[0] == n, k
    np.testing.assert_array_equal(rec[k], orig[k][:n], err_msg=k)
  assert rec["audio"].shape == (n * SPF,)
  np.testing.assert_allclose(rec["audio"].astype(np.int32), orig["audio"][:n * SPF], atol=1)
  assert rec["mel"].shape == (1 + n * SPF // audio_lib.HOP_SIZE, 80)
  np.testing.assert_allclose(rec["mel"].astype(np.float32),
                             audio_lib.log_mel(audio_lib.from_int16(rec["audio"])), atol=0.01)
  assert abs(av_sync.clip_offset(rec["landmarks"], rec["mel"])[0]) <= 1
