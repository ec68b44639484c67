"""Stage `gohd_exp_eye`: GoHD's eye-motion generation, stage 2 of the expression predictor
(section 3.2, eqs. 6-8; supplementary B.2, eqs. 25-27; configs/gohd/exp_eye.py).

G_lstm (`models.gohd.expression.EyeMotionGenerator`) generates the eye features f̂_{1:T} from
the audio features, the source's eye features f_0 and coefficients e_0 and per-frame noise z;
the stage-1 network (`config.init_from.exp_lip`: Φ_a and E_map) is frozen and turns them into
coefficients, ê = E_map(Φ_a(a), e_0, f̂) (eq. 8). Batches: those of stage 1 plus
`source_eye_features [B, 21]`.

Generator loss (eq. 25): λ_ssim (1 − SSIM of f̂ vs f, eq. 26, `losses.sequence_ssim`) + λ'_1
‖f − f̂‖₁ (eq. 27, mean over frames) + the least-squares generator terms of the three
discriminators (λ_ad D_eye, λ_te D_te, λ_tf D_tf) + λ_stage1 L_stage1 (stage 1's distillation
losses on ê, `exp_lip.distill_losses`). The discriminators (one params tree
{"eye", "te", "tf"}, one optimizer, `config.disc_optax`) are trained with the least-squares loss
(Mao et al. 2017) on real (f, e and the eye/brow landmarks of e) against generated sequences:
D_eye sees the audio features ⊕ the landmarks l^{17:26} ⊕ l^{36:47} (68-pt), D_te the eye
features, D_tf the coefficients.

Eval: blink variance ratio (variance over time of the generated blink ratio f̂[..., 0] over the
real one's, pooled over the batch: 1 = as lively as real, 0 = constant eyes), SSIM_e
(`losses.sequence_ssim` of f̂ vs f), L1 of f̂, and MLD of ê (`exp_lip.mouth_distance`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtalk import losses
from jaxtalk.core import checkpointing
from jaxtalk.models.gohd import expression as exp_models
from jaxtalk.tasks import Task
from jaxtalk.tasks.gohd import exp_lip


def load_stage1(config):
  """`(AudioInput, ExpressionMapper, params)` of the frozen stage 1 (`init_from.exp_lip`).

  Raises:
    ValueError: the path is empty or unreadable (naming the config field).
  """
  path = config.init_from.get("exp_lip", "")
  if not path:
    raise ValueError(f"{config.task}: config.init_from.exp_lip is empty; set it to the "
                     "gohd_exp_lip stage's `<workdir>/params` (config arg exp_lip=PATH)")
  cfg, params = checkpointing.load_stage(path, what="init_from.exp_lip")
  cfg = ml_collections.ConfigDict(cfg)
  audio = exp_lip.AudioInput(cfg)
  return audio, exp_models.mapper_from_config(cfg.model, config.dtype), params


def eye_landmarks(lm: dict, e):
  """D_eye's input: the 22 eye + brow landmarks of e's meshes, `[B, T, 66]` (IOD)."""
  l68 = exp_lip.landmarks(lm, e)[..., list(exp_lip.EYE_BROW_68), :]
  return l68.reshape(l68.shape[:-2] + (-1,))


def blink_variance_ratio(f_gen, f_real, mask):
  """Variance over valid frames of the generated blink ratio over the real one's (pooled)."""
  w = mask.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(w), 2.0)

  def var(x):
    m = jnp.sum(x * w) / n
    return jnp.sum((x - m) ** 2 * w) / n
  return var(f_gen[..., 0]) / jnp.maximum(var(f_real[..., 0]), 1e-12)


class _EyeStage:
  """Networks, frozen params and forward passes of the stage."""

  def __init__(self, config):
    self.config = config
    self.audio, self.mapper, stage1 = load_stage1(config)
    self.gen = exp_models.generator_from_config(config.model, config.dtype)
    self.discs = exp_models.discriminators_from_config(config.disc, config.dtype)
    self.reader = exp_lip.load_lipreader(config, float(config.loss.stage1_terms.get("read", 0.0)))
    self.frozen = dict(self.audio.frozen(), stage1=stage1,
                       landmarks=exp_lip.landmark_frozen(config))

  def features(self, frozen, batch):
    return jax.lax.stop_gradient(self.audio(frozen["stage1"]["audio"], frozen, batch["mel"]))

  def generate(self, params, frozen, batch, rng):
    """(a, f̂, ê) of a batch, z drawn from `rng` (eq. 8)."""
    a = self.features(frozen, batch)
    b, t = a.shape[:2]
    z = exp_models.sample_noise(rng, b, t, self.gen.noise_dim)
    f_hat, _ = self.gen.apply({"params": params}, a, batch["source_eye_features"],
                              batch["source_expression"], z)
    e_hat = self.mapper.apply({"params": frozen["stage1"]["mapper"]}, a,
                              batch["source_expression"], f_hat, batch["mask"])
    return a, f_hat, e_hat

  def scores(self, dparams, frozen, a, f, e, mask):
    """{"eye": [B, T], "te": [B, T', 1], "tf": [B, T', 1]} of sequences (f, e)."""
    lm = eye_landmarks(frozen["landmarks"], e)
    return {"eye": self.discs["eye"].apply({"params": dparams["eye"]}, a, lm, mask),
            "te": self.discs["te"].apply({"params": dparams["te"]}, f),
            "tf": self.discs["tf"].apply({"params": dparams["tf"]}, e)}

  def gen_losses(self, params, batch, rng, frozen) -> dict:
    lc, mask = self.config.loss, batch["mask"]
    a, f_hat, e_hat = self.generate(params, frozen, batch, rng)
    f = batch["eye_features"].astype(jnp.float32)
    w = mask.astype(jnp.float32)
    terms = {"loss_ssim": lc.ssim * (1.0 - losses.sequence_ssim(f_hat, f, mask)),
             "loss_l1": lc.l1 * jnp.sum(jnp.sum(jnp.abs(f - f_hat), -1) * w)
                        / jnp.maximum(jnp.sum(w), 1.0)}
    s = self.scores(frozen["disc"], frozen, a, f_hat, e_hat, mask)
    terms["loss_ad"] = lc.ad * losses.lsgan_gen_loss(s["eye"], mask)
    terms["loss_te"] = lc.te * losses.lsgan_gen_loss(s["te"])
    terms["loss_tf"] = lc.tf * losses.lsgan_gen_loss(s["tf"])
    stage1 = exp_lip.distill_losses(e_hat, batch, frozen["landmarks"], lc.stage1_terms,
                                    self.reader)
    terms["loss_stage1"] = lc.stage1 * sum(stage1.values())
    return terms

  def disc_losses(self, dparams, params, batch, rng, frozen) -> dict:
    mask = batch["mask"]
    a, f_hat, e_hat = jax.lax.stop_gradient(self.generate(params, frozen, batch, rng))
    real = self.scores(dparams, frozen, a, batch["eye_features"].astype(jnp.float32),
                       batch["expression"].astype(jnp.float32), mask)
    fake = self.scores(dparams, frozen, a, f_hat, e_hat, mask)
    return {f"disc_loss_{k}": losses.lsgan_disc_loss(real[k], fake[k],
                                                     mask if k == "eye" else None)
            for k in ("eye", "te", "tf")}


def get_task(config, *, mesh) -> Task:
  """The gohd_exp_eye stage (module docstring).

  Raises:
    ValueError: `init_from.exp_lip` empty or unreadable; the shards have no expression basis.
  """
  del mesh
  st = _EyeStage(config)

  def init(rng, batch):
    a = st.features(st.frozen, batch)
    z = jnp.zeros(a.shape[:2] + (st.gen.noise_dim,), jnp.float32)
    return st.gen.init({"params": rng}, a, batch["source_eye_features"],
                       batch["source_expression"], z)["params"]

  def disc_init(rng, batch):
    a = st.features(st.frozen, batch)
    e, f, mask = batch["expression"], batch["eye_features"], batch["mask"]
    r = jax.random.split(rng, 3)
    lm = eye_landmarks(st.frozen["landmarks"], e)
    return {"eye": st.discs["eye"].init({"params": r[0]}, a, lm, mask)["params"],
            "te": st.discs["te"].init({"params": r[1]}, f)["params"],
            "tf": st.discs["tf"].init({"params": r[2]}, e)["params"]}

  def loss(params, batch, rng, frozen, step):
    del step
    terms = st.gen_losses(params, batch, rng, frozen)
    return sum(terms.values()), terms

  def disc_loss(dparams, params, batch, rng, frozen, step):
    del step
    terms = st.disc_losses(dparams, params, batch, rng, frozen)
    return sum(terms.values()), terms

  def evaluate(params, batch, frozen):
    rng = jax.random.PRNGKey(int(config.seed) + 202)
    _, f_hat, e_hat = st.generate(params, frozen, batch, rng)
    f, mask = batch["eye_features"].astype(jnp.float32), batch["mask"]
    w = mask.astype(jnp.float32)
    return {"blink_var_ratio": blink_variance_ratio(f_hat, f, mask),
            "ssim_e": losses.sequence_ssim(f_hat, f, mask),
            "l1_f": jnp.sum(jnp.sum(jnp.abs(f - f_hat), -1) * w) / jnp.maximum(jnp.sum(w), 1.0),
            "mld": exp_lip.mouth_distance(frozen["landmarks"], e_hat, batch["expression"], mask)}

  def infer(params, frozen, inputs):
    """`mel [B, T, 16, 80]`, `source_expression [B, 64]`, `source_eye_features [B, 21]`,
    `noise [B, T, noise_dim]` -> `{"expression": ê [B, T, 64], "eye_features": f̂ [B, T, 21]}`
    (eq. 8)."""
    b, t = inputs["mel"].shape[:2]
    batch = dict(inputs, mask=jnp.ones((b, t), bool))
    a = st.features(frozen, batch)
    f_hat, _ = st.gen.apply({"params": params}, a, inputs["source_eye_features"],
                            inputs["source_expression"], inputs["noise"])
    e_hat = st.mapper.apply({"params": frozen["stage1"]["mapper"]}, a,
                            inputs["source_expression"], f_hat, batch["mask"])
    return {"expression": e_hat, "eye_features": f_hat}

  def infer_example():
    t = int(config.input.window)
    return {"mel": np.zeros([1, t, 16, 80], np.float32),
            "source_expression": np.zeros([1, exp_models.NUM_COEFFS], np.float32),
            "source_eye_features": np.zeros([1, exp_models.NUM_EYE], np.float32),
            "noise": np.zeros([1, t, st.gen.noise_dim], np.float32)}

  return Task(init=init, loss=loss, frozen=st.frozen, evaluate=evaluate, infer=infer,
              infer_example=infer_example, disc_init=disc_init, disc_loss=disc_loss)
