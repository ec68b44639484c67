"""Input readers: turn a manifest or a dataset's folder layout into `VideoItem`s.

`read_items(input_path)` accepts
  * a JSON-lines manifest (`*.jsonl`): one object per video with keys `video` (path, relative to
    the manifest's folder or absolute; required) and optional `id`, `audio` (separate audio file,
    e.g. MEAD's .m4a), `dataset`, `speaker`, `emotion`, `intensity`, `view`, `text`, and
    `coefficients` (the video's 3DMM coefficients from Deep3DFaceRecon, `.mat` / `.npy` /
    `.npz`, one row per source-video frame: imported as the records' `expression`, see
    `pipeline.load_coefficients`; relative to the manifest's folder or absolute);
  * a CSV manifest (`*.csv`) with a header row naming the same columns;
  * a glob pattern or a directory (all `*.mp4|*.mov|*.mkv|*.avi|*.webm` below it, recursively);
    metadata is then parsed from each path by the first dataset layout that matches:

    HDTF         `.../{WRA,WDA,RD}_<Name>_<NNN>.mp4`                 speaker = Name
    MEAD         `.../<M003>/video/<view>/<emotion>/level_<n>/<NNN>.mp4`   speaker, view, emotion,
                 intensity; audio from `.../<M003>/audio/<emotion>/level_<n>/<NNN>.m4a` if present
                 (MEAD's videos carry no sound)
    VoxCeleb1/2  `.../id<NNNNN>/<youtube id>/<NNNNN>.mp4`            speaker = id; VoxCeleb1 ids are
                 id1xxxx, VoxCeleb2 ids id0xxxx
    CelebV-Text  `<root>/video(s)/<name>.mp4` with text in `<root>/action_dur/<name>.txt` or
                 `<root>/action/<name>.txt` (the action description, CelebV-Text's
                 head-motion text; first line used)
    otherwise    dataset "video", speaker = parent folder name.

Items are returned sorted by id so that every run sees the same order.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import re
from typing import Optional

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


@dataclasses.dataclass(frozen=True)
class VideoItem:
  """One input video and its metadata (see module docstring)."""
  id: str
  video: str
  audio: str = ""
  dataset: str = "video"
  speaker: str = ""
  emotion: str = "neutral"
  intensity: int = 0
  view: str = ""
  text: str = ""
  coefficients: str = ""

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


_HDTF = re.compile(r"^(WRA|WDA|RD)_(?P<name>.+?)_(?P<num>\d+)$")
_MEAD = re.compile(r"(?P<spk>[MW]\d{3})/video/(?P<view>[^/]+)/(?P<emo>[^/]+)/level_(?P<lvl>\d+)/"
                   r"(?P<num>\d+)\.[^/]+$")
_VOX = re.compile(r"(?P<spk>id(?P<d>\d)\d{4})/(?P<yt>[^/]+)/(?P<num>\d+)\.[^/]+$")


def _id_from(path: str, root: str) -> str:
  rel = os.path.relpath(path, root) if root else os.path.basename(path)
  stem = os.path.splitext(rel)[0]
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.replace(os.sep, "_")).strip("_")


def parse_path(path: str, root: str = "") -> VideoItem:
  """Metadata of one video from its path (dataset layouts in the module docstring)."""
  norm = path.replace(os.sep, "/")
  stem = os.path.splitext(os.path.basename(path))[0]
  vid = _id_from(path, root)
  m = _MEAD.search(norm)
  if m:
    audio = os.path.join(norm[:m.start()] + m["spk"], "audio", m["emo"], f"level_{m['lvl']}",
                         m["num"] + ".m4a")
    return VideoItem(
        id=vid, video=path, audio=audio if os.path.isfile(audio) else "", dataset="mead",
        speaker=m["spk"], emotion=m["emo"].lower(), intensity=int(m["lvl"]), view=m["view"])
  m = _HDTF.match(stem)
  if m:
    return VideoItem(id=vid, video=path, dataset="hdtf", speaker=m["name"])
  m = _VOX.search(norm)
  if m:
    dataset = "voxceleb1" if m["d"] == "1" else "voxceleb2"
    return VideoItem(id=vid, video=path, dataset=dataset, speaker=m["spk"])
  parent = os.path.dirname(path)
  if os.path.basename(parent) in ("video", "videos", "celebvtext_6"):
    base = os.path.dirname(parent)
    for sub in ("action_dur", "action"):
      txt = os.path.join(base, sub, stem + ".txt")
      if os.path.isfile(txt):
        with open(txt, encoding="utf-8") as f:
          text = f.readline().strip()
        return VideoItem(id=vid, video=path, dataset="celebvtext", speaker=stem, text=text)
  return VideoItem(id=vid, video=path, dataset="video", speaker=os.path.basename(parent))


def _from_row(row: dict, base: str) -> VideoItem:
  if not row.get("video"):
    raise ValueError(f"manifest row without 'video': {row}")
  video = row["video"] if os.path.isabs(row["video"]) else os.path.join(base, row["video"])
  parsed = parse_path(video)
  audio = row.get("audio") or parsed.audio
  if audio and not os.path.isabs(audio):
    audio = os.path.join(base, audio)
  vid = row.get("id") or os.path.splitext(os.path.basename(video))[0]
  coefficients = row.get("coefficients") or ""
  if coefficients and not os.path.isabs(coefficients):
    coefficients = os.path.join(base, coefficients)
  return VideoItem(
      id=str(vid), video=video, audio=audio or "", coefficients=coefficients,
      dataset=row.get("dataset") or parsed.dataset,
      speaker=str(row.get("speaker") or parsed.speaker),
      emotion=(row.get("emotion") or parsed.emotion or "neutral"),
      intensity=int(row.get("intensity") or parsed.intensity or 0),
      view=row.get("view") or parsed.view, text=row.get("text") or parsed.text)


def read_items(input_path: str) -> list[VideoItem]:
  """Reads a manifest (.jsonl / .csv), a directory or a glob into sorted `VideoItem`s.

  Raises:
    ValueError: naming the input if it matches nothing or a manifest line is malformed.
  """
  items = []
  if input_path.endswith((".jsonl", ".json")) and os.path.isfile(input_path):
    base = os.path.dirname(os.path.abspath(input_path))
    with open(input_path, encoding="utf-8") as f:
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{input_path}:{n}: not valid JSON ({e})") from e
        try:
          items.append(_from_row(row, base))
        except ValueError as e:
          raise ValueError(f"{input_path}:{n}: {e}") from e
  elif input_path.endswith(".csv") and os.path.isfile(input_path):
    base = os.path.dirname(os.path.abspath(input_path))
    with open(input_path, encoding="utf-8", newline="") as f:
      for n, row in enumerate(csv.DictReader(f), 2):
        try:
          items.append(_from_row({k: v for k, v in row.items() if k}, base))
        except ValueError as e:
          raise ValueError(f"{input_path}:{n}: {e}") from e
  else:
    if os.path.isdir(input_path):
      root = input_path
      paths = [p for p in glob.glob(os.path.join(input_path, "**", "*"), recursive=True)
               if p.lower().endswith(VIDEO_EXTENSIONS)]
    else:
      root = _glob_root(input_path)
      paths = [p for p in glob.glob(input_path, recursive=True) if os.path.isfile(p)]
    items = [parse_path(p, root) for p in paths]
  if not items:
    raise ValueError(f"{input_path}: no input videos found")
  ids = [it.id for it in items]
  dup = sorted({i for i in ids if ids.count(i) > 1})
  if dup:
    raise ValueError(f"{input_path}: duplicate video ids {dup[:5]}")
  return sorted(items, key=lambda it: it.id)


def _glob_root(pattern: str) -> Optional[str]:
  parts = pattern.replace(os.sep, "/").split("/")
  fixed = []
  for p in parts:
    if any(c in p for c in "*?["):
      break
    fixed.append(p)
  return "/".join(fixed) or ""
