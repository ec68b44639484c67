"""Stage `enhancer`: train PoseTalk's Portrait Enhancer with CoarseNet and RefineNet frozen.

Frozen inputs: `config.init_from.coarse` and `config.init_from.refine` (each `<workdir>/params`
of its stage; architectures from the stages' config.json). The enhancer maps (source frame,
stage-2 frame) to the final frame and is trained with the multi-scale perceptual loss only
(PoseTalk supplementary A.3, stage 3), plus L1 terms in the tiny config.

The whole trained generator (CoarseNet -> RefineNet -> Enhancer) used by this stage, export,
`jaxtalk generate` and the benchmark is `jaxtalk.renderers.posetalk.make_render`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtalk.tasks import Task
from jaxtalk.tasks.posetalk import coarse as coarse_task
from jaxtalk.renderers import posetalk as posetalk_renderer


def get_task(config, *, mesh) -> Task:
  """The enhancer stage (see module docstring)."""
  del mesh
  coarse_model, coarse_params = coarse_task.load_frozen(config, "coarse")
  refine_model, refine_params = coarse_task.load_frozen(config, "refine")
  model = coarse_task.build("enhancer", coarse_task.model_kwargs(config, "enhancer"),
                            config.dtype)
  frozen, loss_kw = coarse_task.common_frozen(config)
  frozen.update(coarse=coarse_params, refine=refine_params)
  stage2 = posetalk_renderer.make_render(coarse_model, refine_model, None)

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
