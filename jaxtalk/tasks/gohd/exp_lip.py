"""Stage `gohd_exp_lip`: GoHD's audio-to-lip distillation, stage 1 of the expression predictor
(section 3.2, eq. 5; supplementary B.2, eqs. 18-24; configs/gohd/exp_lip.py).

E_map (`models.gohd.expression.ExpressionMapper`) predicts every frame's expression coefficients
ẽ_t from the audio features Φ_a(a_t), the source's coefficients e_0 and the frame's ground-truth
eye features f_t. Batches: `mel [B, T, 16, 80]`, `expression [B, T, 64]`, `eye_features
[B, T, 21]`, `source_expression [B, 64]`, `mask [B, T]`.

Φ_a: the audio encoder of the frozen SyncNet expert (`config.init_from.syncnet`, as GoHD uses
Wav2Lip's); with no expert a trainable `MelFrameEncoder` (announced once). "Distillation from
re-synced videos": the stage trains on clips whose audio-visual offset preprocessing verified or
corrected (`config.input.max_av_offset`).

Losses (eq. 19, `distill_losses`), on the 68 landmarks of the expression-only meshes
(`features.expression.landmark_basis`; GoHD uses 3-D landmarks for these losses), scaled by
`config.loss.landmark_px` pixels per IOD so the paper's λs apply to pixel-like units:

  L_lms  (eq. 20) mean over frames and the 32 jaw + lip points (68-pt 3-14, 48-67) of ‖l − l̃‖²
  L_eye  (eq. 21) mean over frames of ‖f − f̃‖₁, f̃ the eye features of ẽ (Fig. 4)
  L_shut (eq. 22) mean over frames of ‖(l^{60:63} − l^{64:67}) − (l̃^{60:63} − l̃^{64:67})‖²
                  (the inner lips' diagonals: 60-64, 61-65, 62-66, 63-67)
  L_1    (eq. 24) mean over frames of ‖e − ẽ‖₁
  L_read (eq. 23) mean over frames of 1 − cos(Φ_read(r), Φ_read(r̃)), r / r̃ the grey mouth
                  images of l / l̃ (`features.mouth_render`), Φ_read a user's lip reader
                  serialized with jax.export (`init_from.lipreader`,
                  `pretrained.lip_reader`); without one the term is off (announced once).

Eval: `mld` (mean mouth-landmark distance of ẽ, IOD, 68-pt 48-67) against `mld_e0` (predicting
e_0 for every frame), and the loss terms.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.core import logging_utils

from jaxtalk.features import expression as expression_lib
from jaxtalk.features import mouth_render
from jaxtalk.models import syncnet as syncnet_lib
from jaxtalk.models.gohd import expression as exp_models
from jaxtalk.pretrained import lip_reader as lip_reader_lib
from jaxtalk.tasks import Task
from jaxtalk.tasks.posetalk import coarse

JAW_LIP_68 = tuple(range(3, 15)) + tuple(range(48, 68))   # eq. 20's points.
MOUTH_68 = tuple(range(48, 68))                           # MLD's points.
EYE_BROW_68 = tuple(range(17, 27)) + tuple(range(36, 48))  # D_eye's points.
SHUT_UPPER, SHUT_LOWER = (60, 61, 62, 63), (64, 65, 66, 67)
announce = logging_utils.announce_once  # substitutes and disabled terms, once per process.


def landmark_frozen(config) -> dict:
  """{"mean68": [68, 3], "comps68": [k, 68, 3]} of the shards' expression basis (float32)."""
  mean68, comps68 = expression_lib.landmark_basis(expression_lib.basis_for_config(config))
  return {"mean68": jnp.asarray(mean68), "comps68": jnp.asarray(comps68)}


def landmarks(lm: dict, e):
  """68 landmarks `[..., 68, 3]` (IOD) of the expression-only meshes of e `[..., k]` (eq. 10)."""
  return lm["mean68"] + jnp.einsum("...k,kpc->...pc", e.astype(jnp.float32), lm["comps68"])


def _frame_mean(per_frame, mask):
  w = mask.astype(jnp.float32)
  return jnp.sum(per_frame * w) / jnp.maximum(jnp.sum(w), 1.0)


def distill_losses(e_pred, batch, lm: dict, loss_cfg, reader=None) -> dict:
  """GoHD eqs. 20-24 (module docstring): `{"loss_lms", "loss_eye", "loss_shut", "loss_l1"}` and,
  with a lip reader (`pretrained.lip_reader.LipReader`) and λ_read > 0, `"loss_read"`; each
  weighted by its λ (`loss_cfg.lms`, `.eye`, `.shut`, `.l1`, `.read`), float32."""
  e, f, mask = batch["expression"], batch["eye_features"], batch["mask"]
  px = float(loss_cfg.landmark_px)
  l_true, l_pred = landmarks(lm, e), landmarks(lm, e_pred)
  jl = list(JAW_LIP_68)
  lms = jnp.mean(jnp.sum((px * (l_true[..., jl, :] - l_pred[..., jl, :])) ** 2, -1), -1)
  f_pred = expression_lib.eye_features_68(l_pred, lm["mean68"], xp=jnp)
  eye = jnp.sum(jnp.abs(f.astype(jnp.float32) - f_pred), -1)
  up, lo = list(SHUT_UPPER), list(SHUT_LOWER)
  d_true = l_true[..., up, :] - l_true[..., lo, :]
  d_pred = l_pred[..., up, :] - l_pred[..., lo, :]
  shut = jnp.sum((px * (d_true - d_pred)) ** 2, axis=(-2, -1))
  l1 = jnp.sum(jnp.abs(e.astype(jnp.float32) - e_pred), -1)
  out = {"loss_lms": loss_cfg.lms * _frame_mean(lms, mask),
         "loss_eye": loss_cfg.eye * _frame_mean(eye, mask),
         "loss_shut": loss_cfg.shut * _frame_mean(shut, mask),
         "loss_l1": loss_cfg.l1 * _frame_mean(l1, mask)}
  read = float(loss_cfg.get("read", 0.0))
  if reader is not None and read:
    out["loss_read"] = read * lip_reader_lib.read_loss(
        reader, l_true, l_pred, mouth_render.mouth_center(lm["mean68"]), mask)
  return out


def mouth_distance(lm: dict, e_pred, e_true, mask):
  """MLD: mean L2 distance (IOD) of the 20 mouth landmarks of two coefficient sequences."""
  mo = list(MOUTH_68)
  d = jnp.linalg.norm(landmarks(lm, e_pred)[..., mo, :] - landmarks(lm, e_true)[..., mo, :],
                      axis=-1)
  return _frame_mean(jnp.mean(d, -1), mask)


def load_lipreader(config, read: float):
  """Φ_read of L_read (eq. 23): the lip reader at `init_from.lipreader`, or None (the term is
  off, announced once when `read`, its λ, is > 0).

  Raises:
    ValueError: the file is not an acceptable lip reader (`pretrained.lip_reader.load`).
  """
  path = config.init_from.get("lipreader", "")
  if path:
    return lip_reader_lib.load(path)
  if read:
    announce("read", f"{config.task}: L_read (GoHD eq. 23) is off: no init_from.lipreader (a "
             "lip reader serialized with jax.export, see jaxtalk.pretrained.lip_reader)")
  return None


class AudioInput:
  """Φ_a of the stage: the frozen SyncNet expert's audio encoder (`init_from.syncnet`) or a
  trainable `MelFrameEncoder` (params["audio"])."""

  def __init__(self, config):
    path = config.init_from.get("syncnet", "")
    self.expert, self.expert_params = coarse.load_syncnet(path)
    if self.expert is None:
      announce("audio", f"{config.task}: no init_from.syncnet: Φ_a is a MelFrameEncoder trained "
               "with the stage (GoHD uses the frozen audio encoder of a lip-sync expert)")
    self.net = exp_models.audio_from_config(
        config.model, config.dtype, audio_input="features" if self.expert else "mel")

  def frozen(self) -> dict:
    return {"syncnet": self.expert_params} if self.expert is not None else {}

  def init(self, rng, mel) -> dict:
    if self.expert is not None:  # Φ_a is the frozen expert: nothing of the stage's to train.
      return {}
    return dict(self.net.init({"params": rng}, mel).get("params", {}))

  def __call__(self, params, frozen, mel):
    """`[B, T, 16, 80]` -> `[B, T, A]`."""
    if self.expert is not None:
      b, t = mel.shape[:2]
      a = self.expert.apply({"params": frozen["syncnet"]}, mel.reshape((b * t,) + mel.shape[2:]),
                            method=syncnet_lib.SyncNet.embed_audio)
      return jax.lax.stop_gradient(a.reshape(b, t, -1))
    return self.net.apply({"params": params}, mel)


def get_task(config, *, mesh) -> Task:
  """The gohd_exp_lip stage (module docstring).

  Raises:
    ValueError: the shards have no expression basis (names the command that fits it), or
      `init_from.lipreader` is not an acceptable lip reader.
  """
  del mesh
  reader = load_lipreader(config, float(config.loss.get("read", 0.0)))
  audio = AudioInput(config)
  mapper = exp_models.mapper_from_config(config.model, config.dtype)
  frozen = dict(audio.frozen(), landmarks=landmark_frozen(config))

  def predict(params, batch, frozen):
    a = audio(params["audio"], frozen, batch["mel"])
    return mapper.apply({"params": params["mapper"]}, a, batch["source_expression"],
                        batch["eye_features"], batch["mask"])

  def init(rng, batch):
    r_a, r_m = jax.random.split(rng)
    p = {"audio": audio.init(r_a, batch["mel"])}
    a = audio(p["audio"], frozen, batch["mel"])
    p["mapper"] = mapper.init({"params": r_m}, a, batch["source_expression"],
                              batch["eye_features"], batch["mask"])["params"]
    return p

  def loss(params, batch, rng, frozen, step):
    del rng, step
    terms = distill_losses(predict(params, batch, frozen), batch, frozen["landmarks"],
                           config.loss, reader)
    return sum(terms.values()), terms

  def evaluate(params, batch, frozen):
    e_pred = predict(params, batch, frozen)
    lm, e, mask = frozen["landmarks"], batch["expression"], batch["mask"]
    e0 = jnp.broadcast_to(batch["source_expression"][:, None], e.shape)
    mld, mld_e0 = mouth_distance(lm, e_pred, e, mask), mouth_distance(lm, e0, e, mask)
    return dict(distill_losses(e_pred, batch, lm, config.loss, reader), mld=mld, mld_e0=mld_e0,
                mld_gain=mld_e0 - mld)

  def infer(params, frozen, inputs):
    """`mel [B, T, 16, 80]`, `source_expression [B, 64]`, `eye_features [B, T, 21]` ->
    `{"expression": ẽ [B, T, 64]}` (eq. 5)."""
    batch = dict(inputs, mask=jnp.ones(inputs["eye_features"].shape[:2], bool))
    return {"expression": predict(params, batch, frozen)}

  def infer_example():
    t = int(config.input.window)
    return {"mel": np.zeros([1, t, 16, 80], np.float32),
            "source_expression": np.zeros([1, exp_models.NUM_COEFFS], np.float32),
            "eye_features": np.zeros([1, t, exp_models.NUM_EYE], np.float32)}

  return Task(init=init, loss=loss, frozen=frozen, evaluate=evaluate, infer=infer,
              infer_example=infer_example)
