"""Stage `gohd_face_analysis`: jaxtalk's substitutes for the frozen Φ_exp, Φ_gaze and Φ_pars of
GoHD's animator losses (supplementary B.1, eqs. 13-15; configs/gohd/face_analysis.py).

One `models.gohd.face_analysis.FaceAnalysisNet` (shared backbone, three heads) learns, from every
frame of the windows (`frames [B, T, H, W, 3]` flattened to N = B*T images):

  loss_exp   λ_exp  · mean over valid frames of Σ_k (ê_k − e_k)² / V_e  (batch `expression`)
  loss_gaze  λ_gaze · mean over valid frames of Σ_j (ĝ_j − g_j)² / V_g  (`gaze`, normalised)
  loss_pars  λ_pars · mean pixel cross-entropy against `features.regions.region_labels` of the
             batch `landmarks` (FaceMesh, rasterised at H inside the jitted loss)

V_e, V_g: the total variance of e and g over the training stream (so each term is ~1 for a
network that predicts the training mean). The reference statistics (`baseline_stats`) are
measured once in `get_task` from `config.stats_batches` training batches (no frames decoded):
the mean and total variance of e and g, and the per-pixel majority region label.

Eval (held-out batches), each against predicting the training statistics:
  exp_mse / exp_mse_mean      Σ_k squared error of ê vs of the training mean of e (ratio
                              `exp_ratio` < 1: better than the mean)
  gaze_mse / gaze_mse_mean    the same for g (normalised units); `gaze_ratio`
  pars_miou / pars_miou_prior mean IoU over the regions present of the argmax parsing vs of the
                              training majority mask; `pars_acc` pixel accuracy
The ratios are averaged per batch by train.py; the tests recompute them from the averaged MSEs.

`jaxtalk.pretrained.face_analysis.load_face_analysis` turns a workdir of this stage into the
frozen functions the animator stage calls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtalk.features import regions
from jaxtalk.models.gohd import face_analysis as fa_models
from jaxtalk.tasks import Task

STATS_KEYS = ("expression", "gaze", "landmarks", "mask")


def baseline_stats(config, num_batches: int) -> dict:
  """Reference statistics of the training stream (module docstring), float32 / int32 numpy:
  `exp_mean [64]`, `exp_var []`, `gaze_mean [2]`, `gaze_var []`, `prior [R, R]` int32 (the
  per-pixel majority region of `num_batches` training batches, R = config.input.resolution)."""
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  cfg = config.copy_and_resolve_references()
  cfg.input.keys = STATS_KEYS
  cfg.input.num_workers = 0
  it = input_pipeline.create_iterator(cfg, split="train")
  res = int(config.input.resolution)
  exps, gazes, counts = [], [], np.zeros([res, res, regions.NUM_REGIONS], np.int64)
  labels_fn = jax.jit(lambda lm: jax.nn.one_hot(regions.region_labels(lm, res),
                                                regions.NUM_REGIONS, dtype=jnp.int32))
  for _ in range(max(1, int(num_batches))):
    b = next(it)
    valid = np.asarray(b["mask"], bool)
    exps.append(np.asarray(b["expression"])[valid])
    gazes.append(np.asarray(b["gaze"])[valid])
    counts += np.asarray(labels_fn(b["landmarks"][valid])).sum(0)
  e, g = np.concatenate(exps), np.concatenate(gazes)
  return {"exp_mean": e.mean(0).astype(np.float32),
          "exp_var": np.float32(max(e.var(0).sum(), 1e-8)),
          "gaze_mean": g.mean(0).astype(np.float32),
          "gaze_var": np.float32(max(g.var(0).sum(), 1e-8)),
          "prior": np.argmax(counts, -1).astype(np.int32)}


def _flat(batch):
  """frames -> images [N, H, W, 3], e [N, 64], g [N, 2], landmarks [N, 478, 2], weights [N]."""
  fr = batch["frames"]
  n = fr.shape[0] * fr.shape[1]
  return (fr.reshape((n,) + fr.shape[2:]), batch["expression"].reshape(n, -1),
          batch["gaze"].reshape(n, -1), batch["landmarks"].reshape(n, 478, -1),
          batch["mask"].reshape(n).astype(jnp.float32))


def _wmean(x, w):
  return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def mean_iou(pred, labels, weights, num_regions: int = regions.NUM_REGIONS):
  """Mean over the regions present (in `pred` or `labels`) of IoU, pixels of frames weighted by
  `weights [N]`. pred, labels: `[N, H, W]` int. Returns a float32 scalar in [0, 1]."""
  w = weights[:, None, None]
  ious, present = [], []
  for r in range(num_regions):
    p, l = pred == r, labels == r
    inter = jnp.sum((p & l) * w)
    union = jnp.sum((p | l) * w)
    ious.append(inter / jnp.maximum(union, 1.0))
    present.append((union > 0).astype(jnp.float32))
  ious, present = jnp.stack(ious), jnp.stack(present)
  return jnp.sum(ious * present) / jnp.maximum(jnp.sum(present), 1.0)


def losses(out, batch, loss_cfg, stats) -> dict:
  """`{"loss_exp", "loss_gaze", "loss_pars"}` (module docstring), each weighted by its λ."""
  _, e, g, lm, w = _flat(batch)
  res = out["parsing"].shape[1]
  labels = regions.region_labels(lm, res)
  se_e = jnp.sum((out["expression"] - e) ** 2, -1) / stats["exp_var"]
  se_g = jnp.sum((out["gaze"] - g) ** 2, -1) / stats["gaze_var"]
  ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(out["parsing"], labels), (1, 2))
  return {"loss_exp": loss_cfg.exp * _wmean(se_e, w),
          "loss_gaze": loss_cfg.gaze * _wmean(se_g, w),
          "loss_pars": loss_cfg.pars * _wmean(ce, w)}


def metrics(out, batch, stats) -> dict:
  """Eval metrics of the three heads against the training statistics (module docstring)."""
  _, e, g, lm, w = _flat(batch)
  res = out["parsing"].shape[1]
  labels = regions.region_labels(lm, res)
  se = lambda a, b: _wmean(jnp.sum((a - b) ** 2, -1), w)
  exp_mse, exp_mse_mean = se(out["expression"], e), se(stats["exp_mean"][None], e)
  gaze_mse, gaze_mse_mean = se(out["gaze"], g), se(stats["gaze_mean"][None], g)
  pred = jnp.argmax(out["parsing"], -1)
  prior = jnp.broadcast_to(stats["prior"], labels.shape)
  return {"exp_mse": exp_mse, "exp_mse_mean": exp_mse_mean,
          "exp_ratio": exp_mse / jnp.maximum(exp_mse_mean, 1e-12),
          "gaze_mse": gaze_mse, "gaze_mse_mean": gaze_mse_mean,
          "gaze_ratio": gaze_mse / jnp.maximum(gaze_mse_mean, 1e-12),
          "pars_miou": mean_iou(pred, labels, w), "pars_miou_prior": mean_iou(prior, labels, w),
          "pars_acc": _wmean(jnp.mean((pred == labels).astype(jnp.float32), (1, 2)), w)}


def get_task(config, *, mesh) -> Task:
  """The gohd_face_analysis stage (module docstring).

  Raises:
    ValueError: the shards lack the expression coefficients (the input pipeline names the
      command that adds them), or the resolution is not divisible by 2^len(model.widths).
  """
  del mesh
  net = fa_models.from_config(config.model, config.dtype)
  res = int(config.input.resolution)
  stats = {k: jnp.asarray(v) for k, v in
           baseline_stats(config, int(config.get("stats_batches", 8))).items()}

  def init(rng, batch):
    return fa_models.init(net, rng, res)

  def loss(params, batch, rng, frozen, step):
    del rng, step
    out = fa_models.apply(net, params, _flat(batch)[0])
    terms = losses(out, batch, config.loss, frozen["stats"])
    return sum(terms.values()), terms

  def evaluate(params, batch, frozen):
    out = fa_models.apply(net, params, _flat(batch)[0])
    return dict(losses(out, batch, config.loss, frozen["stats"]),
                **metrics(out, batch, frozen["stats"]))

  def infer(params, frozen, inputs):
    """`images [B, H, W, 3]` in [-1, 1] -> {"expression", "gaze", "parsing"} (module doc)."""
    del frozen
    return fa_models.apply(net, params, inputs["images"])

  def infer_example():
    return {"images": np.zeros([1, res, res, 3], np.float32)}

  return Task(init=init, loss=loss, frozen={"stats": stats}, evaluate=evaluate, infer=infer,
              infer_example=infer_example)
