"""Stage `pld`: train PoseTalk's Pose Latent Diffusion denoiser (paper "Pose Generation", eq. 2).

The pose VAE is frozen (`config.init_from.pose_vae` = `<pose_vae workdir>/params`; its
architecture comes from `<pose_vae workdir>/config.json`). Each step:
  z0 = (μ_E(x) - m) / s        posterior mean of the normalised pose+gaze window, scaled with the
                               latent mean m and std s (frozen "stats" measured at init)
  t ~ U{0..K-1}, ε ~ N(0, I), z_t = q_sample(z0, t, ε)
  text and audio are each dropped with prob. `config.cond.p_drop_text` / `p_drop_audio`
  (examples without text always drop it)
  L = ||ε - ε_θ(z_t, t, c)||²   (eq. 2)
Text: the trainable text encoder over `text_ids` (word vocabulary of dataset_info.json), or a
frozen CLIP text encoder from `config.model.clip_path` (then `text_ids` must be CLIP token ids).
Audio (`config.model.audio_input`): "mel" (default): the batch's per-frame log-mel windows
`mel [B, T, 16, 80]` through the trainable `MelAudioEncoder` (the no-download fallback for
wav2vec 2.0; announced once); "features" (configs/posetalk/pld.py `audio=wav2vec`, PoseTalk's
condition):
the stored wav2vec 2.0 features `wav2vec [B, T, C]` (`jaxtalk preprocess --wav2vec_path`) through
`FeatureAudioEncoder`; `wav2vec_dim` checks that the shards have them.

Eval: ε-loss at fixed noise/timesteps, and DDIM samples with guidance (text+audio) decoded by the
VAE compared with the real windows: per-dimension variance ratio and Fréchet distance of the
motion features of `jaxtalk.evaluators.motion`. The ratio pools the eval batch's windows: with
one or two held-out clips the real side has only within-clip variance while every sample draws
its own mean pose, so it reads high; `jaxtalk.evaluators.motion.evaluate_modes` (samples pooled
over many clips' audio and text) is the Table-3 comparison to report.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.core import checkpointing
from jaxtalk import diffusion
from jaxtalk.generators import pld as pld_lib
from jaxtalk.evaluators import motion as motion_eval
from jaxtalk.models import text_encoder as text_enc_lib
from jaxtalk.models.posetalk import pose_denoiser as den_lib
from jaxtalk.tasks import Task
from jaxtalk.tasks.posetalk import pose_vae as vae_task


def load_vae(config):
  """`(vae module, vae params (numpy), vae model dict)` from `config.init_from.pose_vae`.

  Raises:
    ValueError: when `init_from.pose_vae` is not set or its config.json is missing.
  """
  path = config.init_from.get("pose_vae", "") if "init_from" in config else ""
  if not path:
    raise ValueError("pld: set config.init_from.pose_vae to <pose_vae workdir>/params "
                     "(configs/posetalk/pld.py arg vae=DIR)")
  vae_cfg, params = checkpointing.load_stage(path, what="init_from.pose_vae")
  model = vae_task.build_model(vae_cfg["model"], config.dtype)
  return model, params, dict(vae_cfg["model"])


def feature_stats(config) -> tuple[np.ndarray, np.ndarray]:
  """Raw-unit mean/std `[8]` of (pose, gaze) from dataset_info.json (identity if synthetic)."""
  data_dir = config.input.get("data_dir", "")
  if config.input.get("synthetic", False) or not data_dir:
    return np.zeros(8, np.float32), np.ones(8, np.float32)
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  info = input_pipeline.load_dataset_info(data_dir)
  mean = np.asarray(list(info["pose_mean"]) + list(info["gaze_mean"]), np.float32)
  std = np.asarray(list(info["pose_std"]) + list(info["gaze_std"]), np.float32)
  return mean, std


def wav2vec_dim(config) -> int:
  """C of the wav2vec 2.0 features a pld config with audio=wav2vec trains on.

  Real data: `optional_feature_dims` of the data_dir's dataset_info.json; synthetic:
  `config.input.synthetic_wav2vec_dim`.

  Raises:
    ValueError: `input.keys` lacks "wav2vec", no data_dir, or the shards of `input.data_dir` have
      no wav2vec feature (naming the data_dir and how to make it).
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  m = config.model
  if "wav2vec" not in tuple(config.input.get("keys", ()) or ()):
    raise ValueError(f"pld: model.audio_input={m.get('audio_input')!r} needs 'wav2vec' in "
                     f"config.input.keys, got {tuple(config.input.get('keys', ()))} (use "
                     "configs/posetalk/pld.py arg audio=wav2vec)")
  if config.input.get("synthetic", False):
    return int(config.input.get("synthetic_wav2vec_dim", m.get("audio_dim", 1024)))
  data_dir = config.input.get("data_dir", "")
  if not data_dir:
    raise ValueError("pld audio=wav2vec: config.input.data_dir is empty (set data_dir=DIR, or "
                     "synthetic=true)")
  info = input_pipeline.load_dataset_info(data_dir)
  if "wav2vec" not in info.get("optional_features", []):
    raise ValueError(
        f"pld audio=wav2vec: the shards in {data_dir} have no wav2vec features; re-run "
        f"`jaxtalk preprocess ... --output_dir={data_dir} --wav2vec_path=<wav2vec 2.0 folder>`, "
        "or train with audio=mel")
  return int(info["optional_feature_dims"]["wav2vec"])


def resolve_config(config) -> None:
  """Fills in, in place, what a pld config with audio=wav2vec takes from its real shards: C
  (`model.audio_dim`, `wav2vec_dim`), the wav2vec 2.0 folder (`model.wav2vec_path`, when the
  config names none), its layer (`model.wav2vec_layer`) and `sampling.wav2vec_seconds` (the
  preprocessed clips' length), from the data_dir's dataset_info.json. train.py calls it (through
  `jaxtalk.tasks.resolve_config`) before writing the stage's config.json, so `load_pld` reads
  them from there. A no-op for log-mel or synthetic configs; idempotent.

  Raises:
    ValueError: as `wav2vec_dim` (no data_dir, or shards without wav2vec features).
  """
  from jaxtalk.core import input_pipeline  # pylint: disable=g-import-not-at-top
  m = config.model
  if pld_lib.audio_feature(m) != "wav2vec" or config.input.get("synthetic", False):
    return
  m.audio_dim = wav2vec_dim(config)
  info = input_pipeline.load_dataset_info(config.input.data_dir)
  rec = info.get("wav2vec") or {}
  options = info.get("options", {})
  m.wav2vec_path = m.get("wav2vec_path") or rec.get("path") or options.get("wav2vec_path", "")
  m.wav2vec_layer = int(rec.get("layer", -1))
  config.sampling.wav2vec_seconds = float(options.get("max_clip_seconds", 10.0))


class _PLDStage:
  """The pld stage's functions over one frozen pose VAE, denoiser and schedule (see module
  docstring); `get_task` wraps them in a `Task`."""

  def __init__(self, config):
    self.config = config
    self.vae, vae_params, _ = load_vae(config)
    self.vae_params = vae_params
    clip_path = config.model.get("clip_path", "")
    self.clip = None
    self.frozen = {"vae": vae_params}
    if clip_path:
      self.clip = text_enc_lib.ClipTextEncoder(clip_path)
      self.frozen["clip"] = self.clip.params
    else:
      text_enc_lib.announce_fallback(
          "pld text condition: trainable text encoder over the word vocabulary (no CLIP folder "
          "given; set config.model.clip_path)")
    if config.model.get("audio_input", "mel") == "mel":
      text_enc_lib.announce_fallback(
          "pld audio condition: log-mel windows + trainable audio encoder instead of wav2vec 2.0")
    self.audio_key, self.audio_dim = "mel", None
    if pld_lib.audio_feature(config.model) == "wav2vec":
      self.audio_key, self.audio_dim = "wav2vec", wav2vec_dim(config)
    self.den = den_lib.from_config(config.model, self.vae.latent_tokens, self.vae.latent_dim,
                                      config.dtype)
    self.sched = pld_lib.make_schedule(config.diffusion)
    self.p_text = float(config.cond.p_drop_text)
    self.p_audio = float(config.cond.p_drop_audio)
    self.feat_mean, self.feat_std = feature_stats(config)

  def latents(self, vae_p, batch):
    x, mask = vae_task.features(batch)
    mu, _ = self.vae.apply({"params": vae_p}, x, mask, method=self.vae.encode)
    return jax.lax.stop_gradient(mu), x, mask

  def text_kwargs(self, frozen_, batch):
    ids, tmask = batch["text_ids"], batch["text_mask"].astype(bool)
    if self.clip is not None:
      return {"text_tokens": self.clip(frozen_["clip"], ids, tmask)[0], "text_mask": tmask}
    return {"text_ids": ids, "text_mask": tmask}

  def init(self, rng, batch):
    x, mask = vae_task.features(batch)
    b = x.shape[0]
    z = jnp.zeros((b, self.vae.latent_tokens, self.vae.latent_dim), jnp.float32)
    kw = self.text_kwargs({"clip": self.clip.params} if self.clip is not None else {}, batch)
    p = self.den.init({"params": rng}, z, jnp.zeros((b,), jnp.int32),
                      audio=batch[self.audio_key], audio_mask=mask, **kw)["params"]
    mu, _, _ = self.latents(jax.tree.map(jnp.asarray, self.vae_params), batch)
    p = dict(p)
    p["stats"] = {"latent_mean": jnp.mean(mu), "latent_std": jnp.maximum(jnp.std(mu), 1e-3),
                  "feat_mean": jnp.asarray(self.feat_mean),
                  "feat_std": jnp.asarray(self.feat_std)}
    return p

  def eps_pred(self, params, frozen_, batch, z_t, t, drop_text, drop_audio, *, train, rng=None):
    net, _ = pld_lib.split_stats(params)
    mask = vae_task.features(batch)[1]
    rngs = {"dropout": rng} if rng is not None else {}
    return self.den.apply({"params": net}, z_t, t, audio=batch[self.audio_key], audio_mask=mask,
                          drop_text=drop_text, drop_audio=drop_audio, train=train, rngs=rngs,
                          **self.text_kwargs(frozen_, batch))[0]

  def scaled_latents(self, params, frozen_, batch):
    st = params["stats"]
    mu, x, mask = self.latents(frozen_["vae"], batch)
    return (mu - jax.lax.stop_gradient(st["latent_mean"])) / jax.lax.stop_gradient(
        st["latent_std"]), x, mask

  def loss(self, params, batch, rng, frozen_, step):
    """PoseTalk eq. 2 with condition dropout (p_drop_text, p_drop_audio) for eq. 3's guidance."""
    del step
    z0, _, _ = self.scaled_latents(params, frozen_, batch)
    b = z0.shape[0]
    r_t, r_n, r_dt, r_da, r_drop = jax.random.split(rng, 5)
    t = jax.random.randint(r_t, (b,), 0, self.sched.num_steps)
    noise = jax.random.normal(r_n, z0.shape, jnp.float32)
    z_t = diffusion.q_sample(self.sched, z0, t, noise)
    has_text = jnp.any(batch["text_mask"].astype(bool), axis=1)
    drop_text = jax.random.bernoulli(r_dt, self.p_text, (b,)) | ~has_text
    drop_audio = jax.random.bernoulli(r_da, self.p_audio, (b,))
    eps = self.eps_pred(params, frozen_, batch, z_t, t, drop_text, drop_audio, train=True,
                        rng=r_drop)
    l = diffusion.eps_loss(eps, noise)
    return l, {"loss_eps": l, "latent_abs": jnp.mean(jnp.abs(z0))}

  def evaluate(self, params, batch, frozen_):
    d = self.config.diffusion
    z0, x, mask = self.scaled_latents(params, frozen_, batch)
    b = z0.shape[0]
    rng = jax.random.PRNGKey(int(self.config.seed) + 101)
    r_t, r_n, r_s, r_e = jax.random.split(rng, 4)
    t = jax.random.randint(r_t, (b,), 0, self.sched.num_steps)
    noise = jax.random.normal(r_n, z0.shape, jnp.float32)
    z_t = diffusion.q_sample(self.sched, z0, t, noise)
    no = jnp.zeros((b,), bool)
    out = {"loss_eps": diffusion.eps_loss(
        self.eps_pred(params, frozen_, batch, z_t, t, no, no, train=False), noise)}
    # Guided DDIM samples (text + audio) vs the real windows.
    kw = self.text_kwargs(frozen_, batch)
    has_text = jnp.any(kw["text_mask"], axis=1)
    gen, _ = pld_lib.sample_window(
        self.vae, self.den, self.sched, frozen_["vae"], params,
        jax.random.normal(r_s, z0.shape, jnp.float32), audio=batch[self.audio_key],
        audio_mask=mask, use_text=has_text, use_audio=jnp.ones((b,), bool),
        guidance=float(d.guidance), steps=int(d.sample_steps), eta=float(d.eta), rng=r_e,
        num_frames=x.shape[1], **kw)
    ratio = motion_eval.variance_ratio(gen, x, mask)
    out["var_ratio_mean"] = jnp.mean(ratio)
    out["var_ratio_min"] = jnp.min(ratio)
    out["var_ratio_max"] = jnp.max(ratio)
    return out

  def infer(self, params, frozen_, inputs):
    """One guided DDIM window: inputs mel [B, W, 16, 80] (audio=wav2vec: wav2vec [B, W, C]),
    text_ids/text_mask [B, L], noise [B, N, D] -> normalised pose [B, W, 6] and gaze [B, W, 2]."""
    d = self.config.diffusion
    b, w = inputs[self.audio_key].shape[:2]
    kw = self.text_kwargs(frozen_, inputs)
    gen, _ = pld_lib.sample_window(
        self.vae, self.den, self.sched, frozen_["vae"], params, inputs["noise"],
        audio=inputs[self.audio_key], use_text=jnp.any(kw["text_mask"], axis=1),
        use_audio=jnp.ones((b,), bool), guidance=float(d.guidance), steps=int(d.sample_steps),
        eta=0.0, num_frames=w, **kw)
    return {"pose": gen[..., :6], "gaze": gen[..., 6:]}

  def infer_example(self):
    w, lt = int(self.config.input.window), int(self.config.input.get("text_len", 32))
    audio = (np.zeros([1, w, 16, 80], np.float32) if self.audio_dim is None
             else np.zeros([1, w, self.audio_dim], np.float32))
    return {self.audio_key: audio,
            "text_ids": np.zeros([1, lt], np.int32), "text_mask": np.zeros([1, lt], bool),
            "noise": np.zeros([1, self.vae.latent_tokens, self.vae.latent_dim], np.float32)}


def get_task(config, *, mesh) -> Task:
  """The pld stage (see module docstring)."""
  del mesh
  stage = _PLDStage(config)
  return Task(init=stage.init, loss=stage.loss, frozen=stage.frozen, evaluate=stage.evaluate,
              infer=stage.infer, infer_example=stage.infer_example)
