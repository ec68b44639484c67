"""Stage `pctalk_stitching`: LivePortrait's second training stage, the stitching and eye / lip
retargeting MLPs (`models.pctalk.stitching.StitchingRetargeting`) trained with the renderer of
`pctalk_renderer` frozen (`config.init_from.renderer` = its `<workdir>/params`; PC-Talk freezes
all of them, section 3.1).

Every batch holds a source frame I_s and driving frames I_d of one clip. The frozen motion
extractor gives K_s (eq. 1 of I_s) and the expression deformations δ_s, δ_d. The retargeting
target is the source's head with the driving frame's expression,

    K_tgt = s_s (K_c R_sᵀ + δ_d) + t_s

whose lip-open ratio r^lip = `keypoints.keypoint_lip_ratio(K_tgt)` and mean eye-open ratio
r^eye (`keypoint_eye_ratio`) are the conditions:

  L_lip    = mean |K_s + Δ_lip(K_s, r_s^lip, r^lip) − K_tgt|       (all keypoints, keypoint units)
  L_eye    = mean |K_s + Δ_eye(K_s, r_s^eye, r^eye) − K_tgt|
  L_stitch = mean over pixels outside the source's face oval of |Î − I_s|, Î rendered from K_s
             to stitch(K_s, K_x), K_x the source's K_c moved by another clip's frame of the batch
             (cross-identity, as LivePortrait trains stitching), + λ_reg mean |stitch(K_s, K_x)
             − K_x|

so Δ_lip regresses the change of the whole face that goes with a lip-open ratio (jaxtalk's
keypoint-space supervision: LivePortrait measures the ratios on the rendered image with a
landmark detector and adds an image-consistency term; with the lip and eye keypoints tied to the
landmarks by the landmark-guided loss the keypoints' ratios are those landmarks' ratios), and
asking for the source's own ratio changes nothing by construction (`StitchingRetargeting`).

λs (`config.loss`): lip 1, eye 1, stitch 1, stitch_reg 0.5 (jaxtalk's; LivePortrait gives none).

Eval (held-out batches): "lip_ratio_err" |r(K_s + Δ_lip) − r^lip| and "lip_ratio_err_none" (no
retargeting: |r_s − r^lip|), the same for the eyes, "stitch_l1" / "stitch_l1_none" (outside-face
L1 with / without stitching), the loss terms.

`infer` (export): {"kp_source" [B, K, 3], "kp_driving" [B, K, 3], "lip_source" [B],
"lip_ratio" [B], "eye_source" [B, 2], "eye_ratio" [B]} -> {"kp_driving"}: the stitched driving
keypoints plus both retargeting Δs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtalk.core import checkpointing
from jaxtalk.features import regions
from jaxtalk.models.pctalk import keypoints as kp_lib
from jaxtalk.models.pctalk import renderer as renderer_lib
from jaxtalk.models.pctalk import stitching as stitching_lib
from jaxtalk.tasks import Task

BATCH_KEYS = ("frames", "source", "source_landmarks", "mask")


def load_renderer(config):
  """`(Renderer, params, renderer config)` of the frozen `pctalk_renderer` stage named by
  `config.init_from.renderer`.

  Raises:
    ValueError: the path is empty or unreadable (naming the config field).
  """
  path = config.init_from.get("renderer", "")
  if not path:
    raise ValueError(f"{config.task}: config.init_from.renderer is empty; set it to the "
                     "pctalk_renderer stage's `<workdir>/params` (config arg renderer=PATH)")
  cfg, params = checkpointing.load_stage(path, what="init_from.renderer")
  cfg = ml_collections.ConfigDict(cfg)
  return renderer_lib.renderer_from_config(cfg.model, config.dtype), params, cfg


def stitching_from_config(renderer_model_cfg) -> stitching_lib.StitchingRetargeting:
  """The MLPs at the renderer's keypoint count and `stitching_hidden_scale`."""
  return stitching_lib.StitchingRetargeting(
      int(renderer_model_cfg.num_keypoints),
      int(renderer_model_cfg.get("stitching_hidden_scale", 1)))


def retarget_target(ms, md):
  """K_s and K_tgt `[N, K, 3]` (module docstring) of source / driving motion dicts."""
  a = ms["angles"]
  rot = kp_lib.rotation_matrix(a[:, 0], a[:, 1], a[:, 2])
  k_s = renderer_lib.keypoints_of(ms)
  k_tgt = kp_lib.transform_keypoints(ms["canonical"], rot, ms["translation"], ms["scale"],
                                     md["delta"])
  return k_s, k_tgt


def _mean_eye(kp):
  return jnp.mean(kp_lib.keypoint_eye_ratio(kp), -1)


class StitchingStage:
  """Frozen renderer, the MLPs and the loss terms (module docstring)."""

  def __init__(self, config):
    self.config = config
    self.renderer, renderer_params, rcfg = load_renderer(config)
    if int(rcfg.model.image_size) != int(config.input.resolution):
      raise ValueError(f"{config.task}: input.resolution={config.input.resolution} differs from "
                       f"the renderer's image_size={rcfg.model.image_size}")
    self.frozen = {"renderer": renderer_params}
    self.model = stitching_from_config(rcfg.model)
    self.num_keypoints = int(rcfg.model.num_keypoints)

  def _apply(self, params, method, *args):
    return self.model.apply({"params": params}, *args, method=method)

  def motions(self, frozen, batch):
    """Frozen F / M outputs: source volume and motion, driving motion, cross-identity motion."""
    rp = frozen["renderer"]
    drive = batch["frames"][:, 0]
    volume, ms = self.renderer.apply({"params": rp}, batch["source"],
                                     method=renderer_lib.Renderer.extract)
    md = self.renderer.apply({"params": rp}, drive, method=renderer_lib.Renderer.motion)
    return jax.lax.stop_gradient((volume, ms, md))

  def terms(self, params, batch, frozen):
    lc = self.config.loss
    volume, ms, md = self.motions(frozen, batch)
    k_s, k_tgt = retarget_target(ms, md)
    r_lip, r_lip_s = kp_lib.keypoint_lip_ratio(k_tgt), kp_lib.keypoint_lip_ratio(k_s)
    r_eye, r_eye_s = _mean_eye(k_tgt), kp_lib.keypoint_eye_ratio(k_s)
    k_lip = k_s + self._apply(params, stitching_lib.StitchingRetargeting.lip, k_s, r_lip_s, r_lip)
    k_eye = k_s + self._apply(params, stitching_lib.StitchingRetargeting.eye, k_s, r_eye_s, r_eye)
    # cross identity: the source's K_c moved by the next sample's driving frame.
    mx = jax.tree.map(lambda x: jnp.roll(x, 1, axis=0), md)
    k_x = renderer_lib.keypoints_of(mx, canonical=ms["canonical"])
    k_st = self._apply(params, stitching_lib.StitchingRetargeting.stitch, k_s, k_x)
    rp = frozen["renderer"]
    pred, _ = self.renderer.apply({"params": rp}, volume, k_s, k_st,
                                  method=renderer_lib.Renderer.render)
    res = batch["source"].shape[1]
    face = regions.polygon_mask(batch["source_landmarks"][:, list(regions.FACE_OVAL), :2], res)
    outside = 1.0 - face.astype(jnp.float32)[..., None]

    def out_l1(img):
      return jnp.sum(jnp.abs(img - batch["source"]) * outside) / jnp.maximum(
          3.0 * jnp.sum(outside), 1.0)
    t = {"loss_lip": lc.lip * jnp.mean(jnp.abs(k_lip - k_tgt)),
         "loss_eye": lc.eye * jnp.mean(jnp.abs(k_eye - k_tgt)),
         "loss_stitch": lc.stitch * out_l1(pred),
         "loss_stitch_reg": lc.stitch_reg * jnp.mean(jnp.abs(k_st - k_x))}
    extra = dict(k_s=k_s, k_x=k_x, r_lip=r_lip, r_lip_s=r_lip_s, k_lip=k_lip, k_eye=k_eye,
                 r_eye=r_eye, r_eye_s=r_eye_s, volume=volume, pred=pred, out_l1=out_l1)
    return t, extra

  def evaluate(self, params, batch, frozen):
    t, x = self.terms(params, batch, frozen)
    plain, _ = self.renderer.apply({"params": frozen["renderer"]}, x["volume"], x["k_s"],
                                   x["k_x"], method=renderer_lib.Renderer.render)
    out = dict(t)
    out["lip_ratio_err"] = jnp.mean(jnp.abs(kp_lib.keypoint_lip_ratio(x["k_lip"]) - x["r_lip"]))
    out["lip_ratio_err_none"] = jnp.mean(jnp.abs(x["r_lip_s"] - x["r_lip"]))
    out["eye_ratio_err"] = jnp.mean(jnp.abs(_mean_eye(x["k_eye"]) - x["r_eye"]))
    out["eye_ratio_err_none"] = jnp.mean(jnp.abs(jnp.mean(x["r_eye_s"], -1) - x["r_eye"]))
    out["stitch_l1"], out["stitch_l1_none"] = x["out_l1"](x["pred"]), x["out_l1"](plain)
    out.update({"image_stitched": x["pred"][:2], "image_unstitched": plain[:2],
                "image_source": batch["source"][:2]})
    return out

  def infer(self, params, inputs):
    cls = stitching_lib.StitchingRetargeting
    k_s = inputs["kp_source"].astype(jnp.float32)
    k = self._apply(params, cls.stitch, k_s, inputs["kp_driving"].astype(jnp.float32))
    k = k + self._apply(params, cls.lip, k_s, inputs["lip_source"], inputs["lip_ratio"])
    k = k + self._apply(params, cls.eye, k_s, inputs["eye_source"], inputs["eye_ratio"])
    return {"kp_driving": k}


def example_inputs(num_keypoints: int, b: int = 1) -> dict:
  """Zero-motion `infer` inputs (export)."""
  kp = np.zeros((b, num_keypoints, 3), np.float32)
  return {"kp_source": kp, "kp_driving": kp, "lip_source": np.zeros((b,), np.float32),
          "lip_ratio": np.zeros((b,), np.float32), "eye_source": np.zeros((b, 2), np.float32),
          "eye_ratio": np.zeros((b,), np.float32)}


def get_task(config, *, mesh) -> Task:
  """The pctalk_stitching stage (module docstring).

  Raises:
    ValueError: `init_from.renderer` empty or unreadable, or the renderer's image size differs
      from `input.resolution`.
  """
  del mesh
  st = StitchingStage(config)

  def init(rng, batch):
    del batch
    k = st.num_keypoints
    kp, r = jnp.zeros((1, k, 3)), jnp.zeros((1,))
    return st.model.init(rng, kp, kp, r, r, jnp.zeros((1, 2)), r)["params"]

  def loss(params, batch, rng, frozen, step):
    del rng, step
    t, _ = st.terms(params, batch, frozen)
    return sum(t.values()), dict(t)

  def infer(params, frozen, inputs):
    del frozen
    return st.infer(params, inputs)

  return Task(init=init, loss=loss, frozen=st.frozen, evaluate=st.evaluate, infer=infer,
              infer_example=lambda: example_inputs(st.num_keypoints))
