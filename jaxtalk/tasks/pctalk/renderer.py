"""Stage `pctalk_renderer`: train PC-Talk's implicit-keypoint renderer (section 3.1, eqs. 1-3;
LivePortrait's first training stage; configs/pctalk/renderer.py).

Self-reenactment on the shards: every batch window holds K = `render_frames` driving frames of
one clip; the batch's `source` (another frame of the clip) gives the appearance volume and the
canonical keypoints K_c, each driving frame its R, t, s, δ (`Renderer.__call__`). The loss is

  L = λ_rec L_rec + λ_perc L_perc^cas + λ_eq L_eq + λ_prior L_prior + λ_pose L_pose
      + λ_delta L_delta + λ_guide L_guide + λ_gan L_gan + λ_fm L_fm

  L_rec      mean |I − Î| (jaxtalk's addition; LivePortrait has no pixel loss; 0 disables it)
  L_perc^cas multi-scale perceptual loss on the frame (`loss.perc_scales`) plus the same on
             face, eye and lip crops from the stored landmarks / mouth box (LivePortrait's
             cascaded perceptual loss; `losses.perceptual_loss`, VGG19 with `vgg_weights`, else
             the documented random-feature substitute)
  L_eq       equivariance (face-vid2vid): a random affine warp A of the driving frame, Ĩ(p) =
             I(A p); mean |K_xy(I) − A(K_xy(Ĩ))| over keypoints
  L_prior    keypoint prior on K_c (`keypoints.keypoint_prior_loss`)
  L_pose     head pose supervised by the stored pose: mean |(yaw, pitch, roll) − stored| (rad)
             + mean |t_xy − 2·(tx, ty)| + |s − scale| (`keypoints.pose_to_rts`), source and
             driving frames
  L_delta    deformation prior mean |δ|
  L_guide    landmark-guided loss (supplementary A; `keypoints.landmark_loss`) on the source's
             and the driving frames' keypoints

  L_gan      least-squares GAN loss of Î against the multi-scale patch discriminator
             (`models.pctalk.discriminator`, face-vid2vid's / LivePortrait's; trained on real
             driving frames vs stop-gradient Î from step `loss.gan_start`)
  L_fm       feature matching: mean |D_i(I) − D_i(Î)| over the discriminator's features

λs: face-vid2vid's (P 10, G 1, F 10, E 20, L 10, H 20, Δ 5) divided by 10 so that λ_perc = 1;
λ_guide 5 (LivePortrait gives no value). With λ_gan = 0 (the tiny config's default) the stage
has no discriminator at all.

Eval (held-out batches): "ssim", "l1", "mouth_l1" of Î and of the repeat-the-source baseline
("*_source", `evaluators.image.frame_metrics`), the loss terms, and the motion extractor's mean
absolute pose error per angle ("pose_err_yaw", ... in radians).

`infer` renders any `Motion`: {"source" [B, R, R, 3], "pose" [B, T, 6] raw units,
"delta" [B, T, K, 3]} -> {"frames" [B, T, R, R, 3]} in (-1, 1); K_c from the source.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk import losses
from jaxtalk.evaluators import image as image_eval
from jaxtalk.features import regions
from jaxtalk.models import layers
from jaxtalk.models.pctalk import discriminator as disc_lib
from jaxtalk.models.pctalk import keypoints as kp_lib
from jaxtalk.models.pctalk import renderer as renderer_lib
from jaxtalk.tasks import Task

BATCH_KEYS = ("frames", "source", "pose", "source_pose", "landmarks", "source_landmarks",
              "mouth_box", "mask")
ANGLES = ("yaw", "pitch", "roll")


def pose_stats(config) -> tuple[np.ndarray, np.ndarray]:
  """Raw-unit mean/std `[6]` of the pose the batches normalise with (identity if synthetic)."""
  data_dir = config.input.get("data_dir", "")
  if config.input.get("synthetic", False) or not data_dir:
    return np.zeros(6, np.float32), np.ones(6, np.float32)
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(data_dir)
  return (np.asarray(info["pose_mean"], np.float32),
          np.maximum(np.asarray(info["pose_std"], np.float32), 1e-6))


def pose_targets(raw_pose) -> dict:
  """Targets of the motion extractor's pose head from raw `[..., 6]` pose: "angles" `[..., 3]`,
  "translation" `[..., 3]`, "scale" `[...]` (`keypoints.pose_to_rts`)."""
  _, t, s = kp_lib.pose_to_rts(raw_pose)
  return {"angles": raw_pose[..., :3], "translation": t, "scale": s}


def _flat(x):
  return x.reshape((-1,) + x.shape[2:])


def _wmean(per, w):
  return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


def landmark_box(landmarks, indices, margin: float = 0.15):
  """`[..., 4]` (x0, y0, x1, y1) box of `landmarks [..., 478, 2]` at `indices`, grown by
  `margin` x its width on every side, square (the rule of `features.face.mouth_box`)."""
  pts = landmarks[..., list(indices), :2]
  lo, hi = jnp.min(pts, -2), jnp.max(pts, -2)
  return losses.expand_boxes(jnp.concatenate([lo, hi], -1), 1.0 + 2.0 * margin, square=True)


def random_affine(rng, n: int, strength: float) -> jax.Array:
  """`[n, 2, 3]` affine maps in normalised image units: identity + U(−strength, strength) on the
  linear part (halved) and the shift (face-vid2vid's equivariance transforms, without TPS)."""
  noise = jax.random.uniform(rng, (n, 2, 3), jnp.float32, -strength, strength)
  noise = noise * jnp.asarray([[0.5, 0.5, 1.0], [0.5, 0.5, 1.0]], jnp.float32)
  return jnp.eye(2, 3, dtype=jnp.float32)[None] + noise


def apply_affine(images, affine):
  """Ĩ(p) = I(A p): `images [N, R, R, 3]` sampled at A applied to normalised pixel coordinates
  (border padding); `affine [N, 2, 3]`."""
  n, h, w, _ = images.shape
  grid = layers.pixel_grid(h, w)
  norm = grid / jnp.asarray([w - 1, h - 1], jnp.float32) * 2.0 - 1.0
  moved = jnp.einsum("nij,hwj->nhwi", affine[:, :, :2], norm) + affine[:, None, None, :, 2]
  coords = (moved + 1.0) / 2.0 * jnp.asarray([w - 1, h - 1], jnp.float32)
  return layers.bilinear_sample(images, coords, padding="border")


class RendererStage:
  """Networks, frozen params and loss terms of the stage (module docstring)."""

  def __init__(self, config):
    self.config = config
    self.model = renderer_lib.renderer_from_config(config.model, config.dtype)
    self.pnet, pparams = losses.PerceptualNet.create(config.get("vgg_weights", "") or None)
    self.frozen = {"perceptual": pparams}
    mean, std = pose_stats(config)
    self.pose_mean, self.pose_std = jnp.asarray(mean), jnp.asarray(std)
    self.use_gan = float(config.loss.get("gan", 0.0)) > 0
    self.disc = disc_lib.discriminator_from_config(config.disc, config.dtype) if self.use_gan \
        else None

  def gan_on(self, step):
    """1.0 from step `loss.gan_start` on, else 0.0 (float32)."""
    return (jnp.asarray(step) >= int(self.config.loss.get("gan_start", 0))).astype(jnp.float32)

  def gan_terms(self, pred, batch, frozen, step):
    """L_gan and L_fm of Î `[B, K, R, R, 3]` (0 before `gan_start`)."""
    d = lambda x: self.disc.apply({"params": frozen["disc"]}, _flat(x))  # noqa: E731
    real, fake = d(batch["frames"]), d(pred)
    gan = sum(losses.lsgan_gen_loss(f[0]) for f in fake) / len(fake)
    fm = sum(sum(jnp.mean(jnp.abs(jax.lax.stop_gradient(r) - f)) for r, f in zip(rs[1], fs[1]))
             / len(fs[1]) for rs, fs in zip(real, fake)) / len(fake)
    on, lc = self.gan_on(step), self.config.loss
    return {"loss_gan": on * lc.gan * gan, "loss_fm": on * lc.fm * fm}

  def disc_loss(self, dparams, params, batch, step):
    pred, _ = self.forward(params, batch)
    d = lambda x: self.disc.apply({"params": dparams}, _flat(x))  # noqa: E731
    real, fake = d(batch["frames"]), d(jax.lax.stop_gradient(pred))
    loss = sum(losses.lsgan_disc_loss(r[0], f[0]) for r, f in zip(real, fake)) / len(real)
    return self.gan_on(step) * loss, {
        "disc_real": jnp.mean(jnp.stack([jnp.mean(r[0]) for r in real])),
        "disc_fake": jnp.mean(jnp.stack([jnp.mean(f[0]) for f in fake]))}

  def raw_pose(self, pose):
    return pose.astype(jnp.float32) * self.pose_std + self.pose_mean

  def forward(self, params, batch):
    """Î `[B, K, R, R, 3]` and the model's aux for every driving frame of the batch."""
    b, k = batch["frames"].shape[:2]
    src = jnp.repeat(batch["source"], k, axis=0)
    pred, aux = self.model.apply({"params": params}, src, _flat(batch["frames"]))
    return pred.reshape(batch["frames"].shape), aux

  def perceptual_terms(self, pred, batch, frozen):
    lc, target, mask = self.config.loss, batch["frames"], batch["mask"]
    kw = dict(net=self.pnet, params=frozen["perceptual"], weight=1.0, mask=mask)
    total = losses.perceptual_loss(pred, target, scales=tuple(lc.perc_scales), **kw)
    lm = batch["landmarks"]
    boxes = {"face": landmark_box(lm, regions.FACE_OVAL, 0.0),
             "eyes": landmark_box(lm, regions.RIGHT_EYE + regions.LEFT_EYE + regions.RIGHT_BROW
                                  + regions.LEFT_BROW),
             "lips": losses.expand_boxes(batch["mouth_box"], 1.0, square=True)}
    for name, box in boxes.items():
      total = total + lc.get(f"perc_{name}", 1.0) * losses.mouth_perceptual_loss(
          pred, target, box, size=int(lc.crop_size), **kw)
    return total

  def pose_loss(self, motion, raw_pose, w):
    tgt = pose_targets(raw_pose)
    err = (jnp.mean(jnp.abs(motion["angles"] - tgt["angles"]), -1)
           + jnp.mean(jnp.abs(motion["translation"][:, :2] - tgt["translation"][:, :2]), -1)
           + jnp.abs(motion["scale"] - tgt["scale"]))
    return _wmean(err, w)

  def equivariance(self, params, frames, kp, rng):
    """L_eq of driving frames `[N, R, R, 3]` with keypoints `kp [N, K, 3]`."""
    a = random_affine(rng, frames.shape[0], float(self.config.loss.eq_strength))
    warped = apply_affine(frames, a)
    mt = self.model.apply({"params": params}, warped, method=renderer_lib.Renderer.motion)
    kt = renderer_lib.keypoints_of(mt)[..., :2]
    back = jnp.einsum("nij,nkj->nki", a[:, :, :2], kt) + a[:, None, :, 2]
    return jnp.mean(jnp.abs(kp[..., :2] - back), (1, 2))

  def loss(self, params, batch, rng, frozen, step=0):
    lc = self.config.loss
    pred, aux = self.forward(params, batch)
    w = _flat(batch["mask"]).astype(jnp.float32)
    target = batch["frames"].astype(jnp.float32)
    ms, md = aux["motion_source"], aux["motion_driving"]
    k = batch["frames"].shape[1]
    src_w = jnp.ones((batch["source"].shape[0] * k,), jnp.float32)
    src_pose = jnp.repeat(self.raw_pose(batch["source_pose"]), k, axis=0)
    src_lm = jnp.repeat(batch["source_landmarks"], k, axis=0)
    terms = {
        "loss_rec": lc.rec * _wmean(jnp.mean(jnp.abs(pred - target), (2, 3, 4)).reshape(-1), w),
        "loss_perc": lc.perc * self.perceptual_terms(pred, batch, frozen),
        "loss_eq": lc.eq * _wmean(self.equivariance(
            params, _flat(batch["frames"]), renderer_lib.keypoints_of(md), rng), w),
        "loss_prior": lc.prior * kp_lib.keypoint_prior_loss(ms["canonical"]),
        "loss_pose": lc.pose * (self.pose_loss(md, _flat(self.raw_pose(batch["pose"])), w)
                                + self.pose_loss(ms, src_pose, src_w)),
        "loss_delta": lc.delta * _wmean(jnp.mean(jnp.abs(md["delta"]), (1, 2)), w),
        "loss_guide": lc.guide * (
            kp_lib.landmark_loss(aux["kp_driving"], _flat(batch["landmarks"]), w)
            + kp_lib.landmark_loss(aux["kp_source"], src_lm)),
    }
    if self.use_gan and "disc" in frozen:
      terms.update(self.gan_terms(pred, batch, frozen, step))
    return pred, aux, terms

  def evaluate(self, params, batch, frozen):
    pred, aux, terms = self.loss(params, batch, jax.random.key(0), frozen)
    lc = self.config.loss
    out = image_eval.frame_metrics(pred, batch["frames"], batch["source"], batch["mouth_box"],
                                   batch["mask"], mouth_size=int(lc.mouth_size),
                                   box_scale=float(lc.mouth_box_scale))
    out.update(terms)
    w = _flat(batch["mask"]).astype(jnp.float32)
    err = jnp.abs(aux["motion_driving"]["angles"] - _flat(self.raw_pose(batch["pose"]))[:, :3])
    out.update({f"pose_err_{n}": _wmean(err[:, i], w) for i, n in enumerate(ANGLES)})
    out["occlusion_mean"] = jnp.mean(aux["occlusion"])
    out.update({"image_pred": pred[:2, 0], "image_target": batch["frames"][:2, 0],
                "image_source": batch["source"][:2]})
    return out

  def infer(self, params, inputs):
    """Renders raw `pose [B, T, 6]` and `delta [B, T, K, 3]` from `source [B, R, R, 3]`."""
    b, t = inputs["pose"].shape[:2]
    volume, ms = self.model.apply({"params": params}, inputs["source"],
                                  method=renderer_lib.Renderer.extract)
    kp_s = renderer_lib.keypoints_of(ms)
    rot, tr, sc = kp_lib.pose_to_rts(inputs["pose"].astype(jnp.float32))
    kc = jnp.broadcast_to(ms["canonical"][:, None], (b, t) + ms["canonical"].shape[1:])
    kp_d = kp_lib.transform_keypoints(kc, rot, tr, sc, inputs["delta"].astype(jnp.float32))
    rep = lambda x: jnp.repeat(x, t, axis=0)  # noqa: E731
    frames, _ = self.model.apply({"params": params}, rep(volume), rep(kp_s), _flat(kp_d),
                                 method=renderer_lib.Renderer.render)
    return {"frames": frames.reshape((b, t) + frames.shape[1:])}


def example_inputs(model_cfg, t: int = 1, b: int = 1) -> dict:
  """Zero `infer` inputs at the model's size (export, benchmarks)."""
  r, k = int(model_cfg.image_size), int(model_cfg.num_keypoints)
  pose = np.zeros((b, t, 6), np.float32)
  pose[..., 5] = renderer_lib.SCALE_INIT
  return {"source": np.zeros((b, r, r, 3), np.float32), "pose": pose,
          "delta": np.zeros((b, t, k, 3), np.float32)}


def get_task(config, *, mesh) -> Task:
  """The pctalk_renderer stage (module docstring).

  Raises:
    ValueError: `input.resolution` differs from the model's image size, or `input.window`
      from `render_frames`.
  """
  del mesh
  if int(config.input.resolution) != int(config.model.image_size):
    raise ValueError(f"pctalk_renderer: input.resolution={config.input.resolution} differs from "
                     f"model.image_size={config.model.image_size}")
  if int(config.input.window) != int(config.render_frames):
    raise ValueError(f"pctalk_renderer: input.window={config.input.window}; expected "
                     f"render_frames={config.render_frames}")
  st = RendererStage(config)

  def init(rng, batch):
    return st.model.init(rng, batch["source"][:1], batch["frames"][:1, 0])["params"]

  def loss(params, batch, rng, frozen, step):
    _, aux, terms = st.loss(params, batch, rng, frozen, step)
    return sum(terms.values()), dict(
        terms, occlusion_mean=jnp.mean(aux["occlusion"]),
        delta_abs=jnp.mean(jnp.abs(aux["motion_driving"]["delta"])))

  def infer(params, frozen, inputs):
    del frozen
    return st.infer(params, inputs)

  def disc_init(rng, batch):
    return st.disc.init(rng, batch["frames"][:2, 0])["params"]

  def disc_loss(dparams, params, batch, rng, frozen, step):
    del rng, frozen
    return st.disc_loss(dparams, params, batch, step)

  gan = dict(disc_init=disc_init, disc_loss=disc_loss) if st.use_gan else {}
  return Task(init=init, loss=loss, frozen=st.frozen, evaluate=st.evaluate, infer=infer,
              infer_example=lambda: example_inputs(config.model), **gan)
