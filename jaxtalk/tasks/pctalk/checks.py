"""Learning checks of a trained `pctalk_renderer` on the held-out clips of its config (issue bars:
the pose the motion extractor reads correlates with the stored pose; driving with a video's
motion, the pose measured back on the output follows the driving video; with the stitching
stage's lip retargeting, a lip-open ratio of 0 vs 0.8 changes the measured mouth opening in that
direction on every held-out clip).

`held_out_clips(config)` reads the eval clips (`input.holdout` / `input.eval_fraction`, the
split of `input_pipeline.split_clips`) as whole clips; `pose_readback`, `video_drive` and
`lip_control` score them. Used by `benchmarks/pctalk_renderer_learning.py` and the marked tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.models.pctalk import renderer as renderer_lib
from jaxtalk.tasks.pctalk import renderer as stage_lib

ANGLES = stage_lib.ANGLES


def held_out_clips(config, max_frames: int = 200) -> list[dict]:
  """The config's eval clips as `evaluators.reenactment.read_clips` dicts (at most `max_frames`
  frames each, at the model's resolution)."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(config.input.data_dir)
  _, ev = input_pipeline.split_clips(info, tuple(config.input.get("holdout", ()) or ()),
                                     float(config.input.get("eval_fraction", 0.2)))
  ids = [info["clips"][i]["clip_id"] for i in ev]
  return reenactment.read_clips(config.input.data_dir, clip_ids=ids,
                                resolution=int(config.model.image_size), max_frames=max_frames)


def _corr(a, b) -> float | None:
  ok = np.isfinite(a) & np.isfinite(b)
  if ok.sum() < 3 or np.std(a[ok]) < 1e-8 or np.std(b[ok]) < 1e-8:
    return None
  return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _batched(fn, frames, batch: int = 16):
  return np.concatenate([np.asarray(fn(jnp.asarray(frames[i:i + batch])))
                         for i in range(0, len(frames), batch)])


def pose_readback(config, params, clips) -> dict:
  """Pearson correlation, over all held-out frames pooled, between the motion extractor's
  (yaw, pitch, roll) and the stored pose, per angle; also per clip and the mean absolute error
  (radians)."""
  model = renderer_lib.renderer_from_config(config.model, config.dtype)
  read = jax.jit(lambda x: model.apply({"params": params}, x,
                                       method=renderer_lib.Renderer.motion)["angles"])
  pred = [_batched(read, c["frames"]) for c in clips]
  real = [c["pose"][:, :3] for c in clips]
  p, r = np.concatenate(pred), np.concatenate(real)
  out = {"frames": int(len(p))}
  for i, name in enumerate(ANGLES):
    out[f"corr_{name}"] = _corr(p[:, i], r[:, i])
    out[f"mae_{name}"] = float(np.mean(np.abs(p[:, i] - r[:, i])))
  out["per_clip"] = [{"clip": c["clip_id"], **{f"corr_{n}": _corr(a[:, i], b[:, i])
                                               for i, n in enumerate(ANGLES)}}
                     for c, a, b in zip(clips, pred, real)]
  return out


def video_drive(config, params, clips, detector) -> dict:
  """Video-driven self-reenactment: each clip's first frame is the source, every frame drives
  (K_c from the source; R, t, s, δ read from the driving frame); the output's head rotation is
  measured by FaceMesh as preprocessing measures it (`evaluators.landmarks.measured_pose`) and
  correlated with the driving frames' stored pose. The same measurement on the real frames is
  the ceiling of this measurement ("*_real").

  Returns:
    {"corr_yaw", "corr_pitch", "corr_roll" (output vs stored), "corr_yaw_real", ... (real frames
    vs stored), "found" / "found_real" (frames with a face), "frames", "per_clip"}.
  """
  from jaxtalk.evaluators import landmarks  # pylint: disable=g-import-not-at-top
  model = renderer_lib.renderer_from_config(config.model, config.dtype)
  render = jax.jit(lambda s, d: model.apply({"params": params}, s, d)[0])
  outs, reals, stored, per = [], [], [], []
  for c in clips:
    frames = c["frames"]
    src = np.broadcast_to(frames[:1], frames.shape)
    pred = np.concatenate([np.asarray(render(jnp.asarray(src[i:i + 16]),
                                             jnp.asarray(frames[i:i + 16])))
                           for i in range(0, len(frames), 16)])
    mo, mr = landmarks.measured_pose(detector, pred), landmarks.measured_pose(detector, frames)
    outs.append(mo)
    reals.append(mr)
    stored.append(c["pose"][:, :3])
    per.append({"clip": c["clip_id"], "corr_yaw": _corr(mo[:, 0], c["pose"][:, 0]),
                "corr_yaw_real": _corr(mr[:, 0], c["pose"][:, 0]),
                "stored_yaw_std": float(np.std(c["pose"][:, 0]))})
  o, r, s = np.concatenate(outs), np.concatenate(reals), np.concatenate(stored)
  out = {"frames": int(len(s)), "found": int(np.isfinite(o[:, 0]).sum()),
         "found_real": int(np.isfinite(r[:, 0]).sum()), "per_clip": per}
  for i, name in enumerate(ANGLES):
    out[f"corr_{name}"] = _corr(o[:, i], s[:, i])
    out[f"corr_{name}_real"] = _corr(r[:, i], s[:, i])
  return out


def lip_control(config, params, stitching_params, clips, detector, ratios=(0.0, 0.8),
                frames_per_clip: int = 8) -> dict:
  """The lip-open ratio control (LivePortrait's lip retargeting slider) measured on the output:
  `frames_per_clip` evenly spaced frames of each held-out clip are the sources; each is rendered
  at its own head pose with K_s + Δ_lip(K_s, r_s, r) for every r in `ratios`
  (`StitchingRetargeting.lip`), and FaceMesh's lip-open ratio (`keypoints.lip_open_ratio`, the
  landmarks preprocessing measures) is read back on the output. FaceMesh often finds no face in
  the tiny renderer's 64 px outputs, so the ratio is also read by the renderer's own motion
  extractor (`keypoint_lip_ratio` of M's keypoints of the output: M is trained on the real
  frames with the landmark-guided loss, a jaxtalk-trained landmark reader; "*_m" fields).

  Returns:
    {"ratios", "measured" (the mean FaceMesh ratio per requested ratio, all clips pooled; None
    where no face was found), "measured_m" (the same read by M), "per_clip": [{"clip",
    "measured": [per ratio], "found", "measured_m"}], "monotone_every_clip" / "_m": whether the
    measured opening increases with the requested ratio on every clip}.
  """
  from jaxtalk.tasks.pctalk import stitching as stitch_stage  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import keypoints as kp_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.models.pctalk import stitching as stitching_lib  # pylint: disable=g-import-not-at-top
  model = renderer_lib.renderer_from_config(config.model, config.dtype)
  mlps = stitch_stage.stitching_from_config(config.model)

  @jax.jit
  def render(src, r):
    volume, ms = model.apply({"params": params}, src, method=renderer_lib.Renderer.extract)
    k_s = renderer_lib.keypoints_of(ms)
    delta = mlps.apply({"params": stitching_params}, k_s, kp_lib.keypoint_lip_ratio(k_s),
                       jnp.full(k_s.shape[:1], r, jnp.float32),
                       method=stitching_lib.StitchingRetargeting.lip)
    out = model.apply({"params": params}, volume, k_s, k_s + delta,
                      method=renderer_lib.Renderer.render)[0]
    read = model.apply({"params": params}, out, method=renderer_lib.Renderer.motion)
    return out, kp_lib.keypoint_lip_ratio(renderer_lib.keypoints_of(read))

  def measured(frames):
    vals = []
    for f in frames:
      lm = detector.landmarks(f)
      vals.append(np.nan if lm is None else float(kp_lib.lip_open_ratio(lm)))
    return np.asarray(vals, np.float32)

  def rising(values):
    return all(b > a for a, b in zip(values, values[1:]))  # False with any NaN

  per, pooled, pooled_m = [], [[] for _ in ratios], [[] for _ in ratios]
  for c in clips:
    idx = np.linspace(0, len(c["frames"]) - 1, frames_per_clip).round().astype(int)
    src = jnp.asarray(c["frames"][idx])
    outs = [render(src, float(r)) for r in ratios]
    m = [measured(np.asarray(o)) for o, _ in outs]
    mm = [np.asarray(k, np.float32) for _, k in outs]
    for i, (v, k) in enumerate(zip(m, mm)):
      pooled[i].extend(v[np.isfinite(v)].tolist())
      pooled_m[i].extend(k.tolist())
    per.append({"clip": c["clip_id"],
                "measured": [float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any()
                             else None for v in m],
                "found": [int(np.isfinite(v).sum()) for v in m],
                "measured_m": [float(np.mean(k)) for k in mm]})
  return {"ratios": [float(r) for r in ratios],
          "measured": [float(np.mean(v)) if v else None for v in pooled],
          "measured_m": [float(np.mean(v)) for v in pooled_m], "per_clip": per,
          "monotone_every_clip": all(
              rising([np.nan if x is None else x for x in p["measured"]]) for p in per),
          "monotone_every_clip_m": all(rising(p["measured_m"]) for p in per)}
