"""Stage `refine`: train PoseTalk's RefineNet on top of the frozen CoarseNet (eq. 10).

The frozen CoarseNet (`config.init_from.coarse` = `<coarse workdir>/params`; its architecture
is read from `<coarse workdir>/config.json`) renders coarse frames and flows; RefineNet refines
the motion from 8x8 to the full resolution (eqs. 4-5) and is trained with

  L_refine = w_sync L_sync + 0.5 L_perc(I^, I) + 0.5 L_perc(I^mouth, I^mouth) [+ L1 terms]

(eq. 10; the L1 terms are jaxtalk's additions for tiny runs, 0 in the paper config). L_sync is
computed through the frozen lip-sync expert `config.init_from.syncnet`; when that is empty the
sync weight is 0 and a warning says so once (`jaxtalk/tasks/posetalk/coarse.py` has the shared
terms).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxtalk.tasks import Task
from jaxtalk.tasks.posetalk import coarse as coarse_task


def get_task(config, *, mesh) -> Task:
  """The refine stage (see module docstring)."""
  del mesh
  coarse_model, coarse_params = coarse_task.load_frozen(config, "coarse")
  model = coarse_task.build("refine", coarse_task.model_kwargs(config, "refine"), config.dtype)
  frozen, loss_kw = coarse_task.common_frozen(config)
  frozen["coarse"] = coarse_params

  def coarse_forward(cparams, inputs, mask):
    frames, aux = coarse_model.apply({"params": cparams}, *coarse_task.render_inputs(inputs),
                                     mask=mask)
    return jax.lax.stop_gradient(frames), jax.lax.stop_gradient(aux["flow"])

  def forward(params, cparams, inputs, mask, train):
    coarse, cflow = coarse_forward(cparams, inputs, mask)
    src_motion = coarse_task.render_inputs(inputs)[1:]
    out, aux = model.apply({"params": params}, coarse, cflow, *src_motion, mask=mask,
                           train=train)
    return out, dict(aux, coarse=coarse)

  def init(rng, batch):
    src, pose, gaze, mel, sp = coarse_task.init_inputs(batch)
    t = pose.shape[1]
    h, w = src.shape[1:3]
    return model.init(coarse_task.fast_key(rng), jnp.zeros((1, t, h, w, 3)),
                      jnp.zeros((1, t, h, w, 2)), pose, gaze, mel, sp)["params"]

  def loss(params, batch, rng, frozen_, step):
    del rng, step
    pred, aux = forward(params, frozen_["coarse"], batch, batch.get("mask"), True)
    terms = coarse_task.reconstruction_terms(pred, batch, frozen_, config=config, **loss_kw)
    total = sum(terms.values())
    return total, dict(terms, residual_flow_abs=jnp.mean(jnp.abs(aux["residual_flow"])))

  def evaluate(params, batch, frozen_):
    pred, aux = forward(params, frozen_["coarse"], batch, batch.get("mask"), False)
    m = coarse_task.frame_metrics(pred, batch, config)
    cm = coarse_task.frame_metrics(aux["coarse"], batch, config)
    m.update({f"{k}_coarse": v for k, v in cm.items() if not k.endswith("_source")})
    m.update(coarse_task.stage_losses(pred, aux["coarse"], batch, frozen_, config=config,
                                      loss_kw=loss_kw))
    return dict(m, **coarse_task.images_for_eval(pred, batch))

  def infer(params, frozen_, inputs):
    out, aux = forward(params, frozen_["coarse"], inputs, None, False)
    return {"frames": out, "flow": aux["flow"], "coarse": aux["coarse"]}

  def infer_example():
    return coarse_task.example_inputs(int(config.input.window), int(config.input.resolution))

  return Task(init=init, loss=loss, frozen=frozen, evaluate=evaluate, infer=infer,
              infer_example=infer_example)
