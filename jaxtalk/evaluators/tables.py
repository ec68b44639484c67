"""`jaxtalk eval`: the papers' metric tables from one command.

  jaxtalk eval --model EXPORT_DIR [--model EXPORT_DIR ...] --videos SHARDS_DIR|MANIFEST|VIDEO_DIR
               [--methods posetalk,source,real] [--protocol self-reenactment] [--out DIR]
               [--syncnet SYNCNET_PARAMS|WEIGHTS.npz] [--vgg-weights VGG19.npz] [--seconds 4]
               [--max-clips N] [--clips ID,...] [--skip csim,lmd,lse]

For each clip of `--videos` (preprocessed shards, or raw videos that are preprocessed once into
`OUT/shards` at the bundle's resolution), each row ("method") generates a clip under the protocol:

  self-reenactment  source = the clip's first frame; driving = the clip's own pose, gaze and
                    audio; ground truth = the clip (PoseTalk Tables 1-2).
  audio-driven      source = the first frame; the motion comes from the method's own generators
                    (`sample_motion`, audio only, seed 0); ground truth = the clip (GoHD Tables 1,
                    2, 8). A bundle without a motion generator is skipped with the reason.
  cross-identity    source = the first frame of the NEXT clip (cyclic order); driving = this
                    clip's motion (re-framed to that portrait, `motion.controls.reframe`) and
                    audio. No pixel ground truth exists, so only CSIM (to that portrait), sync,
                    FID and the pose columns are reported (LMD is not computed).

Rows: one per `--model` bundle (named by its method, `jaxtalk.methods`), plus the baselines
"source" (the source frame repeated) and "real" (the real frames, the papers' "Ground Truth"
row). `--methods` selects and orders them.

Metrics (frames 1..T-1 of each clip; frame 0 is the source; per-frame values averaged over all
frames of all clips, per-clip values over clips; set metrics over the pooled frames/windows):

  SSIM↑       Wang et al. 2004, 11x11 Gaussian (sigma 1.5) on [0, 1] RGB, per channel averaged
              (`image.ssim`, dm-pix; matches skimage's `structural_similarity`)
  PSNR↑       10 log10(1 / MSE) in dB on [0, 1] (`image.psnr`)
  LPIPS*↓     LPIPS's formula without its learned linear layers over VGG19 relu1_1..relu5_1
              (`--vgg-weights`, converted torchvision weights) or, without them, the documented
              random-feature SUBSTITUTE (`image.perceptual_distance`): never LPIPS-comparable
  CSIM*↑      cosine of dlib's 128-d ResNet face embedding, source vs each generated frame
              (`identity`; the papers use ArcFace: SUBSTITUTE network)
  LMD↓        mean distance of FaceMesh's 40 lip points, generated vs real, pixels of the crop
              (`landmarks`; the papers' AED needs 3DMM fitting, not available offline)
  mouth L1↓   |generated - real| over the real mouth box resized to 32x32, pixels in [-1, 1]
  LSE-C*↑ /   SyncNet confidence / min distance over +-15 frame offsets (`sync`), with
  LSE-D*↓     jaxtalk's own trained expert (`--syncnet`: a syncnet stage's params/; default the
              demo's `<model>/../train/syncnet/params`) or Wav2Lip's SyncNet_color with its
              converted weights (`--syncnet FILE`, `models.wav2lip_syncnet`): SUBSTITUTES for
              Chung & Zisserman's SyncNet, values not comparable with the papers'
  FID*↓       Fréchet distance between the generated and real frames' features
              (`image.frame_features`: the perceptual backbone, mean-pooled; the papers use
              Inception-v3: SUBSTITUTE network, biased upward on few frames)
  pose FD↓,   Fréchet distance and diversity (Guo et al. 2022) of 25-frame windows of motion
  Div         features (`motion.compare`) of the generated vs the real pose+gaze, each dimension
              standardised by the real clips' statistics (audio-driven / cross-identity)
  SSIM_p↑     GoHD eq. 26 SSIM between generated and real standardised pose sequences

Outputs under `--out` (default `eval/<protocol>`): `metrics.json` (rows, per-clip rows, networks,
skipped clips, reported rows), `metrics.csv` (per-clip and mean rows) and `metrics.md` (the
table with the papers' reported numbers beside, then the per-clip rows). Per (protocol, method,
clip) results are cached in `OUT/cache/`: a re-run skips finished clips and, since every number
is aggregated from the cache, prints identical tables. A clip that cannot be read or generated,
and a video preprocessing could not use (no face, unreadable: the shards' dead_letter.jsonl),
is reported under "Skipped", never fatal.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
from typing import Callable, Optional

import numpy as np

from jaxtalk.core import logging_utils

PROTOCOLS = ("self-reenactment", "audio-driven", "cross-identity")
BASELINES = ("source", "real")
CACHE_VERSION = 1
POSE_WINDOW = 25
COLUMNS = (("ssim", "SSIM↑"), ("psnr", "PSNR↑"), ("lpips", "LPIPS*↓"), ("identity", "CSIM*↑"),
           ("lmd", "LMD↓"), ("mouth_l1", "mouth L1↓"), ("lse_c", "LSE-C*↑"),
           ("lse_d", "LSE-D*↓"), ("fid", "FID*↓"), ("pose_fd", "pose FD↓"),
           ("diversity", "Div"), ("ssim_p", "SSIM_p↑"))
FRAME_KEYS = ("ssim", "psnr", "lpips", "identity", "lmd", "mouth_l1")
CLIP_KEYS = ("lse_c", "lse_d")
# Columns with no pixel ground truth under cross-identity.
GROUND_TRUTH_KEYS = ("ssim", "psnr", "lpips", "lmd", "mouth_l1")
# The papers' tables each protocol is laid out like (jaxtalk/evaluators/reported.json).
REPORTED_TABLES = {"self-reenactment": ("PoseTalk",), "audio-driven": ("GoHD",),
                   "cross-identity": ()}
REPORTED_FILE = os.path.join(os.path.dirname(__file__), "reported.json")


def _log(msg: str, *args) -> None:
  logging_utils.log_info("eval: " + msg, *args)


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog=argv[0], description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", action="append", required=True,
                      help="exported bundle folder (`jaxtalk export` / `jaxtalk demo`); repeat "
                      "for several methods")
  parser.add_argument("--videos", required=True,
                      help="preprocessed shards folder (dataset_info.json), or a manifest / "
                      "folder of videos (preprocessed once into OUT/shards)")
  parser.add_argument("--methods", default=None,
                      help="comma-separated rows: the bundles' method names and the baselines "
                      "source, real (default: all)")
  parser.add_argument("--protocol", default="self-reenactment", choices=PROTOCOLS)
  parser.add_argument("--out", default=None, help="output folder (default eval/<protocol>)")
  parser.add_argument("--syncnet", default=None,
                      help="lip-sync expert for LSE-C/D: a syncnet stage's params/ folder, or "
                      "a file of Wav2Lip's expert weights (jaxtalk.pretrained.wav2lip_syncnet) "
                      "(default: <model>/../train/syncnet/params when it exists)")
  parser.add_argument("--vgg-weights", default=None,
                      help="converted VGG19 .npz for LPIPS*/FID* (default: the random-feature "
                      "substitute)")
  parser.add_argument("--seconds", type=float, default=4.0,
                      help="frames of each clip evaluated (default 4 s)")
  parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips")
  parser.add_argument("--clips", default=None, help="comma-separated clip ids to evaluate")
  parser.add_argument("--reported-dataset", default="HDTF",
                      help="dataset of the papers' reported rows shown (HDTF, MEAD, VoxCeleb, "
                      "all; default HDTF)")
  parser.add_argument("--skip", default="",
                      help="comma-separated metrics not to compute (faster): csim, lmd, lse")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  return parser.parse_args(argv[1:])


# ----------------------------------------------------------------------------------------------
# Rows: loaded bundles and baselines.
# ----------------------------------------------------------------------------------------------
def load_rows(model_dirs: list[str], methods: Optional[str]) -> list[dict]:
  """`[{"name", "kind": "bundle"|"source"|"real", "model", "path", "created"}]` in the order of
  `methods` (default: the bundles, then the baselines).

  Raises:
    ValueError: a name in `methods` that is neither a bundle's method nor a baseline.
  """
  from jaxtalk.serve import bundle as bundle_lib  # pylint: disable=g-import-not-at-top
  rows = []
  for path in model_dirs:
    manifest = bundle_lib.read_manifest(path)
    name = manifest.get("method", "posetalk")
    if any(r["name"] == name for r in rows):
      name = f"{name} ({os.path.basename(os.path.normpath(path))})"
    rows.append(dict(name=name, kind="bundle", path=os.path.abspath(path),
                     created=manifest.get("created", ""),
                     model=bundle_lib.load_bundle(path)))
  rows += [dict(name=b, kind=b, path="", created="", model=None) for b in BASELINES]
  if not methods:
    return rows
  by_name = {r["name"]: r for r in rows}
  wanted = [m.strip() for m in methods.split(",") if m.strip()]
  unknown = [m for m in wanted if m not in by_name]
  if unknown:
    raise ValueError(f"--methods: unknown {', '.join(unknown)}; available: "
                     f"{', '.join(by_name)}")
  return [by_name[m] for m in wanted]


def generate(row: dict, protocol: str, clip: dict, portrait: tuple) -> tuple:
  """Generates one clip: returns `(source [R, R, 3], frames [T, R, R, 3] in [-1, 1], motion
  pose+gaze [T, 8] raw units)`.

  `portrait` is `(frame [R, R, 3], pose [6])` of the source portrait (the clip's own frame 0,
  or another clip's under cross-identity).

  Raises:
    ValueError: the method cannot run this protocol (no motion generator for audio-driven).
  """
  from jaxtalk import motion as motion_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.motion import controls  # pylint: disable=g-import-not-at-top
  t = len(clip["frames"])
  source, source_pose = portrait
  real_motion = np.concatenate([clip["pose"], clip["gaze"]], -1)
  if row["kind"] == "real":
    return source, clip["frames"], real_motion
  if row["kind"] == "source":
    still = np.repeat(np.concatenate([source_pose, clip["gaze"][0]])[None], t, 0)
    return source, np.repeat(source[None], t, 0), still
  model = row["model"]
  expr = clip.get("expression")  # [T, E] when the shards have GoHD's coefficients
  if protocol == "audio-driven":
    if model.sample_motion is None:
      raise ValueError(f"{row['path']}: no motion generator (audio-driven needs one)")
    # The generators start from the portrait's own motion (GoHD: p_0, g_0, e_0).
    start = motion_lib.Motion(pose=np.asarray(source_pose, np.float32)[None, None],
                              gaze=clip["gaze"][None, :1],
                              expression=None if expr is None else expr[None, :1])
    m = model.sample_motion(clip["wav"], num_frames=t, text=None, seed=0, source_motion=start)
    motion = motion_lib.Motion(
        pose=np.asarray(m.pose, np.float32)[:, :t], gaze=np.asarray(m.gaze, np.float32)[:, :t],
        expression=None if m.expression is None else np.asarray(m.expression, np.float32)[:, :t])
  else:
    motion = motion_lib.Motion(pose=clip["pose"][None], gaze=clip["gaze"][None],
                               expression=None if expr is None else expr[None])
    if protocol == "cross-identity":
      motion = controls.reframe(motion, source_pose)
  frames = model.render_motion(source, motion, mel=clip["mel"], source_pose=source_pose)
  frames = np.asarray(frames, np.float32)
  if frames.shape != clip["frames"].shape:
    raise ValueError(f"{row['name']} rendered {frames.shape}; expected {clip['frames'].shape}")
  return source, frames, np.concatenate([motion.pose[0], motion.gaze[0]], -1)


# ----------------------------------------------------------------------------------------------
# Per-clip scores and their cache.
# ----------------------------------------------------------------------------------------------
class Evaluator:
  """Scores generated clips and caches each (protocol, method, clip) result under `out/cache`.

  Attributes:
    out: output folder. protocol: one of PROTOCOLS. settings: what a cached result must match
      (JSON-able; a mismatch recomputes). scorer: `reenactment.ClipScorer`. features: `(images
      [N, H, W, 3]) -> [N, D]` FID* features.
  """

  def __init__(self, out: str, protocol: str, settings: dict, scorer, features: Callable):
    self.out, self.protocol, self.settings = out, protocol, settings
    self.scorer, self.features = scorer, features

  def _path(self, method: str, clip_id: str, ext: str) -> str:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)
    return os.path.join(self.out, "cache", self.protocol, safe(method), safe(clip_id) + ext)

  def _settings(self, row: dict) -> dict:
    return dict(self.settings, version=CACHE_VERSION, method=row["name"], path=row["path"],
                created=row["created"])

  def cached(self, row: dict, clip_id: str) -> Optional[dict]:
    """The cached result of `row` on `clip_id` (see `score`), or None."""
    path = self._path(row["name"], clip_id, ".json")
    npz = self._path(row["name"], clip_id, ".npz")
    try:
      with open(path) as f:
        result = json.load(f)
      if result.get("settings") != self._settings(row):
        return None
      with np.load(npz) as z:
        result["arrays"] = {k: z[k] for k in z.files}
      return result
    except (OSError, ValueError):
      return None

  def score(self, row: dict, clip: dict, portrait: tuple) -> dict:
    """Generates and scores `clip` with `row`, writes the cache and returns `{"clip_id",
    "metrics": {key: per-clip mean}, "counts": {key: frames or 1}, "arrays": {"gen_feats",
    "real_feats", "gen_motion", "real_motion"}, "settings"}`.

    Raises:
      ValueError: the clip is too short or the method cannot run it (the caller skips it).
    """
    source, pred, gen_motion = generate(row, self.protocol, clip, portrait)
    r = self.scorer.score_clip(source, pred, clip["frames"], mouth_box=clip["mouth_box"],
                               mel=clip["mel"], wav=clip["wav"], reference_sync=False)
    if r is None:
      raise ValueError(f"{len(clip['frames'])} frame(s): need at least 2")
    metrics, counts = {}, {}
    for k, v in r["frames"].items():
      if v and not (self.protocol == "cross-identity" and k in GROUND_TRUTH_KEYS):
        metrics[k], counts[k] = float(np.mean(v)), len(v)
    for k, v in r["clip"].items():
      metrics[k], counts[k] = float(v), 1
    arrays = dict(gen_feats=np.asarray(self.features(pred[1:]), np.float32),
                  real_feats=np.asarray(self.features(clip["frames"][1:]), np.float32),
                  gen_motion=np.asarray(gen_motion, np.float32),
                  real_motion=np.concatenate([clip["pose"], clip["gaze"]], -1))
    result = dict(clip_id=clip["clip_id"], metrics=metrics, counts=counts,
                  settings=self._settings(row))
    self._write(row["name"], clip["clip_id"], result, arrays)
    result["arrays"] = arrays
    return result

  def _write(self, method: str, clip_id: str, result: dict, arrays: dict) -> None:
    """The cache files, each written to a temporary name and renamed (npz first: a json without
    its npz is never left behind)."""
    path = self._path(method, clip_id, ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    npz = self._path(method, clip_id, ".npz")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    for target, data in ((npz, buf.getvalue()), (path, json.dumps(result).encode())):
      with open(target + ".tmp", "wb") as f:
        f.write(data)
      os.replace(target + ".tmp", target)


# ----------------------------------------------------------------------------------------------
# Aggregation.
# ----------------------------------------------------------------------------------------------
def aggregate(results: list[dict]) -> dict:
  """Mean row of one method from its per-clip `results` (in clip order): frame metrics weighted
  by their frame counts, clip metrics over clips, FID* over the pooled frame features, pose FD /
  Div / SSIM_p over the clips' motion (standardised by the real motion's statistics)."""
  from jaxtalk.evaluators import motion as motion_eval  # pylint: disable=g-import-not-at-top
  row = {"num_clips": len(results),
         "num_frames": int(sum(r["counts"].get("ssim", 0) for r in results))}
  keys = sorted({k for r in results for k in r["metrics"]})
  for k in keys:
    pairs = [(r["metrics"][k], r["counts"][k]) for r in results if k in r["metrics"]]
    row[k] = float(sum(v * n for v, n in pairs) / sum(n for _, n in pairs))
  if not results:
    return row
  gen = np.concatenate([r["arrays"]["gen_feats"] for r in results])
  real = np.concatenate([r["arrays"]["real_feats"] for r in results])
  if len(gen) > 1 and len(real) > 1:
    # Clamped at 0: a set against itself gives -1e-9-sized rounding values.
    row["fid"] = max(0.0, motion_eval.frechet_distance(real, gen))
  real_m = [r["arrays"]["real_motion"] for r in results]
  gen_m = [r["arrays"]["gen_motion"] for r in results]
  allr = np.concatenate(real_m)
  mean, std = allr.mean(0), np.maximum(allr.std(0), 1e-6)
  window = min(POSE_WINDOW, min(len(m) for m in real_m))
  if window >= 2:
    cmp = motion_eval.compare([(g - mean) / std for g in gen_m],
                              [(r - mean) / std for r in real_m], window=window)
    row.update({k: cmp[k] for k in ("ssim_p",) if not math.isnan(cmp[k])})
    row.update({f"pose_{k}" if k == "fd" else k: cmp[k] for k in ("fd", "diversity")
                if not math.isnan(cmp[k])})
  return row


def protocol_columns(protocol: str) -> tuple:
  """The (key, header) columns of the table of `protocol` (papers' layout)."""
  if protocol == "self-reenactment":
    keys = ("ssim", "psnr", "lpips", "identity", "lmd", "mouth_l1", "lse_c", "lse_d", "fid")
  elif protocol == "audio-driven":
    keys = ("lse_c", "lse_d", "fid", "ssim_p", "pose_fd", "diversity", "identity", "ssim",
            "psnr", "lmd")
  else:
    keys = ("identity", "lse_c", "lse_d", "fid", "pose_fd", "diversity", "ssim_p")
  headers = dict(COLUMNS)
  return tuple((k, headers[k]) for k in keys)


def reported_rows(protocol: str, dataset: str = "HDTF") -> list[dict]:
  """The papers' reported rows for `protocol`, merged per (paper, dataset, method):
  `[{"label": "reported by GoHD (Tables 1, 8; HDTF): SadTalker (2023)", "values": {...}}]`,
  copied from `reported.json` (PoseTalk Tables 1-2 for self-reenactment, GoHD Tables 1, 2, 8
  for audio-driven). `dataset`: "HDTF", "MEAD", "VoxCeleb" or "all"."""
  with open(REPORTED_FILE, encoding="utf-8") as f:
    rows = json.load(f)["rows"]
  merged: dict[tuple, dict] = {}
  for r in rows:
    if r["paper"] not in REPORTED_TABLES[protocol]:
      continue
    if dataset != "all" and r["dataset"] != dataset and not r["dataset"].startswith("not"):
      continue
    key = (r["paper"], r["dataset"], r["display"])
    m = merged.setdefault(key, {"tables": [], "values": {}})
    m["tables"].append(r["table"].replace("Table ", ""))
    m["values"].update(r["values"])
  out = []
  for (paper, ds, name), m in merged.items():
    tables = ("Table " if len(m["tables"]) == 1 else "Tables ") + ", ".join(m["tables"])
    ds = "dataset not stated" if ds.startswith("not") else ds
    out.append({"label": f"reported by {paper} ({tables}; {ds}): {name}", "values": m["values"]})
  return out


# ----------------------------------------------------------------------------------------------
# Outputs.
# ----------------------------------------------------------------------------------------------
def _cell(v) -> str:
  return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_markdown(result: dict) -> str:
  """`metrics.md`: the protocol's table (our rows, then the papers' reported rows), the networks
  used, the per-clip rows and the skipped clips."""
  cols = protocol_columns(result["protocol"])
  original_sync = "LSE-C / LSE-D" in result["networks"]     # the papers' SyncNet: no star
  cols = [(k, h.replace("*", "") if original_sync and k in CLIP_KEYS else h) for k, h in cols
          if any(k in r for r in result["rows"].values())]
  head = "| row | " + " | ".join(h for _, h in cols) + " |\n|---|" + "---|" * len(cols)
  lines = [f"# jaxtalk eval: {result['protocol']}", "",
           f"{result['num_clips']} clip(s) of `{result['videos']}`, first "
           f"{result['settings']['seconds']:g} s each. Columns marked * use a substitute "
           "network (below): their values are comparable between rows of this table only, "
           "not with the papers' reported rows.", "", head]
  for name, r in result["rows"].items():
    lines.append(f"| **{name}** | " + " | ".join(_cell(r.get(k)) for k, _ in cols) + " |")
  for r in result["reported"]:
    lines.append(f"| {r['label']} | " + " | ".join(_cell(r["values"].get(k)) for k, _ in cols)
                 + " |")
  lines += ["", "Networks:", ""] + [f"- {k}: {v}" for k, v in result["networks"].items()]
  lines += ["", "## Per clip", "", "Set metrics (FID*, pose FD, Div, SSIM_p) exist only over "
            "all clips pooled.", "", "| row | clip | " + " | ".join(h for _, h in cols) + " |",
            "|---|---|" + "---|" * len(cols)]
  for c in result["per_clip"]:
    lines.append(f"| {c['method']} | {c['clip_id']} | "
                 + " | ".join(_cell(c["metrics"].get(k)) for k, _ in cols) + " |")
  if result["skipped"]:
    lines += ["", "## Skipped", ""] + [f"- {s['method']} / {s['clip_id']}: {s['reason']}"
                                       for s in result["skipped"]]
  return "\n".join(lines) + "\n"


def write_outputs(out: str, result: dict) -> None:
  """metrics.json, metrics.csv and metrics.md under `out`, each written atomically."""
  keys = [k for k, _ in COLUMNS]
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(["scope", "method", "clip_id"] + keys)
  for name, r in result["rows"].items():
    w.writerow(["mean", name, ""] + [r.get(k, "") for k in keys])
  for c in result["per_clip"]:
    w.writerow(["clip", c["method"], c["clip_id"]] + [c["metrics"].get(k, "") for k in keys])
  for name, text in (("metrics.json", json.dumps(result, indent=1, ensure_ascii=False)),
                     ("metrics.csv", buf.getvalue()), ("metrics.md", format_markdown(result))):
    path = os.path.join(out, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(path + ".tmp", path)


# ----------------------------------------------------------------------------------------------
# The command.
# ----------------------------------------------------------------------------------------------
def shards_for(videos: str, out: str, resolution: int) -> str:
  """`videos` when it is a preprocessed shards folder, else `OUT/shards`: the manifest or folder
  of videos preprocessed there once (`jaxtalk preprocess` at the bundle's `resolution`)."""
  if os.path.isfile(os.path.join(videos, "dataset_info.json")):
    return videos
  shards = os.path.join(out, "shards")
  stamp = os.path.join(shards, "eval_input.json")
  want = {"input": os.path.abspath(videos), "resolution": int(resolution)}
  try:
    with open(stamp) as f:
      if json.load(f) == want and os.path.isfile(os.path.join(shards, "dataset_info.json")):
        return shards
  except (OSError, ValueError):
    pass
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  _log("preprocessing %s -> %s (%d px)", videos, shards, resolution)
  pipeline.preprocess(input_path=videos, output_dir=shards, resolution=int(resolution))
  with open(stamp, "w") as f:
    json.dump(want, f)
  return shards


def _default_syncnet(model_dirs: list[str]) -> Optional[str]:
  for m in model_dirs:
    cand = os.path.join(os.path.dirname(os.path.abspath(m)), "train", "syncnet", "params")
    if os.path.isdir(cand):
      return cand
  return None


def _networks(kw: dict, syncnet: Optional[str]) -> dict:
  """What network each starred column used (for the table's notes)."""
  from jaxtalk.evaluators import image as image_lib  # pylint: disable=g-import-not-at-top
  backbone = image_lib.backbone_name(kw["perceptual"][0])
  out = {"LPIPS*": f"LPIPS formula without learned weights over {backbone}",
         "FID*": f"Fréchet distance of mean-pooled {backbone} features (SUBSTITUTE for "
                 "Inception-v3)"}
  out["CSIM*"] = ("dlib 128-d ResNet face embedding (SUBSTITUTE for ArcFace)"
                  if "identity" in kw else "not computed (--skip, or dlib models missing)")
  out["LMD"] = ("mediapipe FaceMesh lip contour (40 points)" if "landmarks" in kw
                else "not computed (--skip lmd, cross-identity, or mediapipe missing)")
  kind = type(kw["sync"].model).__name__ if "sync" in kw else ""
  if kind == "ChungSyncNet":
    out["LSE-C / LSE-D"] = (f"the original SyncNet of Chung & Zisserman 2016 with the weights "
                            f"of {syncnet} (the papers' network; crops and the averaging over "
                            "pairs inside the clip as documented in jaxtalk.evaluators.sync)")
  elif kind == "Wav2LipSyncNet":
    out["LSE-C* / LSE-D*"] = (f"Wav2Lip's SyncNet_color with the weights of {syncnet} "
                              "(L2-normalised embeddings; the papers' LSE use Chung & "
                              "Zisserman's SyncNet: SUBSTITUTE)")
  elif syncnet:
    out["LSE-C* / LSE-D*"] = (f"jaxtalk's own trained lip-sync expert {syncnet} (SUBSTITUTE for "
                              "SyncNet, Chung & Zisserman 2016)")
  else:
    out["LSE-C* / LSE-D*"] = "not computed (no --syncnet, or --skip lse)"
  return out


def _clip_plan(data_dir: str, args) -> list[str]:
  """Clip ids to evaluate, in the shards' order."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  ids = [c["clip_id"] for c in input_pipeline.load_dataset_info(data_dir)["clips"]]
  if args.clips:
    wanted = {c.strip() for c in args.clips.split(",")}
    ids = [i for i in ids if i in wanted]
  return ids[:args.max_clips] if args.max_clips else ids


def evaluate(ev: Evaluator, rows: list[dict], data_dir: str, ids: list[str], *, resolution: int,
             frames: int, progress: bool = True) -> tuple[dict, list[dict]]:
  """Every (row, clip) result, from the cache or computed: returns `({row name: [results in
  clip order]}, skipped [{"method", "clip_id", "reason"}])`."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  results = {r["name"]: {} for r in rows}
  pending = set()
  for i in ids:
    for r in rows:
      c = ev.cached(r, i)
      if c is not None:
        results[r["name"]][i] = c
      else:
        pending.add(i)
  portraits = {}
  if ev.protocol == "cross-identity":
    for c in reenactment.iter_clips(data_dir, clip_ids=ids, resolution=resolution, max_frames=1):
      if "error" not in c:
        portraits[c["clip_id"]] = (c["frames"][0], c["pose"][0])
  skipped = []
  bar = tqdm(total=len(ids), initial=len(ids) - len(pending), desc=f"eval {ev.protocol}",
             unit="clip", disable=not progress, file=sys.stderr)
  for clip in reenactment.iter_clips(data_dir, clip_ids=sorted(pending), resolution=resolution,
                                     max_frames=frames):
    cid = clip["clip_id"]
    if "error" in clip:
      skipped.append(dict(method="*", clip_id=cid, reason=f"unreadable: {clip['error']}"))
    else:
      portrait = (clip["frames"][0], clip["pose"][0])
      if ev.protocol == "cross-identity":
        partner = ids[(ids.index(cid) + 1) % len(ids)]
        portrait = portraits.get(partner, portrait)
      for r in rows:
        if cid in results[r["name"]]:
          continue
        bar.set_postfix_str(f"{r['name']} / {cid}")
        try:
          results[r["name"]][cid] = ev.score(r, clip, portrait)
        except Exception as e:  # pylint: disable=broad-except  # a bad clip never stops the run.
          skipped.append(dict(method=r["name"], clip_id=cid, reason=f"{type(e).__name__}: {e}"))
    bar.update(1)
  bar.close()
  for s in skipped:
    _log("skipped %s / %s: %s", s["method"], s["clip_id"], s["reason"])
  return {n: [res[i] for i in ids if i in res] for n, res in results.items()}, skipped


def run(argv: Optional[list[str]] = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  args = parse_args(argv)
  from jaxtalk.evaluators import image as image_lib  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import reenactment  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  out = os.path.abspath(args.out or os.path.join("eval", args.protocol))
  os.makedirs(out, exist_ok=True)
  rows = load_rows(args.model, args.methods)
  resolution = next(int(r["model"].resolution) for r in rows if r["kind"] == "bundle") if any(
      r["kind"] == "bundle" for r in rows) else 64
  data_dir = shards_for(args.videos, out, resolution)
  ids = _clip_plan(data_dir, args)
  skip = sorted({m.strip() for m in args.skip.split(",") if m.strip()})
  if set(skip) - {"csim", "lmd", "lse"}:
    raise ValueError(f"--skip: unknown {', '.join(set(skip) - {'csim', 'lmd', 'lse'})}; "
                     "choose from csim, lmd, lse")
  syncnet = None if "lse" in skip else args.syncnet or _default_syncnet(args.model)
  kw = reenactment.metric_networks(syncnet_params=syncnet, vgg_weights=args.vgg_weights,
                                   log=_log, identity="csim" not in skip,
                                   landmarks="lmd" not in skip
                                   and args.protocol != "cross-identity")  # no ground truth
  net, pparams = kw["perceptual"]
  feats = jax.jit(lambda x: image_lib.frame_features(x, net=net, params=pparams))
  frames = max(2, int(round(args.seconds * 25)))
  settings = dict(protocol=args.protocol, frames=frames, resolution=resolution,
                  data=_fingerprint(data_dir), syncnet=syncnet or "",
                  vgg=args.vgg_weights or "", seconds=args.seconds, skip=skip)
  ev = Evaluator(out, args.protocol, settings, reenactment.ClipScorer(**kw),
                 lambda x: np.concatenate([np.asarray(feats(x[i:i + 32]))
                                           for i in range(0, len(x), 32)]))
  per_method, skipped = evaluate(ev, rows, data_dir, ids, resolution=resolution, frames=frames,
                                 progress=not args.no_progress)
  result = dict(protocol=args.protocol, videos=os.path.abspath(args.videos), data_dir=data_dir,
                settings=settings, networks=_networks(kw, syncnet),
                num_clips=len({c["clip_id"] for res in per_method.values() for c in res}),
                rows={n: aggregate(res) for n, res in per_method.items()},
                per_clip=[dict(method=n, clip_id=c["clip_id"], metrics=c["metrics"])
                          for n, res in per_method.items() for c in res],
                skipped=dead_letters(data_dir) + skipped,
                reported=reported_rows(args.protocol, args.reported_dataset))
  write_outputs(out, result)
  print(format_markdown(result).split("\n## Per clip")[0])
  print(f"jaxtalk eval: wrote {os.path.join(out, 'metrics.md')} (and metrics.json, metrics.csv)")
  return 0


def dead_letters(data_dir: str) -> list[dict]:
  """The videos preprocessing could not use (`dead_letter.jsonl` of the shards: no face found,
  unreadable file, ...) as skipped entries `{"method": "*", "clip_id", "reason"}`."""
  path = os.path.join(data_dir, "dead_letter.jsonl")
  if not os.path.isfile(path):
    return []
  out = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        d = json.loads(line)
        out.append(dict(method="*", clip_id=str(d.get("id") or d.get("path")),
                        reason=f"preprocessing ({d.get('stage', '?')}): {d.get('reason', '')}"))
  return out


def _fingerprint(data_dir: str) -> str:
  """Identity of a shards folder: the md5 of its dataset_info.json."""
  with open(os.path.join(data_dir, "dataset_info.json"), "rb") as f:
    return hashlib.md5(f.read()).hexdigest()


if __name__ == "__main__":
  sys.exit(run())
