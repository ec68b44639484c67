"""`jaxtalk expression-basis`: the second pass over preprocessed shards that adds GoHD's e and f.

  jaxtalk expression-basis --data_dir SHARDS [--components 64] [--holdout CLIP,...]

1. Fit (`fit_shards`): the FaceMesh expression basis (`jaxtalk.features.expression`: rigid
   alignment, canonical face, per-clip identity, PCA) over the TRAINING clips of the shards only
   (`input_pipeline.split_clips` with the same holdout / eval_fraction the stages use), written to
   `<data_dir>/expression_basis.npz` and recorded in dataset_info.json under `expression_basis`
   (file, version, fingerprint, components, explained variance, training clips).
2. Write (`write_expression`): into EVERY record of every shard (training and held-out clips) the
   clip's coefficients e_t (`expression.coefficients`, `[T, K]` float32, IOD), its eye-motion
   features f_t (`expression.eye_features_from_coefficients`, `[T, 21]` float32) and
   `expression_source` = `expression.source_tag(basis)` ("facemesh_pca:v<version>:<fingerprint>");
   dataset_info.json's per-clip `features`, `optional_features` and `optional_feature_dims` then
   list `expression` / `eye_features` as they list `wav2vec`.

Each shard is rewritten atomically (`pipeline.write_shard`: a temporary file in the same folder,
fsync, `os.replace`): a crash leaves every shard either as it was or fully rewritten, and
re-running the command finishes the job. Re-running is idempotent: the fit is deterministic, and
a shard whose records already hold the same e, f and source is not rewritten at all. A record
that cannot be read or whose landmarks give no coefficients is reported and left as it is (never
fatal); records with imported Deep3DFaceRecon coefficients (`expression_source`
"deep3dfacerecon", `pipeline.load_coefficients`) keep them.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np

from data_pipelines import pipeline
from data_pipelines import schema
from jaxtalk.core import files
from jaxtalk.core import input_pipeline
from jaxtalk.features import expression

EXPRESSION_FEATURES = ("expression", "eye_features")


def _info(data_dir: str) -> tuple[dict, str]:
  """(dataset_info.json contents, its path); ValueError naming the file if it is missing, has no
  clip index or is of another schema version."""
  info = input_pipeline.load_dataset_info(data_dir)
  info_path = os.path.join(data_dir, pipeline.DATASET_INFO)
  if "shards" not in info or "clips" not in info:
    raise ValueError(f"{info_path}: no `shards`/`clips` (not written by `jaxtalk preprocess`?)")
  schema.check_schema_version(info.get("schema_version"), info_path)
  return info, info_path


def _shard_paths(data_dir: str, info: dict, info_path: str) -> list[str]:
  paths = [os.path.join(data_dir, name) for name in info["shards"]]
  for path in paths:
    if not os.path.isfile(path):
      raise ValueError(f"{path}: shard listed in {info_path} is missing")
  return paths


def _reader(path: str):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  return array_record_module.ArrayRecordReader(path)


def read_landmarks(data_dir: str, clip_ids: Optional[Sequence[str]] = None,
                   bad: Optional[list] = None) -> dict:
  """Stored landmarks of whole clips: {clip_id: `[T, 478, 3]` float32 crop coordinates}.

  Args:
    data_dir: shards + dataset_info.json.
    clip_ids: only these clips (default all).
    bad: if given, records that cannot be read or whose landmarks are missing, malformed or
      non-finite are skipped and described here (naming the shard and record) instead of
      raising.

  Raises:
    ValueError: naming the file when dataset_info.json or a shard is missing, the shards are of
      another schema version, or (without `bad`) a record is unreadable or lacks landmarks.
  """
  info, info_path = _info(data_dir)
  keep = set(clip_ids) if clip_ids is not None else None
  out, seen = {}, set()
  for path in _shard_paths(data_dir, info, info_path):
    reader = _reader(path)
    try:
      for i in range(reader.num_records()):
        try:
          rec = schema.decode_record(reader.read(), keys=("landmarks",))
          seen.add(rec["clip_id"])
          if keep is not None and rec["clip_id"] not in keep:
            continue
          out[rec["clip_id"]] = _landmarks_of(rec, path, i, finite=bad is not None)
        except ValueError as e:
          if bad is None:
            raise ValueError(f"{path}: record {i}: {e}") from e
          bad.append(f"{path}: record {i}: {e}")
    finally:
      reader.close()
  if keep is not None and keep - seen and bad is None:
    raise ValueError(f"{data_dir}: clips not found in the shards: {sorted(keep - seen)}")
  return out


def _landmarks_of(rec: dict, path: str, i: int, finite: bool) -> np.ndarray:
  lm = rec.get("landmarks")
  if lm is None or np.ndim(lm) != 3 or np.shape(lm)[1:] != (expression.NUM_LANDMARKS, 3):
    raise ValueError(f"{path}: record {i} ({rec['clip_id']}) has no landmarks "
                     f"[T, {expression.NUM_LANDMARKS}, 3] (got "
                     f"{None if lm is None else np.shape(lm)}); re-run `jaxtalk preprocess`")
  lm = np.asarray(lm, np.float32)
  if finite and not np.all(np.isfinite(lm)):
    raise ValueError(f"{rec['clip_id']}: {int(np.sum(~np.isfinite(lm)))} non-finite landmark "
                     "values")
  return lm


def fit_shards(data_dir: str, *, components: int = expression.NUM_COMPONENTS,
               holdout: Sequence[str] = (), eval_fraction: float = 0.2,
               log=print) -> tuple[expression.ExpressionBasis, dict]:
  """Fits the basis over the training clips of `data_dir`, writes `<data_dir>/expression_basis.npz`
  and records it in dataset_info.json under `expression_basis` (atomically).

  The train/eval split is `input_pipeline.split_clips(info, holdout, eval_fraction)`, the one
  the training stages use with the same `config.input.holdout`, so the basis never sees eval
  clips.

  Returns:
    (the basis, the `expression_basis` entry written: file, version, fingerprint, components,
    explained variance, ...).

  Raises:
    ValueError: on unreadable shards (names the file), or too few frames for `components`.
  """
  info, info_path = _info(data_dir)
  train_idx, eval_idx = input_pipeline.split_clips(info, tuple(holdout), eval_fraction)
  if not train_idx:
    raise ValueError(f"{data_dir}: no training clips left (holdout={list(holdout)})")
  train_ids = [info["clips"][i]["clip_id"] for i in train_idx]
  eval_ids = [info["clips"][i]["clip_id"] for i in eval_idx]
  log(f"expression basis: reading the landmarks of {len(train_ids)} training clips "
      f"({len(eval_ids)} held out: {', '.join(eval_ids) or 'none'})")
  bad = []
  clips = read_landmarks(data_dir, train_ids, bad=bad)
  for msg in bad:
    log(f"expression basis: left out of the fit (bad record): {msg}")
  if not clips:
    raise ValueError(f"{data_dir}: no readable training clip to fit the basis on")
  frames = sum(len(c) for c in clips.values())
  log(f"expression basis: fitting {components} components on {frames} frames")
  basis = expression.fit_clips(clips, components)
  expression.save(basis, os.path.join(data_dir, expression.BASIS_FILE))
  evr = basis.explained_variance_ratio
  entry = dict(file=expression.BASIS_FILE, version=expression.VERSION,
               fingerprint=expression.fingerprint(basis), components=basis.num_components,
               explained_variance=float(evr.sum()),
               explained_variance_ratio=[round(float(v), 6) for v in evr],
               num_frames=int(frames), train_clips=sorted(train_ids), holdout=list(holdout),
               unit="inter-ocular distance (outer eye corners 33-263)")
  info = input_pipeline.load_dataset_info(data_dir)  # re-read: keep whatever else is there.
  info[expression.INFO_KEY] = entry
  files.write_json_atomic(info_path, info)
  return basis, entry


# ----------------------------------------------------------------------------------------------
# Writing e and f into the records.
# ----------------------------------------------------------------------------------------------
def _plan_record(data: bytes, basis, tag: str):
  """What to do with one stored record: ("bad", reason) | ("imported", clip_id, features) |
  ("same", clip_id, features) | ("update", clip_id, (e, f))."""
  try:
    rec = schema.decode_record(data, keys=("landmarks", "num_frames", "expression_source")
                               + EXPRESSION_FEATURES)
  except ValueError as e:
    return ("bad", str(e))
  cid = rec["clip_id"]
  if rec.get("expression_source") == schema.DEEP3DFACERECON:
    return ("imported", cid, sorted(k for k in EXPRESSION_FEATURES if k in rec))
  try:
    e = expression.coefficients(basis, rec["landmarks"])
    f = expression.eye_features_from_coefficients(basis, e)
  except (KeyError, ValueError) as err:
    return ("bad", f"{cid}: no coefficients from its landmarks ({type(err).__name__}: {err})")
  if (rec.get("expression_source") == tag
      and np.array_equal(rec.get("expression"), e) and np.array_equal(rec.get("eye_features"), f)):
    return ("same", cid, list(EXPRESSION_FEATURES))
  return ("update", cid, (e, f))


def _updated_payloads(path: str, plans: list, tag: str, bad: list):
  """The shard's records in order, those planned "update" re-encoded with e, f and the source
  (a record that then fails validation is kept as it was and reported in `bad`)."""
  reader = _reader(path)
  try:
    for i in range(reader.num_records()):
      data = reader.read()
      plan = plans[i]
      if plan[0] == "update":
        rec = dict(schema.decode_record(data))
        rec.update(expression=plan[2][0], eye_features=plan[2][1], expression_source=tag)
        try:
          data = schema.encode_record(rec)
        except ValueError as e:
          bad.append(f"{path}: record {i}: {e}")
          plans[i] = ("bad", str(e))
      yield data
  finally:
    reader.close()


def _rewrite_shard(path: str, basis, tag: str, bar) -> tuple[list, list]:
  """Plans every record of one shard, rewrites the shard if any record changes; returns
  (plans, bad-record messages)."""
  reader = _reader(path)
  plans = []
  try:
    for _ in range(reader.num_records()):
      plans.append(_plan_record(reader.read(), basis, tag))
      bar.update(1)
  finally:
    reader.close()
  bad = [f"{path}: record {i}: {p[1]}" for i, p in enumerate(plans) if p[0] == "bad"]
  if any(p[0] == "update" for p in plans):
    pipeline.write_shard(path, _updated_payloads(path, plans, tag, bad))
  return plans, bad


def _update_info(info: dict, by_clip: dict, dims: dict) -> None:
  """dataset_info.json's per-clip `features` / `expression_source` and the dataset's
  `optional_features` / `optional_feature_dims` after the pass (`by_clip`: clip_id ->
  (features, source))."""
  for clip in info["clips"]:
    if clip["clip_id"] not in by_clip:
      continue  # a bad record: its entry stays as it was.
    features, source = by_clip[clip["clip_id"]]
    clip["features"] = sorted((set(clip.get("features", [])) - set(EXPRESSION_FEATURES))
                              | set(features))
    if source:
      clip["expression_source"] = source
  sets = [set(c.get("features", [])) for c in info["clips"]]
  info["optional_features"] = sorted(set.intersection(*sets)) if sets else []
  info["optional_feature_dims"] = dict(info.get("optional_feature_dims") or {}, **dims)


def write_expression(data_dir: str, basis: expression.ExpressionBasis, *, log=print) -> dict:
  """Writes e_t, f_t and `expression_source` into every record of `data_dir`'s shards and lists
  them in dataset_info.json (module docstring, item 2).

  Returns:
    counts: {"updated", "unchanged", "imported", "shards_rewritten"} and "bad" (messages naming
    the shard, the record and what was wrong; those records are left as they were).

  Raises:
    ValueError: naming the file when dataset_info.json or a shard is missing, or the shards are
      of another schema version. Bad records are not errors.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  info, info_path = _info(data_dir)
  paths = _shard_paths(data_dir, info, info_path)
  tag = expression.source_tag(basis)
  counts = dict(updated=0, unchanged=0, imported=0, shards_rewritten=0, bad=[])
  by_clip, dims = {}, {}
  with tqdm.tqdm(total=len(info["clips"]), desc="expression-basis: e, f", unit="clip",
                 mininterval=1.0) as bar:
    for path in paths:
      plans, bad = _rewrite_shard(path, basis, tag, bar)
      counts["bad"] += bad
      counts["shards_rewritten"] += any(p[0] == "update" for p in plans)
      for p in plans:
        if p[0] == "bad":
          continue
        counts[{"update": "updated", "same": "unchanged", "imported": "imported"}[p[0]]] += 1
        if p[0] == "imported":
          by_clip[p[1]] = (p[2], schema.DEEP3DFACERECON)
          dims.setdefault("expression", expression.NUM_COMPONENTS)
        else:
          by_clip[p[1]] = (list(EXPRESSION_FEATURES), tag)
          dims.update(expression=basis.num_components, eye_features=expression.NUM_EYE_FEATURES)
  for msg in counts["bad"]:
    log(f"expression-basis: left as is (bad record): {msg}")
  info = input_pipeline.load_dataset_info(data_dir)
  _update_info(info, by_clip, dims)
  files.write_json_atomic(info_path, info)
  return counts


def run(argv: list[str]) -> int:
  """`jaxtalk expression-basis` entry point (argv[0] is the program name)."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog=argv[0] if argv else "jaxtalk expression-basis",
      description="Fits the FaceMesh expression basis (GoHD's e substitute, "
                  "jaxtalk/features/expression.py) over the training clips of preprocessed "
                  f"shards, writes <data_dir>/{expression.BASIS_FILE} and the "
                  f"`{expression.INFO_KEY}` entry of dataset_info.json, then writes every clip's "
                  "expression coefficients e and eye-motion features f into the shards "
                  "(data_pipelines/expression_pass.py).")
  parser.add_argument("--data_dir", required=True, help="shards + dataset_info.json")
  parser.add_argument("--components", type=int, default=expression.NUM_COMPONENTS,
                      help=f"basis size k (default {expression.NUM_COMPONENTS}, GoHD's e)")
  parser.add_argument("--holdout", default="",
                      help="comma-separated clip, video or speaker ids kept out of the fit (as "
                           "config.input.holdout); default: the md5 split of --eval_fraction")
  parser.add_argument("--eval_fraction", type=float, default=0.2,
                      help="without --holdout, the fraction of clips held out (default 0.2, "
                           "as the training input pipeline)")
  args = parser.parse_args(list(argv[1:]))
  holdout = [h for h in args.holdout.split(",") if h]

  def err(msg):
    print(f"jaxtalk expression-basis: {msg}", file=sys.stderr)

  try:
    basis, entry = fit_shards(args.data_dir, components=args.components, holdout=holdout,
                              eval_fraction=args.eval_fraction)
    counts = write_expression(args.data_dir, basis, log=err)
  except ValueError as e:
    err(e)
    return 2
  evr = entry["explained_variance_ratio"]
  print(f"{entry['components']} components explain {entry['explained_variance']:.4f} of the "
        f"training expression variance (first 5: {', '.join(f'{v:.3f}' for v in evr[:5])}); "
        f"wrote {os.path.join(args.data_dir, expression.BASIS_FILE)} and dataset_info.json "
        f"`{expression.INFO_KEY}`")
  print(f"e and f ({entry['fingerprint']}): {counts['updated']} clips written "
        f"({counts['shards_rewritten']} shards rewritten), {counts['unchanged']} already "
        f"up to date, {counts['imported']} with imported Deep3DFaceRecon coefficients kept, "
        f"{len(counts['bad'])} bad records left as they were")
  return 0


if __name__ == "__main__":
  sys.exit(run(sys.argv))
