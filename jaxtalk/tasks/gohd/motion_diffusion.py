"""Stages `gohd_pose` and `gohd_gaze`: GoHD's conformer diffusion of head pose (or gaze) from audio
(section 3.1, eqs. 1-4; configs/gohd/pose.py, configs/gohd/gaze.py).

Input: `pose [B, T, 6]` (or `gaze [B, T, 2]`, `config.model.target`), normalised with the dataset
statistics, the audio condition (`mel [B, T, 16, 80]`, or stored `wav2vec [B, T, C]`) and
`mask [B, T]`. x_0 = Δp = p_{1:T} − p_0 with p_0 the window's first frame (eq. 1), divided per
dimension by the residuals' std (`params["stats"]["residual_std"]`, measured on the first
training batch and never trained; rotations move ~5x less than translations in normalised units,
and unit-scale dimensions are what the noise schedule assumes). Loss: eq. 2,
`||ε − ε_θ(x_n, c, n)||²` over valid frames. GoHD trains a p_0-conditional and a
p_0-unconditional model separately; here one network learns both, p_0 being dropped for a
fraction `config.cond.p_drop_p0` of the windows (classifier-free-guidance training, Ho &
Salimans 2021), so eq. 3 needs one network.

Eval: ε-loss at fixed noise, and guided samples (eq. 3 with `config.diffusion.gamma`, DDIM
`sample_steps`) from each real window's p_0: the per-dimension variance of the samples over the
real windows' (`var_ratio_*`, 1 = same spread) and their distance to the real motion
(`rmse_sample`, normalised units).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk import diffusion
from jaxtalk.evaluators import motion as motion_eval
from jaxtalk.generators import gohd as gohd_lib
from jaxtalk.models.gohd import pose_denoiser
from jaxtalk.tasks import Task

TARGET_DIMS = {"pose": 6, "gaze": 2}


def make_schedule(diff_cfg) -> diffusion.Schedule:
  """The training schedule of `config.diffusion` (GoHD: linear, 150 steps, 1e-4 .. 0.05)."""
  return diffusion.schedule_from_config(diff_cfg)


def audio_key(config) -> str:
  """The batch key of the audio condition: "mel", or "wav2vec" for `model.audio_input="features"`."""
  return "wav2vec" if config.model.get("audio_input", "mel") == "features" else "mel"


def residual_motion(batch, target: str):
  """`(x0 [B, T, D] = p − p_0, p0 [B, D], x [B, T, D], mask [B, T])` (GoHD eq. 1), float32."""
  x = batch[target].astype(jnp.float32)
  mask = batch.get("mask")
  mask = jnp.ones(x.shape[:2], bool) if mask is None else mask.astype(bool)
  p0 = x[:, 0]
  x0 = jnp.where(mask[..., None], x - p0[:, None], 0.0)
  return x0, p0, x, mask


def split(params):
  """`({"params": network params}, residual_std [D])` of the stage's params (stats never
  trained)."""
  net_params = {k: v for k, v in params.items() if k != "stats"}
  return {"params": net_params}, jax.lax.stop_gradient(params["stats"]["residual_std"])


def masked_eps_loss(pred, eps, mask):
  """Eq. 2's squared error, averaged over valid frames (`mask [B, T]`) and dimensions."""
  w = mask.astype(jnp.float32)[..., None]
  return jnp.sum((pred - eps) ** 2 * w) / jnp.maximum(jnp.sum(w) * pred.shape[-1], 1.0)


def model_target(config) -> str:
  """"pose" or "gaze" (`config.model.target`); raises ValueError otherwise."""
  target = str(config.model.get("target", "pose"))
  if target not in TARGET_DIMS:
    raise ValueError(f"gohd motion diffusion: model.target={target!r}; expected pose or gaze")
  return target


def get_task(config, *, mesh) -> Task:
  """The gohd_pose / gohd_gaze stage (see module docstring).

  Raises:
    ValueError: `config.model.target` not "pose" or "gaze".
  """
  del mesh
  target = model_target(config)
  net = pose_denoiser.from_config(config.model, config.dtype, out_dim=TARGET_DIMS[target])
  sched = make_schedule(config.diffusion)
  akey = audio_key(config)
  p_drop = float(config.cond.p_drop_p0)
  d = config.diffusion

  def init(rng, batch):
    x0, p0, _, mask = residual_motion(batch, target)
    b = x0.shape[0]
    p = dict(net.init({"params": rng}, x0, jnp.zeros((b,), jnp.int32), batch[akey], p0,
                      jnp.ones((b,), bool), mask)["params"])
    w = mask.astype(jnp.float32)[..., None]
    var = jnp.sum(x0 ** 2 * w, axis=(0, 1)) / jnp.maximum(jnp.sum(w), 1.0)
    p["stats"] = {"residual_std": jnp.maximum(jnp.sqrt(var), 1e-3)}
    return p

  def noised(params, batch, rng):
    x0, p0, x, mask = residual_motion(batch, target)
    x0 = x0 / split(params)[1]
    r_n, r_e = jax.random.split(rng)
    n = jax.random.randint(r_n, (x0.shape[0],), 0, sched.num_steps)
    eps = jax.random.normal(r_e, x0.shape, jnp.float32)
    return diffusion.q_sample(sched, x0, n, eps), n, eps, p0, x, mask

  def loss(params, batch, rng, frozen, step):
    """GoHD eq. 2 with p_0 dropped for a fraction p_drop_p0 of the windows (eq. 3's guidance)."""
    del frozen, step
    r_noise, r_drop, r_dropout = jax.random.split(rng, 3)
    x_n, n, eps, p0, _, mask = noised(params, batch, r_noise)
    use_p0 = ~jax.random.bernoulli(r_drop, p_drop, (x_n.shape[0],))
    pred = net.apply(split(params)[0], x_n, n, batch[akey], p0, use_p0, mask, train=True,
                     rngs={"dropout": r_dropout})
    l = masked_eps_loss(pred, eps, mask)
    return l, {"loss_eps": l}

  def evaluate(params, batch, frozen):
    del frozen
    rng = jax.random.PRNGKey(int(config.seed) + 101)
    r_noise, r_sample = jax.random.split(rng)
    x_n, n, eps, p0, x, mask = noised(params, batch, r_noise)
    p, scale = split(params)
    pred = net.apply(p, x_n, n, batch[akey], p0, jnp.ones((x.shape[0],), bool), mask)
    gen = gohd_lib.sample_window(net, p, sched, batch[akey], p0,
                                 jax.random.normal(r_sample, x.shape, jnp.float32),
                                 gamma=float(d.gamma), sampler="ddim",
                                 steps=int(d.sample_steps), scale=scale)
    ratio = motion_eval.variance_ratio(gen, x, mask)
    w = mask.astype(jnp.float32)[..., None]
    rmse = jnp.sqrt(jnp.sum((gen - x) ** 2 * w) / jnp.maximum(jnp.sum(w) * x.shape[-1], 1.0))
    return {"loss_eps": masked_eps_loss(pred, eps, mask), "var_ratio_mean": jnp.mean(ratio),
            "var_ratio_min": jnp.min(ratio), "var_ratio_max": jnp.max(ratio),
            "rmse_sample": rmse}

  def infer(params, frozen, inputs):
    """One guided DDIM window: inputs `<audio key> [B, W, ...]`, `p0 [B, D]` (normalised),
    `noise [B, W, D]` -> `{target: [B, W, D]}` normalised (eqs. 3-4)."""
    del frozen
    p, scale = split(params)
    out = gohd_lib.sample_window(net, p, sched, inputs[akey], inputs["p0"], inputs["noise"],
                                 gamma=float(d.gamma), sampler="ddim",
                                 steps=int(d.sample_steps), scale=scale)
    return {target: out}

  def infer_example():
    w, dim = int(config.input.window), TARGET_DIMS[target]
    audio = (np.zeros([1, w, 16, 80], np.float32) if akey == "mel"
             else np.zeros([1, w, int(config.model.audio_dim)], np.float32))
    return {akey: audio, "p0": np.zeros([1, dim], np.float32),
            "noise": np.zeros([1, w, dim], np.float32)}

  return Task(init=init, loss=loss, evaluate=evaluate, infer=infer, infer_example=infer_example)
