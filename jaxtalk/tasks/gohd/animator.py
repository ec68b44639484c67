"""Stage `gohd_animator`: train GoHD's latent-navigation face animator (section 3.3, eq. 9;
supplementary B.1, eqs. 11-17; configs/gohd/animator.py).

Batch windows hold T = 2r + K frames; the K central frames t = r .. r+K-1 are rendered, each
from its full driving window q_{t-r:t+r} = p ⊕ e (`animator.driving_windows`, no border padding
inside the batch) and its gaze g_t, with the batch's `source` (another frame of the clip) as I^S.
Self-reenactment: the target is the real frame I^D_t. The generator loss is eq. 17,

  L = λ_rec L_rec + λ_perc L_perc + λ_exp L_exp + λ_gaze L_gaze + λ_pars L_pars + λ_gan L_GAN

  L_rec  (eq. 11)  mean |I − Î| ⊙ (1 + M_lip&eye)      M from the target's FaceMesh landmarks
                                                     (`features.regions.lip_eye_weight_mask`)
  L_perc (eq. 12)  Σ_scales Σ_layers mean |Φ(I) − Φ(Î)| ⊙ (1 + M), pooled to each map
                   (`losses.perceptual_loss(pixel_weights=...)`; VGG19 with `vgg_weights`, else
                   the documented random-feature substitute); scales 1 .. 1/8 (256 .. 32 px)
  L_exp  (eq. 13)  mean |Φ_exp(I) − Φ_exp(Î)|           } `pretrained.face_analysis`: a user's
  L_gaze (eq. 14)  mean |Φ_gaze(I) − Φ_gaze(Î)|         } DECA / L2CS / BiSeNet exports, or
  L_pars (eq. 15)  mean over pixels of −Σ_c softmax(Φ_pars(I))_c log softmax(Φ_pars(Î))_c
                   (pixel cross-entropy against the real frame's parsing)   } jaxtalk's trained
                                                                           } substitute
  L_GAN  (eq. 16)  mean softplus(−D(Î)) (non-saturating; `models.gohd.discriminator`)

Φ_exp / Φ_gaze / Φ_pars run on the real frames without gradient and on Î with gradient. With none
of `init_from.face_analysis`, `.exp_export`, `.gaze_export`, `.parsing_export` set, eqs. 13-15 are
off (announced once). From step `loss.gan_start` on, L_GAN enters the generator loss and the
discriminator trains (before it, its loss is multiplied by 0) on real frames vs stop-gradient Î:
mean softplus(−D(I)) + mean softplus(D(Î)).

Eval (held-out batches): "ssim", "l1", "mouth_l1" of Î and the same of the repeat-the-source
baseline ("*_source"; `evaluators.image.frame_metrics`), the loss terms, and
"codebook_orthogonality" = max |MᵀM − I|.

`infer` renders any driving input: {"source" [B, R, R, 3], "windows" [B, T, 2r+1, 70], "gaze"
[B, T, 2], "lam" [B, T]} -> {"frames" [B, T, R, R, 3]} (float32 in (-1, 1); pose and gaze
normalised with the dataset statistics, expression in the basis' units, as the batches).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk import losses
from jaxtalk.core import logging_utils
from jaxtalk.evaluators import image as image_eval
from jaxtalk.features import regions
from jaxtalk.models.gohd import animator as animator_lib
from jaxtalk.models.gohd import discriminator as disc_lib
from jaxtalk.pretrained import face_analysis as fa_lib
from jaxtalk.tasks import Task

BATCH_KEYS = ("frames", "source", "pose", "expression", "gaze", "landmarks", "mouth_box", "mask")
FACE_ANALYSIS_KEYS = (fa_lib.SUBSTITUTE_KEY,) + tuple(fa_lib.EXPORT_KEYS.values())


def window_length(model_cfg, render_frames: int) -> int:
  """T of the batch windows: 2r + K (r = `model_cfg.radius`, K rendered frames)."""
  return 2 * int(model_cfg.radius) + int(render_frames)


def rendered(batch, radius: int, num_render: int) -> dict:
  """The K = `num_render` central frames of a window of T = 2r + K frames and their inputs.

  Returns a dict with "source" `[B, H, W, 3]`, "windows" `[B, K, 2r+1, 70]` (pose ⊕ expression
  of frames t-r .. t+r, all inside the window), "gaze" `[B, K, 2]` and the targets' "frames",
  "landmarks", "mouth_box", "mask" (`[B, K, ...]`).

  Raises:
    ValueError: a window of another length than 2r + K.
  """
  t = batch["pose"].shape[1]
  if t != 2 * radius + num_render:
    raise ValueError(f"gohd_animator: batch windows of {t} frames; expected 2r + K = "
                     f"{2 * radius + num_render} (input.window = window_length(...))")
  sl = slice(radius, radius + num_render)
  coeffs = jnp.concatenate([batch["pose"], batch["expression"]], axis=-1).astype(jnp.float32)
  out = {"source": batch["source"],
         "windows": animator_lib.driving_windows(coeffs, radius)[:, sl],
         "gaze": batch["gaze"][:, sl].astype(jnp.float32)}
  out.update({k: batch[k][:, sl] for k in ("frames", "landmarks", "mouth_box", "mask")})
  return out


def _flat(x):
  return x.reshape((-1,) + x.shape[2:])


def _face_analysis(config):
  """The frozen Φ networks, or None when none is configured (announced once)."""
  node = config.init_from
  if not any(str(node.get(k, "") or "") for k in FACE_ANALYSIS_KEYS):
    logging_utils.announce_once(
        "gohd_animator:no_face_analysis",
        "gohd_animator: none of init_from.face_analysis / exp_export / gaze_export / "
        "parsing_export is set: L_exp, L_gaze and L_pars (eqs. 13-15) are off. Train "
        "configs/gohd/face_analysis.py and pass face_analysis=<its workdir>/params.")
    return None
  return fa_lib.load_face_analysis(config)


def pixel_cross_entropy(real_logits, fake_logits, weights) -> jax.Array:
  """Eq. 15's PCE: mean over pixels of −Σ_c softmax(real)_c log softmax(fake)_c, frames
  weighted by `weights [N]`. Logits `[N, H, W, R]`; the real side carries no gradient."""
  p = jax.nn.softmax(jax.lax.stop_gradient(real_logits).astype(jnp.float32), -1)
  ce = -jnp.sum(p * jax.nn.log_softmax(fake_logits.astype(jnp.float32), -1), -1)
  return _wmean(jnp.mean(ce, (1, 2)), weights)


def _wmean(per, w):
  return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


class AnimatorStage:
  """Networks, frozen params and the loss terms of the stage (module docstring)."""

  def __init__(self, config):
    self.config = config
    self.model = animator_lib.animator_from_config(config.model, config.dtype)
    self.disc = disc_lib.discriminator_from_config(config.model, config.dtype)
    self.radius = int(config.model.radius)
    self.num_render = int(config.render_frames)
    self.pnet, pparams = losses.PerceptualNet.create(config.get("vgg_weights", "") or None)
    self.fa = _face_analysis(config)
    self.frozen = {"perceptual": pparams}
    if self.fa is not None:
      self.frozen["face_analysis"] = self.fa.params

  def forward(self, params, ex, lam=1.0):
    return self.model.apply({"params": params}, ex["source"], ex["windows"], ex["gaze"], lam)

  def scores(self, dparams, frames):
    return self.disc.apply({"params": dparams}, _flat(frames))

  def recon_terms(self, pred, ex, frozen) -> dict:
    """λ-weighted L_rec, L_perc, L_exp, L_gaze, L_pars of `pred` `[B, K, H, W, 3]`."""
    lc = self.config.loss
    target, mask = ex["frames"], ex["mask"]
    res = target.shape[2]
    pw = 1.0 + regions.lip_eye_weight_mask(ex["landmarks"], res, lip_weight=lc.lip_weight,
                                           eye_weight=lc.eye_weight)            # [B, K, H, W]
    w = mask.astype(jnp.float32)
    err = jnp.mean(jnp.abs(pred - target.astype(jnp.float32)) * pw[..., None], (2, 3, 4))
    terms = {"loss_rec": lc.rec * _wmean(err, w),
             "loss_perc": lc.perc * losses.perceptual_loss(
                 pred, target, net=self.pnet, params=frozen["perceptual"],
                 scales=tuple(lc.perc_scales), weight=1.0, mask=mask, pixel_weights=pw)}
    if self.fa is not None:
      fp, real, fake, wf = frozen["face_analysis"], _flat(target), _flat(pred), _flat(w)
      sg = jax.lax.stop_gradient
      l1 = lambda a, b: _wmean(jnp.mean(jnp.abs(sg(a) - b), -1), wf)  # noqa: E731
      terms["loss_exp"] = lc.exp * l1(self.fa.expression(fp, real), self.fa.expression(fp, fake))
      terms["loss_gaze"] = lc.gaze * l1(self.fa.gaze(fp, real), self.fa.gaze(fp, fake))
      terms["loss_pars"] = lc.pars * pixel_cross_entropy(self.fa.parsing(fp, real),
                                                         self.fa.parsing(fp, fake), wf)
    return terms

  def gen_loss(self, params, batch, frozen, step):
    ex = rendered(batch, self.radius, self.num_render)
    pred, aux = self.forward(params, ex)
    terms = self.recon_terms(pred, ex, frozen)
    terms["loss_gan"] = self.gan_on(step) * self.config.loss.gan * losses.nonsaturating_gen_loss(
        self.scores(frozen["disc"], pred), _flat(ex["mask"]))
    return sum(terms.values()), dict(terms, xi_abs=jnp.mean(jnp.abs(aux["xi"])),
                                     mask_mean=jnp.mean(aux["masks"][-1]))

  def gan_on(self, step):
    """1.0 from step `loss.gan_start` on, else 0.0 (float32; both players start together)."""
    return (step >= int(self.config.loss.gan_start)).astype(jnp.float32)

  def disc_loss(self, dparams, params, batch, step):
    ex = rendered(batch, self.radius, self.num_render)
    pred, _ = self.forward(params, ex)
    fake = self.scores(dparams, jax.lax.stop_gradient(pred))
    real = self.scores(dparams, ex["frames"])
    m = _flat(ex["mask"]).astype(jnp.float32)
    loss = self.gan_on(step) * losses.nonsaturating_disc_loss(real, fake, m)
    return loss, {"disc_real": _wmean(real, m), "disc_fake": _wmean(fake, m)}

  def evaluate(self, params, batch, frozen):
    ex = rendered(batch, self.radius, self.num_render)
    pred, _ = self.forward(params, ex)
    lc = self.config.loss
    out = image_eval.frame_metrics(pred, ex["frames"], ex["source"], ex["mouth_box"],
                                   ex["mask"], mouth_size=int(lc.mouth_size),
                                   box_scale=float(lc.mouth_box_scale))
    out.update(self.recon_terms(pred, ex, frozen))
    m = self.model.apply({"params": params}, method=animator_lib.Animator.directions)
    out["codebook_orthogonality"] = jnp.max(jnp.abs(m.T @ m - jnp.eye(m.shape[1])))
    out.update({"image_pred": pred[:2, 0], "image_target": ex["frames"][:2, 0],
                "image_source": ex["source"][:2]})
    return out


def example_inputs(model_cfg, t: int, b: int = 1) -> dict:
  """Zero `infer` inputs: batch `b`, `t` frames, at the model's size (export, benchmarks)."""
  r, w = int(model_cfg.image_size), 2 * int(model_cfg.radius) + 1
  return {"source": np.zeros((b, r, r, 3), np.float32),
          "windows": np.zeros((b, t, w, animator_lib.NUM_COEFFS), np.float32),
          "gaze": np.zeros((b, t, animator_lib.NUM_GAZE), np.float32),
          "lam": np.ones((b, t), np.float32)}


def _mean_measured_yaw(detector, frames):
  from jaxtalk.evaluators import landmarks  # pylint: disable=g-import-not-at-top
  yaw = landmarks.measured_gaze(detector, np.asarray(frames).reshape((-1,) + frames.shape[-3:]))
  found = np.isfinite(yaw[:, 1])
  return (float(yaw[found, 1].mean()) if found.any() else None), int(found.sum())


def gaze_control(config, params, yaw: float = 0.3) -> list[dict]:
  """The gaze-control check of the stage on every held-out clip (`input.eval_fraction` /
  `input.holdout` of `config`): the clip's first eval batch rendered twice with the requested
  gaze yaw set to +`yaw` and −`yaw` radians (pitch as in the clip), each render's gaze measured
  by FaceMesh as preprocessing measures it (`evaluators.landmarks.measured_gaze`, frames upscaled
  to 256 px), frames without a detected face left out.

  Returns:
    per clip {"clip", "yaw_plus", "yaw_minus" (mean measured yaw, rad, None when no face was
    found), "found_plus", "found_minus", "yaw_real_frames", "found_real", "difference"
    (yaw_plus − yaw_minus or None), "right_direction" (difference > 0)}.
  """
  from jaxtalk.core import input_pipeline, sharding  # pylint: disable=g-import-not-at-top
  from jaxtalk.evaluators import landmarks  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  mesh = sharding.make_mesh(dict(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
  info = input_pipeline.load_dataset_info(config.input.data_dir)
  _, ev = input_pipeline.split_clips(info, tuple(config.input.get("holdout", ()) or ()),
                                     float(config.input.eval_fraction))
  task = get_task(config, mesh=mesh)
  infer = jax.jit(task.infer)
  g_mean, g_std = np.asarray(info["gaze_mean"]), np.asarray(info["gaze_std"])
  out = []
  with landmarks.MouthLandmarks(min_size=256) as detector:
    for i in ev:
      row = {"clip": info["clips"][i]["clip_id"]}
      config.input.holdout = (row["clip"],)
      batch = next(input_pipeline.create_iterator(config, mesh=mesh, split="eval"))
      ex = rendered(jax.tree.map(jnp.asarray, batch), int(config.model.radius),
                    int(config.render_frames))
      for sign, name in ((1, "plus"), (-1, "minus")):
        raw = np.asarray(ex["gaze"]) * g_std + g_mean
        raw[..., 1] = sign * yaw
        frames = infer(params, task.frozen, {
            "source": ex["source"], "windows": ex["windows"],
            "gaze": jnp.asarray((raw - g_mean) / g_std, jnp.float32),
            "lam": jnp.ones(ex["gaze"].shape[:2], jnp.float32)})["frames"]
        row[f"yaw_{name}"], row[f"found_{name}"] = _mean_measured_yaw(detector, frames)
      row["yaw_real_frames"], row["found_real"] = _mean_measured_yaw(detector, ex["frames"])
      both = row["yaw_plus"] is not None and row["yaw_minus"] is not None
      row["difference"] = row["yaw_plus"] - row["yaw_minus"] if both else None
      row["right_direction"] = bool(both and row["difference"] > 0)
      out.append(row)
  return out


def get_task(config, *, mesh) -> Task:
  """The gohd_animator stage (module docstring).

  Raises:
    ValueError: `input.window` is not 2r + K, or `input.resolution` differs from the model's
      image size; the face-analysis paths cannot be loaded (`load_face_analysis`).
  """
  del mesh
  want = window_length(config.model, config.render_frames)
  if int(config.input.window) != want:
    raise ValueError(f"gohd_animator: input.window={config.input.window}; expected 2·radius + "
                     f"render_frames = {want}")
  if int(config.input.resolution) != int(config.model.image_size):
    raise ValueError(f"gohd_animator: input.resolution={config.input.resolution} differs from "
                     f"model.image_size={config.model.image_size}")
  st = AnimatorStage(config)

  def init(rng, batch):
    ex = rendered(batch, st.radius, st.num_render)
    one = jax.tree.map(lambda v: v[:1, :1], {k: ex[k] for k in ("windows", "gaze")})
    return st.model.init(rng, ex["source"][:1], one["windows"], one["gaze"])["params"]

  def disc_init(rng, batch):
    return st.disc.init(rng, batch["source"][:2])["params"]

  def loss(params, batch, rng, frozen, step):
    del rng
    return st.gen_loss(params, batch, frozen, step)

  def disc_loss(dparams, params, batch, rng, frozen, step):
    del rng, frozen
    return st.disc_loss(dparams, params, batch, step)

  def infer(params, frozen, inputs):
    del frozen
    frames, _ = st.model.apply({"params": params}, inputs["source"], inputs["windows"],
                               inputs["gaze"], inputs["lam"])
    return {"frames": frames}

  return Task(init=init, loss=loss, frozen=st.frozen, evaluate=st.evaluate, infer=infer,
              infer_example=lambda: example_inputs(config.model, int(config.render_frames)),
              disc_init=disc_init, disc_loss=disc_loss)
