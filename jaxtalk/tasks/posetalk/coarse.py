"""Stage `coarse`: train PoseTalk's CoarseNet (stage 1 of the video generator, eq. 9).

Per batch: the source frame, the window's poses/gaze/audio and the source pose go through
CoarseNet; the coarse frames are compared with the real frames by

  L_coarse = w_sync L_sync + w_p L_perc(I^, I) + w_pm L_perc(I^mouth, I^mouth)
             + w_l1 L1 + w_ml1 L1^mouth

(PoseTalk eq. 9 with w_sync = 1, w_p = w_pm = 0.5; the L1 terms are jaxtalk additions that speed
up the tiny runs, set to 0 for the paper's loss). L_perc is eq. 6 (multi-scale, lambda_p = 10) on
ImageNet VGG19 when `config.vgg_weights` names converted weights, else on the documented random-
feature substitute (`jaxtalk.losses`). L_sync (eq. 8) runs through the frozen lip-sync expert of
`config.init_from.syncnet`; with no expert given the sync weight is 0 (logged once).

Mouth crops use the batch's `mouth_box` expanded by `config.loss.mouth_box_scale` (square), cut by
differentiable bilinear resampling. The sync expert sees what it was trained on: the aligned face
crops (5-frame windows, lower half) resampled to its input size; the crops are already aligned by
preprocessing, so no further alignment warp is needed.

This module also holds the helpers the `refine` and `enhancer` stages share (model building from
config, loading frozen stages with their own config.json, the reconstruction/sync loss terms and
the evaluation metrics).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtalk.core import checkpointing
from jaxtalk.core import logging_utils
from jaxtalk import losses
from jaxtalk.evaluators import image as image_eval
from jaxtalk.models.posetalk import coarse_net as coarse_lib
from jaxtalk.models.posetalk import enhancer as enhancer_lib
from jaxtalk.models.posetalk import refine_net as refine_lib
from jaxtalk.tasks import Task

RENDER_KEYS = ("source", "pose", "gaze", "mel", "source_pose")
BATCH_KEYS = ("frames", "source", "source_pose", "pose", "gaze", "mel", "mouth_box", "mask")
_warn_once = logging_utils.announce_once


# ---------------------------------------------------------------------------------------------
# Models and frozen stages.
# ---------------------------------------------------------------------------------------------
def _tuples(d: Any) -> dict:
  out = {}
  for k, v in dict(d).items():
    out[k] = tuple(v) if isinstance(v, (list, tuple)) else v
  return out


def model_kwargs(config, name: str) -> dict:
  """Attributes of network `name` ("coarse", "refine", "enhancer") from `config.model.<name>`."""
  return _tuples(config.model[name])


def build(name: str, kwargs: dict, dtype) -> Any:
  """Network `name` ("coarse", "refine", "enhancer") by its model file's `from_config`."""
  lib = {"coarse": coarse_lib, "refine": refine_lib, "enhancer": enhancer_lib}[name]
  return lib.from_config(kwargs, dtype)


def load_frozen_stage(path: str, name: str, config) -> tuple[dict, dict]:
  """Loads a trained network `name` from `path` (= `<workdir of its stage>/params`).

  The network's attributes come from `<workdir>/config.json` (`model.<name>`) written by
  train.py, so a later stage rebuilds exactly what was trained; when that file is absent they
  come from this stage's `config.model.<name>`.

  Returns:
    `(params, kwargs)`.

  Raises:
    ValueError: naming the path when the params cannot be loaded.
  """
  saved, params = checkpointing.load_stage(path, what=f"init_from.{name}",
                                           config_required=False)
  kwargs = model_kwargs(config, name)
  if "model" in saved and name in saved["model"]:
    kwargs = _tuples(saved["model"][name])
  if "params" in params and len(params) == 1:
    params = params["params"]
  return params, kwargs


def load_frozen(config, name: str):
  """`(model, params)` of the frozen earlier stage `name` ("coarse" or "refine") named by
  `config.init_from.<name>`.

  Raises:
    ValueError: the path is empty (naming the config field and the config argument to set).
  """
  path = config.init_from.get(name, "")
  if not path:
    raise ValueError(f"{config.task}: config.init_from.{name} is empty; set it to the {name} "
                     f"stage's `<workdir>/params` (or pass `{name}=PATH` in the config args)")
  params, kwargs = load_frozen_stage(path, name, config)
  return build(name, kwargs, config.dtype), params


def load_syncnet(path: str):
  """Loads the frozen lip-sync expert: returns `(model, params)` or `(None, None)` if no path.

  Raises:
    ValueError: params or the expert's config.json cannot be read, naming the path.
  """
  if not path:
    return None, None
  from jaxtalk.tasks import syncnet as syncnet_task  # pylint: disable=g-import-not-at-top
  scfg, params = checkpointing.load_stage(path, what="init_from.syncnet")
  return syncnet_task.build_model(ml_collections.ConfigDict(scfg)), params


def perceptual_net(config):
  return losses.PerceptualNet.create(config.get("vgg_weights", "") or None)


# ---------------------------------------------------------------------------------------------
# Loss terms and metrics.
# ---------------------------------------------------------------------------------------------
def sync_term(frames, mel, mask, syncnet, params, image_size: int = 0) -> jax.Array:
  """Eq. 8 over every 5-frame window of `frames` `[B, T, H, W, 3]` (T >= 5) with its audio.

  Delegates to `syncnet.expert_sync_loss`: the expert (built by `models.syncnet.from_config`)
  carries its image size and face box and resamples the aligned crops exactly as in its
  training; `image_size` is only used for a bare expert without them (0: leave as is).
  """
  from jaxtalk.models import syncnet as syncnet_lib  # pylint: disable=g-import-not-at-top
  kw = {}
  if image_size and not getattr(syncnet, "image_size", None):
    kw["image_size"] = int(image_size)
  loss, _ = syncnet_lib.expert_sync_loss(syncnet, params, frames, mel, mask=mask, **kw)
  return loss


def reconstruction_terms(pred, batch, frozen, *, config, pnet, syncnet=None,
                         sync_size: int = 0) -> dict:
  """Weighted loss terms `{"loss_<name>": value}` of `pred` `[B, T, H, W, 3]` vs `batch`.

  `frozen` holds "perceptual" params (and "syncnet" params when `syncnet` is given, whose input
  size is `sync_size`). Zero-weight terms are skipped.
  """
  lc = config.loss
  target = batch["frames"]
  mask = batch.get("mask")
  boxes = batch["mouth_box"]
  out = {}
  ms, mscale = int(lc.mouth_size), float(lc.mouth_box_scale)
  if lc.l1:
    out["loss_l1"] = lc.l1 * losses.l1_loss(pred, target, mask)
  if lc.mouth_l1:
    out["loss_mouth_l1"] = lc.mouth_l1 * losses.mouth_l1(
        pred, target, boxes, size=ms, box_scale=mscale, square=True, mask=mask)
  if lc.perceptual:
    out["loss_perceptual"] = lc.perceptual * losses.perceptual_loss(
        pred, target, net=pnet, params=frozen["perceptual"],
        scales=tuple(lc.perceptual_scales), mask=mask)
  if lc.mouth_perceptual:
    out["loss_mouth_perceptual"] = lc.mouth_perceptual * losses.mouth_perceptual_loss(
        pred, target, boxes, net=pnet, params=frozen["perceptual"], size=ms, box_scale=mscale,
        square=True, scales=(1.0,), mask=mask)
  if lc.sync and syncnet is not None:
    out["loss_sync"] = lc.sync * sync_term(pred, batch["mel"], mask, syncnet, frozen["syncnet"],
                                           sync_size)
  return out


def frame_metrics(pred, batch, config) -> dict:
  """Eval metrics of `pred` `[B, T, H, W, 3]` and of the repeat-the-source baseline
  (`evaluators.image.frame_metrics` with the stage's mouth crop)."""
  return image_eval.frame_metrics(pred, batch["frames"], batch["source"], batch["mouth_box"],
                                  batch.get("mask"), mouth_size=int(config.loss.mouth_size),
                                  box_scale=float(config.loss.mouth_box_scale))


def stage_losses(pred, stage_input, batch, frozen, *, config, loss_kw) -> dict:
  """Eval: the stage loss of its output (`loss`) and of its input frames (`loss_input`: what
  the untrained stage returns, e.g. the source for CoarseNet), on the same held-out batch."""
  out = reconstruction_terms(pred, batch, frozen, config=config, **loss_kw)
  inp = reconstruction_terms(stage_input, batch, frozen, config=config, **loss_kw)
  return {"loss": sum(out.values()), "loss_input": sum(inp.values())}


def render_inputs(batch) -> tuple:
  return tuple(batch[k] for k in RENDER_KEYS)


def init_inputs(batch) -> tuple:
  """Batch-size-1 zero inputs with the batch's shapes (params do not depend on B)."""
  return tuple(jnp.zeros((1,) + batch[k].shape[1:], jnp.float32) for k in RENDER_KEYS)


def fast_key(rng):
  """A fresh `rbg` key derived from `rng`: its random-bit kernels compile in a fraction of the
  time threefry's take on CPU (seconds per initialiser here), which dominates init time."""
  seed = jax.random.randint(rng, (), 0, np.iinfo(np.int32).max, dtype=jnp.int32)
  return jax.random.key(seed, impl="rbg")


def common_frozen(config) -> tuple[dict, dict]:
  """Frozen perceptual features (+ the sync expert when `init_from.syncnet` is set).

  Returns:
    `(frozen, loss_kwargs)`: `frozen` {"perceptual": params[, "syncnet": params]} and the keyword
    arguments of `reconstruction_terms` (pnet, syncnet, sync_size).
  """
  pnet, pparams = perceptual_net(config)
  frozen = {"perceptual": pparams}
  sync_path = config.init_from.get("syncnet", "")
  syncnet, sparams = (None, None)
  sync_size = 0
  if config.loss.sync:
    syncnet, sparams = load_syncnet(sync_path)
  if syncnet is not None:
    frozen["syncnet"] = sparams
    sync_size = _syncnet_size(sync_path)
  elif config.loss.sync:
    _warn_once(f"{config.task}: config.loss.sync={config.loss.sync} but init_from.syncnet is "
               "empty: the lip-sync term (eq. 8) is disabled (weight 0).")
  return frozen, dict(pnet=pnet, syncnet=syncnet, sync_size=sync_size)


def _syncnet_size(path: str) -> int:
  return int(checkpointing.stage_config(path, what="init_from.syncnet")["model"]["image_size"])


def images_for_eval(pred, batch, n: int = 2) -> dict:
  """First frame of the first `n` examples: prediction, target, source."""
  return {"image_pred": pred[:n, 0], "image_target": batch["frames"][:n, 0],
          "image_source": batch["source"][:n]}


# ---------------------------------------------------------------------------------------------
# The stage.
# ---------------------------------------------------------------------------------------------
def get_task(config, *, mesh) -> Task:
  """The coarse stage (see module docstring)."""
  del mesh
  kwargs = model_kwargs(config, "coarse")
  model = build("coarse", kwargs, config.dtype)
  frozen, loss_kw = common_frozen(config)

  def init(rng, batch):
    return model.init(fast_key(rng), *init_inputs(batch))["params"]

  def forward(params, batch, train):
    return model.apply({"params": params}, *render_inputs(batch), mask=batch.get("mask"),
                       train=train)

  def loss(params, batch, rng, frozen_, step):
    del rng, step
    pred, aux = forward(params, batch, True)
    terms = reconstruction_terms(pred, batch, frozen_, config=config, **loss_kw)
    total = sum(terms.values())
    return total, dict(terms, flow_abs=jnp.mean(jnp.abs(aux["flow"])),
                       occlusion=jnp.mean(aux["occlusion"]))

  def evaluate(params, batch, frozen_):
    pred, _ = forward(params, batch, False)
    src = jnp.broadcast_to(batch["source"][:, None], pred.shape)
    return dict(frame_metrics(pred, batch, config), **images_for_eval(pred, batch),
                **stage_losses(pred, src, batch, frozen_, config=config, loss_kw=loss_kw))

  def infer(params, frozen_, inputs):
    del frozen_
    frames, aux = model.apply({"params": params}, *render_inputs(inputs))
    return {"frames": frames, "flow": aux["flow"]}

  def infer_example():
    t = int(config.input.window)
    r = int(config.input.resolution)
    return example_inputs(t, r)

  return Task(init=init, loss=loss, frozen=frozen, evaluate=evaluate, infer=infer,
              infer_example=infer_example)


def example_inputs(t: int, r: int, b: int = 1) -> dict:
  """Zero renderer inputs with batch `b`, `t` frames at `r` px (for export and benchmarks)."""
  return {"source": np.zeros((b, r, r, 3), np.float32), "pose": np.zeros((b, t, 6), np.float32),
          "gaze": np.zeros((b, t, 2), np.float32), "mel": np.zeros((b, t, 16, 80), np.float32),
          "source_pose": np.zeros((b, 6), np.float32)}
