"""`jaxtalk expression-basis`: the second pass over preprocessed shards that adds GoHD's e and f.

  jaxtalk expression-basis --data_dir SHARDS [--components 64] [--holdout CLIP,...]
  jaxtalk expression-basis --data_dir SHARDS --bfm BFM/BFM_model_front.mat [--holdout CLIP,...]

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
"deep3dfacerecon", `pipeline.load_coefficients`) keep them (and get no f: item 3 does that).

3. `--bfm PATH` (`fit_bfm_shards`, then `write_expression` with that basis), for shards whose
   clips ALL carry imported Deep3DFaceRecon coefficients: the user's Deep3DFaceRecon
   `BFM_model_front.mat` (the model the coefficients were fitted with) gives the paper's own
   S̄ + e·B_exp at BFM's 68 keypoints (`expression.load_bfm`, kind "bfm68"), stored as
   `<data_dir>/expression_basis.npz` with the training clips' coefficient statistics
   (`expression.with_statistics`) and recorded under `expression_basis` (kind, fingerprint,
   source_tag, the BFM file's path and sha256, ...); every record gets `eye_features` = f of
   its imported e with that basis (e and `expression_source` "deep3dfacerecon" stay), and each
   clip's dataset_info.json entry `eye_features_source` = `expression.source_tag(basis)`
   ("bfm68:v1:<fingerprint>"), which `expression.basis_for_config` checks. Same atomic,
   idempotent rewrite; bad records reported and skipped.

A dataset mixing clips with and without imported coefficients is refused before anything is
written (`check_clip_sources`: one basis per dataset; the message gives both ways out), as is
`--bfm` on shards without imported coefficients.
"""

from __future__ import annotations

import functools
import hashlib
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
  return _read_clips(data_dir, ("landmarks",), _landmarks_of, clip_ids, bad)


def read_imported_expression(data_dir: str, clip_ids: Optional[Sequence[str]] = None,
                             bad: Optional[list] = None) -> dict:
  """Imported Deep3DFaceRecon coefficients of whole clips: {clip_id: `[T, 64]` float32 e}
  (records whose `expression_source` is "deep3dfacerecon"). Args and errors as
  `read_landmarks` (a record without imported, finite e `[T, 64]` is a bad record)."""
  return _read_clips(data_dir, ("expression", "expression_source"), _imported_of, clip_ids, bad)


def _read_clips(data_dir: str, keys: tuple, extract, clip_ids, bad) -> dict:
  """{clip_id: extract(record, shard path, index, finite=bad is not None)} over the shards."""
  info, info_path = _info(data_dir)
  keep = set(clip_ids) if clip_ids is not None else None
  out, seen = {}, set()
  for path in _shard_paths(data_dir, info, info_path):
    reader = _reader(path)
    try:
      for i in range(reader.num_records()):
        try:
          rec = schema.decode_record(reader.read(), keys=keys)
          seen.add(rec["clip_id"])
          if keep is not None and rec["clip_id"] not in keep:
            continue
          out[rec["clip_id"]] = extract(rec, path, i, finite=bad is not None)
        except ValueError as e:
          if bad is None:
            raise ValueError(f"{path}: record {i}: {e}") from e
          bad.append(f"{path}: record {i}: {e}")
    finally:
      reader.close()
  if keep is not None and keep - seen and bad is None:
    raise ValueError(f"{data_dir}: clips not found in the shards: {sorted(keep - seen)}")
  return out


def _imported_of(rec: dict, path: str, i: int, finite: bool) -> np.ndarray:
  del path, i, finite  # imported e are always checked (they feed the BFM basis' statistics).
  return _imported_e(rec, expression.NUM_COMPONENTS)


def _imported_e(rec: dict, k: int) -> np.ndarray:
  """The record's imported e `[T, k]` float32; ValueError (naming the clip) if it has none."""
  cid, src = rec["clip_id"], rec.get("expression_source")
  if src != schema.DEEP3DFACERECON:
    raise ValueError(f"{cid}: no imported Deep3DFaceRecon coefficients (expression_source "
                     f"{src!r})")
  e = rec.get("expression")
  if e is None or np.ndim(e) != 2 or np.shape(e)[1] != k:
    raise ValueError(f"{cid}: imported expression should be [T, {k}], got "
                     f"{None if e is None else np.shape(e)}")
  if not np.all(np.isfinite(e)):
    raise ValueError(f"{cid}: {int(np.sum(~np.isfinite(e)))} non-finite imported coefficients")
  return np.asarray(e, np.float32)


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
    ValueError: on unreadable shards (names the file), too few frames for `components`, or a
      mix of clips with and without imported Deep3DFaceRecon coefficients
      (`check_clip_sources`).
  """
  info, info_path = _info(data_dir)
  check_clip_sources(info, data_dir, bfm=False)
  train_ids, eval_ids = _split(info, data_dir, holdout, eval_fraction)
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


def _split(info: dict, data_dir: str, holdout, eval_fraction) -> tuple[list, list]:
  """(training clip ids, held-out clip ids) by `input_pipeline.split_clips`."""
  train_idx, eval_idx = input_pipeline.split_clips(info, tuple(holdout), eval_fraction)
  if not train_idx:
    raise ValueError(f"{data_dir}: no training clips left (holdout={list(holdout)})")
  return ([info["clips"][i]["clip_id"] for i in train_idx],
          [info["clips"][i]["clip_id"] for i in eval_idx])


def check_clip_sources(info: dict, data_dir: str, bfm: bool) -> None:
  """Refuses a mix of clips with and without imported Deep3DFaceRecon coefficients
  (dataset_info.json `expression_source`; one basis cannot describe both), and `--bfm` on shards
  with none; the message explains the choice."""
  clips = info["clips"]
  imported = sorted(c["clip_id"] for c in clips
                    if c.get("expression_source") == schema.DEEP3DFACERECON)
  others = sorted(c["clip_id"] for c in clips
                  if c.get("expression_source") != schema.DEEP3DFACERECON)
  if imported and others:
    raise ValueError(
        f"{data_dir}: {len(imported)} of {len(clips)} clips carry imported Deep3DFaceRecon "
        f"coefficients (e.g. {imported[:3]}), {len(others)} do not (e.g. {others[:3]}); the "
        "expression coefficients of one dataset come from one basis. Either give every video "
        "a manifest `coefficients` file, re-run `jaxtalk preprocess`, then `jaxtalk "
        f"expression-basis --data_dir {data_dir} --bfm BFM_model_front.mat` (BFM-68 basis and "
        "eye features for all), or drop the manifest's `coefficients`, re-run `jaxtalk "
        f"preprocess`, then `jaxtalk expression-basis --data_dir {data_dir}` (the FaceMesh "
        "basis for all)")
  if bfm and not imported:
    raise ValueError(f"{data_dir}: --bfm is for shards of imported Deep3DFaceRecon coefficients "
                     "(manifest `coefficients`), and no clip has them; run `jaxtalk "
                     f"expression-basis --data_dir {data_dir}` without --bfm (FaceMesh basis)")


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def fit_bfm_shards(data_dir: str, bfm_path: str, *, holdout: Sequence[str] = (),
                   eval_fraction: float = 0.2,
                   log=print) -> tuple[expression.ExpressionBasis, dict]:
  """For shards whose clips all carry imported Deep3DFaceRecon coefficients: the BFM-68 basis of
  `bfm_path` (`expression.load_bfm`) with the training clips' coefficient statistics
  (`expression.with_statistics`), written to `<data_dir>/expression_basis.npz` and recorded in
  dataset_info.json under `expression_basis` (kind, fingerprint, source_tag, the BFM file and
  its sha256, ...; atomically).

  Returns:
    (the basis, the `expression_basis` entry written).

  Raises:
    ValueError: naming the file for unreadable shards or BFM file; mixed or no imported clips
      (`check_clip_sources`); no readable training clip.
  """
  info, info_path = _info(data_dir)
  check_clip_sources(info, data_dir, bfm=True)
  basis = expression.load_bfm(bfm_path)
  train_ids, eval_ids = _split(info, data_dir, holdout, eval_fraction)
  log(f"expression basis: BFM-68 of {bfm_path}; reading the imported coefficients of "
      f"{len(train_ids)} training clips ({len(eval_ids)} held out)")
  bad = []
  clips = read_imported_expression(data_dir, train_ids, bad=bad)
  for msg in bad:
    log(f"expression basis: left out of the statistics (bad record): {msg}")
  if not clips:
    raise ValueError(f"{data_dir}: no readable training clip with imported coefficients")
  e = np.concatenate([clips[c] for c in sorted(clips)])
  basis = expression.with_statistics(basis, e)
  expression.save(basis, os.path.join(data_dir, expression.BASIS_FILE))
  entry = dict(file=expression.BASIS_FILE, kind=basis.kind, version=expression.VERSION,
               fingerprint=expression.fingerprint(basis), source_tag=expression.source_tag(basis),
               components=basis.num_components, bfm_file=os.path.abspath(bfm_path),
               bfm_sha256=_sha256(bfm_path),
               std=[round(float(v), 6) for v in basis.std],
               explained_variance_ratio=[round(float(v), 6)
                                         for v in basis.explained_variance_ratio],
               num_frames=int(len(e)), train_clips=sorted(clips), holdout=list(holdout),
               unit="inter-ocular distance (outer eye corners, 68-pt 36-45) per unit of "
                    "Deep3DFaceRecon's e; x right, y down")
  info = input_pipeline.load_dataset_info(data_dir)
  info[expression.INFO_KEY] = entry
  files.write_json_atomic(info_path, info)
  return basis, entry


# ----------------------------------------------------------------------------------------------
# Writing e and f into the records.
# ----------------------------------------------------------------------------------------------
def _plan_record(data: bytes, basis, tag: str):
  """What to do with one stored record (FaceMesh basis): ("bad", reason) |
  ("imported", clip_id, features) | ("same", clip_id, features) | ("update", clip_id, fields)."""
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
  return ("update", cid, dict(expression=e, eye_features=f, expression_source=tag))


def _plan_bfm_record(data: bytes, basis, tag: str):
  """As `_plan_record` for a BFM-68 basis: f of the record's imported e (which stays as it is);
  a record without imported coefficients is bad."""
  del tag  # the records' source stays "deep3dfacerecon"; the tag goes into dataset_info.json.
  try:
    rec = schema.decode_record(data, keys=("num_frames", "expression_source")
                               + EXPRESSION_FEATURES)
    e = _imported_e(rec, basis.num_components)
    f = expression.eye_features_from_coefficients(basis, e)
  except ValueError as err:
    return ("bad", str(err))
  if np.array_equal(rec.get("eye_features"), f):
    return ("same", rec["clip_id"], list(EXPRESSION_FEATURES))
  return ("update", rec["clip_id"], dict(eye_features=f))


def _updated_payloads(path: str, plans: list, bad: list):
  """The shard's records in order, those planned "update" re-encoded with their new fields
  (a record that then fails validation is kept as it was and reported in `bad`)."""
  reader = _reader(path)
  try:
    for i in range(reader.num_records()):
      data = reader.read()
      plan = plans[i]
      if plan[0] == "update":
        rec = dict(schema.decode_record(data))
        rec.update(plan[2])
        try:
          data = schema.encode_record(rec)
        except ValueError as e:
          bad.append(f"{path}: record {i}: {e}")
          plans[i] = ("bad", str(e))
      yield data
  finally:
    reader.close()


def _rewrite_shard(path: str, plan, bar) -> tuple[list, list]:
  """Plans every record of one shard (`plan(data)`), rewrites the shard if any record changes;
  returns (plans, bad-record messages)."""
  reader = _reader(path)
  plans = []
  try:
    for _ in range(reader.num_records()):
      plans.append(plan(reader.read()))
      bar.update(1)
  finally:
    reader.close()
  bad = [f"{path}: record {i}: {p[1]}" for i, p in enumerate(plans) if p[0] == "bad"]
  if any(p[0] == "update" for p in plans):
    pipeline.write_shard(path, _updated_payloads(path, plans, bad))
  return plans, bad


def _update_info(info: dict, by_clip: dict, dims: dict) -> None:
  """dataset_info.json's per-clip `features` / `expression_source` / `eye_features_source` and
  the dataset's `optional_features` / `optional_feature_dims` after the pass (`by_clip`:
  clip_id -> (features, source, eye-features source or None: keep, "" : drop))."""
  for clip in info["clips"]:
    if clip["clip_id"] not in by_clip:
      continue  # a bad record: its entry stays as it was.
    features, source, eye_source = by_clip[clip["clip_id"]]
    clip["features"] = sorted((set(clip.get("features", [])) - set(EXPRESSION_FEATURES))
                              | set(features))
    if source:
      clip["expression_source"] = source
    if eye_source:
      clip["eye_features_source"] = eye_source
    elif eye_source == "":
      clip.pop("eye_features_source", None)
  sets = [set(c.get("features", [])) for c in info["clips"]]
  info["optional_features"] = sorted(set.intersection(*sets)) if sets else []
  info["optional_feature_dims"] = dict(info.get("optional_feature_dims") or {}, **dims)


def write_expression(data_dir: str, basis: expression.ExpressionBasis, *, log=print) -> dict:
  """Writes GoHD's e_t / f_t into every record of `data_dir`'s shards and lists them in
  dataset_info.json (module docstring, items 2 and 3).

  A FaceMesh basis: e, f and `expression_source` of every record with landmarks (imported
  Deep3DFaceRecon records are kept as they are, counted "imported"). A BFM-68 basis
  (`fit_bfm_shards`): f of every record's imported e; e and its source stay, the clips'
  `eye_features_source` in dataset_info.json becomes `expression.source_tag(basis)`.

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
  bfm = basis.kind == expression.BFM68
  plan = functools.partial(_plan_bfm_record if bfm else _plan_record, basis=basis, tag=tag)
  counts = dict(updated=0, unchanged=0, imported=0, shards_rewritten=0, bad=[])
  by_clip, dims = {}, {}
  with tqdm.tqdm(total=len(info["clips"]), desc="expression-basis: e, f", unit="clip",
                 mininterval=1.0) as bar:
    for path in paths:
      plans, bad = _rewrite_shard(path, plan, bar)
      counts["bad"] += bad
      counts["shards_rewritten"] += any(p[0] == "update" for p in plans)
      for p in plans:
        if p[0] == "bad":
          continue
        counts[{"update": "updated", "same": "unchanged", "imported": "imported"}[p[0]]] += 1
        if p[0] == "imported":
          by_clip[p[1]] = (p[2], schema.DEEP3DFACERECON, None)
          dims.setdefault("expression", expression.NUM_COMPONENTS)
        else:
          by_clip[p[1]] = ((list(EXPRESSION_FEATURES), schema.DEEP3DFACERECON, tag) if bfm
                           else (list(EXPRESSION_FEATURES), tag, ""))
          dims.update(expression=basis.num_components, eye_features=expression.NUM_EYE_FEATURES)
  for msg in counts["bad"]:
    log(f"expression-basis: left as is (bad record): {msg}")
  info = input_pipeline.load_dataset_info(data_dir)
  _update_info(info, by_clip, dims)
  files.write_json_atomic(info_path, info)
  return counts


def _parser(prog: str):
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog=prog,
      description="Fits the FaceMesh expression basis (GoHD's e substitute, "
                  "jaxtalk/features/expression.py) over the training clips of preprocessed "
                  f"shards, writes <data_dir>/{expression.BASIS_FILE} and the "
                  f"`{expression.INFO_KEY}` entry of dataset_info.json, then writes every clip's "
                  "expression coefficients e and eye-motion features f into the shards "
                  "(data_pipelines/expression_pass.py). With --bfm, for shards of imported "
                  "Deep3DFaceRecon coefficients: stores the BFM-68 basis of that file instead "
                  "and writes f of the imported e.")
  parser.add_argument("--data_dir", required=True, help="shards + dataset_info.json")
  parser.add_argument("--components", type=int, default=expression.NUM_COMPONENTS,
                      help=f"basis size k (default {expression.NUM_COMPONENTS}, GoHD's e; "
                           "fixed at 64 with --bfm)")
  parser.add_argument("--bfm", default="",
                      help="Deep3DFaceRecon's BFM/BFM_model_front.mat (or an .npz of its "
                           "meanshape, exBase, keypoints): the model the shards' imported "
                           "coefficients were fitted with; every clip must have them")
  parser.add_argument("--holdout", default="",
                      help="comma-separated clip, video or speaker ids kept out of the fit (as "
                           "config.input.holdout); default: the md5 split of --eval_fraction")
  parser.add_argument("--eval_fraction", type=float, default=0.2,
                      help="without --holdout, the fraction of clips held out (default 0.2, "
                           "as the training input pipeline)")
  return parser


def _report(args, entry: dict, counts: dict) -> None:
  path = os.path.join(args.data_dir, expression.BASIS_FILE)
  if args.bfm:
    print(f"BFM-68 basis of {args.bfm} ({entry['source_tag']}, {entry['num_frames']} training "
          f"frames for its statistics): wrote {path} and dataset_info.json "
          f"`{expression.INFO_KEY}`")
    print(f"f of the imported e: {counts['updated']} clips written ({counts['shards_rewritten']}"
          f" shards rewritten), {counts['unchanged']} already up to date, "
          f"{len(counts['bad'])} bad records left as they were")
    return
  evr = entry["explained_variance_ratio"]
  print(f"{entry['components']} components explain {entry['explained_variance']:.4f} of the "
        f"training expression variance (first 5: {', '.join(f'{v:.3f}' for v in evr[:5])}); "
        f"wrote {path} and dataset_info.json `{expression.INFO_KEY}`")
  imported = (" (no eye features: their mesh is BFM's; re-run with --bfm "
              "BFM_model_front.mat, the Deep3DFaceRecon file they were fitted with, to train "
              "GoHD on them)" if counts["imported"] else "")
  print(f"e and f ({entry['fingerprint']}): {counts['updated']} clips written "
        f"({counts['shards_rewritten']} shards rewritten), {counts['unchanged']} already "
        f"up to date, {counts['imported']} with imported Deep3DFaceRecon coefficients "
        f"kept{imported}, {len(counts['bad'])} bad records left as they were")


def run(argv: list[str]) -> int:
  """`jaxtalk expression-basis` entry point (argv[0] is the program name)."""
  args = _parser(argv[0] if argv else "jaxtalk expression-basis").parse_args(list(argv[1:]))
  holdout = [h for h in args.holdout.split(",") if h]

  def err(msg):
    print(f"jaxtalk expression-basis: {msg}", file=sys.stderr)

  if args.bfm and args.components != expression.NUM_COMPONENTS:
    err(f"--components {args.components} does not apply with --bfm (BFM's exBase and "
        f"Deep3DFaceRecon's e have {expression.NUM_COMPONENTS})")
    return 2
  try:
    if args.bfm:
      basis, entry = fit_bfm_shards(args.data_dir, args.bfm, holdout=holdout,
                                    eval_fraction=args.eval_fraction)
    else:
      basis, entry = fit_shards(args.data_dir, components=args.components, holdout=holdout,
                                eval_fraction=args.eval_fraction)
    counts = write_expression(args.data_dir, basis, log=err)
  except ValueError as e:
    err(e)
    return 2
  _report(args, entry, counts)
  return 0


if __name__ == "__main__":
  sys.exit(run(sys.argv))
