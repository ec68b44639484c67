"""Stage `enhancer`: train PoseTalk's Portrait Enhancer with CoarseNet and RefineNet frozen.

Frozen inputs: `config.init_from.coarse` and `config.init_from.refine` (each `<workdir>/params`
of its stage; architectures from the stages' config.json). The enhancer maps (source frame,
stage-2 frame) to the final frame and is trained with the multi-scale perceptual loss only
(PoseTalk supplementary A.3, stage 3), plus L1 terms in the tiny config.

`render(...)` here is the whole trained generator (used by `jaxtalk generate`, export and the
benchmark): (source, pose, gaze, mel, source_pose) -> frames.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxtalk.tasks import Task
from jaxtalk.tasks.posetalk import coarse as coarse_task
from jaxtalk.tasks.posetalk import refine as refine_task


def load_refine(config):
  path = config.init_from.get("refine", "")
  if not path:
    raise ValueError(f"{config.task}: config.init_from.refine is empty; set it to the refine "
                     "stage's `<workdir>/params` (or pass `refine=PATH` in the config args)")
  params, kwargs = coarse_task.load_frozen_stage(path, "refine", config)
  return coarse_task.build("refine", kwargs, config.dtype), params


def make_render(coarse_model, refine_model, enhancer_model):
  """Returns `render(params, inputs, mask=None) -> (frames, aux)` of the three-stage generator.

  `params` = {"coarse": ..., "refine": ..., "enhancer": ...} (enhancer may be None: stage 2
  output). `inputs` holds source `[B, H, W, 3]`, pose `[B, T, 6]`, gaze `[B, T, 2]`,
  mel `[B, T, 16, 80]`, source_pose `[B, 6]`. Frames are float32 `[B, T, H, W, 3]` in [-1, 1].
  """

  def render(params, inputs, mask=None):
    args = coarse_task.render_inputs(inputs)
    coarse, caux = coarse_model.apply({"params": params["coarse"]}, *args, mask=mask)
    refined, raux = refine_model.apply({"params": params["refine"]}, coarse, caux["flow"],
                                       *args[1:], mask=mask)
    aux = dict(coarse=coarse, refined=refined, flow=raux["flow"], coarse_flow=caux["flow"])
    if enhancer_model is None or params.get("enhancer") is None:
      return refined, aux
    out, _ = enhancer_model.apply({"params": params["enhancer"]}, inputs["source"], refined)
    return out, aux

  return render


def load_generator(coarse_params: str, refine_params: str, enhancer_params: str = "", *,
                   dtype="float32"):
  """Loads the trained generator for inference: returns `(render, params)`.

  Args:
    coarse_params / refine_params / enhancer_params: the stages' `<workdir>/params` (each
      next to the `config.json` train.py wrote); enhancer may be "" (stage-2 output).
    dtype: compute dtype.

  Returns:
    `render(params, inputs, mask=None) -> (frames, aux)` (see `make_render`) and its params.
  """
  empty = ml_collections.ConfigDict({"model": {"coarse": {}, "refine": {}, "enhancer": {}}})
  models, params = {}, {}
  for name, path in (("coarse", coarse_params), ("refine", refine_params),
                     ("enhancer", enhancer_params)):
    if not path:
      models[name], params[name] = None, None
      continue
    params[name], kwargs = coarse_task.load_frozen_stage(path, name, empty)
    models[name] = coarse_task.build(name, kwargs, dtype)
  if models["coarse"] is None or models["refine"] is None:
    raise ValueError("load_generator: coarse and refine params are required")
  return make_render(models["coarse"], models["refine"], models["enhancer"]), params


def get_task(config, *, mesh) -> Task:
  """The enhancer stage (see module docstring)."""
  del mesh
  coarse_model, coarse_params = refine_task.load_coarse(config)
  refine_model, refine_params = load_refine(config)
  model = coarse_task.build("enhancer", coarse_task.model_kwargs(config, "enhancer"),
                            config.dtype)
  frozen, loss_kw = coarse_task.common_frozen(config)
  frozen.update(coarse=coarse_params, refine=refine_params)
  stage2 = make_render(coarse_model, refine_model, None)

  def forward(params, frozen_, inputs, mask):
    refined, aux = stage2({"coarse": frozen_["coarse"], "refine": frozen_["refine"]}, inputs,
                          mask)
    refined = jax.lax.stop_gradient(refined)
    out, _ = model.apply({"params": params}, inputs["source"], refined)
    return out, dict(aux, refined=refined)

  def init(rng, batch):
    src = coarse_task.init_inputs(batch)[0]
    t = batch["pose"].shape[1]
    return model.init(coarse_task.fast_key(rng), src,
                      jnp.zeros((1, t) + src.shape[1:], jnp.float32))["params"]

  def loss(params, batch, rng, frozen_, step):
    del rng, step
    pred, _ = forward(params, frozen_, batch, batch.get("mask"))
    terms = coarse_task.reconstruction_terms(pred, batch, frozen_, config=config, **loss_kw)
    return sum(terms.values()), terms

  def evaluate(params, batch, frozen_):
    pred, aux = forward(params, frozen_, batch, batch.get("mask"))
    m = coarse_task.frame_metrics(pred, batch, config)
    for name in ("refined", "coarse"):
      sm = coarse_task.frame_metrics(aux[name], batch, config)
      m.update({f"{k}_{name}": v for k, v in sm.items() if not k.endswith("_source")})
    m.update(coarse_task.stage_losses(pred, aux["refined"], batch, frozen_, config=config,
                                      loss_kw=loss_kw))
    return dict(m, **coarse_task.images_for_eval(pred, batch))

  def infer(params, frozen_, inputs):
    out, aux = forward(params, frozen_, inputs, None)
    return {"frames": out, "flow": aux["flow"]}

  def infer_example():
    return coarse_task.example_inputs(int(config.input.window), int(config.input.resolution))

  return Task(init=init, loss=loss, frozen=frozen, evaluate=evaluate, infer=infer,
              infer_example=infer_example)
