"""TEST FIXTURE (not a jaxtalk stage): a small real regression task for the trainer's tests.

It reads `pose`, `gaze` and `mel` of (synthetic) batches and predicts the next frame's pose and
gaze from the current frame's pose, gaze and mean log-mel window with a 2-layer MLP whose
kernels carry logical axis names (so they shard over `fsdp`/`tensor`). Options exercise every
path of `jaxtalk/train.py`: a frozen (read-only) input, an LSGAN discriminator on the predicted
motion, evaluation, an inference function for export, and NaN injection at a given step.

Use `config.task = "regression_stage"` with `tests/` on `sys.path` (pytest puts it there).
"""

from __future__ import annotations

import sys
import os

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from jaxtalk.tasks import Task  # pylint: disable=g-import-not-at-top,wrong-import-position

_IN = 6 + 2 + 80
_OUT = 8


class Regressor(nn.Module):
  """MLP: [B, T, 88] features -> [B, T, 8] next-frame (pose, gaze).

  Attributes:
    width: hidden width (the "mlp" axis; "embed" is the 88 input features).
  """
  width: int = 64

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.lecun_normal()
    h = nn.Dense(self.width, name="hidden",
                 kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))(x)
    h = nn.gelu(h)
    return nn.Dense(_OUT, name="out",
                    kernel_init=nn.with_logical_partitioning(init, ("mlp", "embed")),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(h)


class Critic(nn.Module):
  """LSGAN critic on motion sequences: [B, T, 8] -> [B] scores."""

  @nn.compact
  def __call__(self, m):
    init = nn.initializers.lecun_normal()
    h = nn.Dense(32, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")))(m)
    h = nn.leaky_relu(h, 0.2)
    return nn.Dense(1, kernel_init=nn.with_logical_partitioning(init, ("mlp", "embed")))(
        h).mean(axis=(1, 2))


def features(batch):
  """(inputs [B, T-1, 88], targets [B, T-1, 8]) from pose/gaze/mel."""
  x = jnp.concatenate([batch["pose"], batch["gaze"], batch["mel"].mean(axis=2)], axis=-1)
  y = jnp.concatenate([batch["pose"], batch["gaze"]], axis=-1)
  return x[:, :-1], y[:, 1:]


def get_task(config, *, mesh) -> Task:
  del mesh
  cfg = config.regression
  model, critic = Regressor(width=cfg.width), Critic()
  frozen = {"target_scale": np.full([_OUT], cfg.target_scale, np.float32)}

  def init(rng, batch):
    return model.init(rng, features(batch)[0])

  def predict(params, batch):
    x, y = features(batch)
    return model.apply(params, x), y

  def loss(params, batch, rng, frozen, step):
    del rng
    pred, y = predict(params, batch)
    y = y * frozen["target_scale"]
    loss_pose = jnp.mean((pred[..., :6] - y[..., :6]) ** 2)
    loss_gaze = jnp.mean((pred[..., 6:] - y[..., 6:]) ** 2)
    if cfg.nan_at_step > 0:
      loss_gaze = jnp.where(step + 1 == cfg.nan_at_step, jnp.nan, loss_gaze)
    aux = {"loss_pose": loss_pose, "loss_gaze": loss_gaze}
    total = loss_pose + loss_gaze
    if cfg.disc:
      score = critic.apply(frozen["disc"], pred)
      aux["loss_adv"] = jnp.mean((score - 1.0) ** 2)
      total = total + cfg.adv_weight * aux["loss_adv"]
    return total, aux

  def disc_init(rng, batch):
    return critic.init(rng, features(batch)[1])

  def disc_loss(dparams, params, batch, rng, frozen, step):
    del rng, step
    pred, y = predict(params, batch)
    pred = jax.lax.stop_gradient(pred)
    y = y * frozen["target_scale"]
    real = jnp.mean((critic.apply(dparams, y) - 1.0) ** 2)
    fake = jnp.mean(critic.apply(dparams, pred) ** 2)
    return real + fake, {"loss_real": real, "loss_fake": fake}

  def evaluate(params, batch, frozen):
    pred, y = predict(params, batch)
    y = y * frozen["target_scale"]
    return {"mse": jnp.mean((pred - y) ** 2),
            "image_pred": jnp.tanh(pred[:, None, :, :3])}  # [B, 1, T-1, 3] strip

  def infer(params, frozen, inputs):
    del frozen
    return {"next_motion": predict(params, inputs)[0]}

  def infer_example():
    t = config.input.window
    return {"pose": np.zeros([1, t, 6], np.float32), "gaze": np.zeros([1, t, 2], np.float32),
            "mel": np.zeros([1, t, 16, 80], np.float32)}

  return Task(init=init, loss=loss, frozen=frozen, evaluate=evaluate, infer=infer,
              infer_example=infer_example,
              disc_init=disc_init if cfg.disc else None,
              disc_loss=disc_loss if cfg.disc else None)


def get_config(arg=None):
  """Tiny regression run on synthetic data (a few seconds on CPU)."""
  a = common.parse_arg(arg, disc=False, ema=False, accum=1)
  c = common.base_config()
  c.task = "regression_stage"
  c.total_steps = 6
  c.batch_size = 8
  c.grad_accum_steps = a.accum
  c.log_every = 2
  c.eval_every = 3
  c.eval_batches = 2
  c.checkpoint_every = 3
  c.ema_decay = 0.9 if a.ema else 0.0
  c.progress = False
  c.optax.lr = 3e-3
  c.optax.warmup_steps = 2
  c.optax.weight_decay = 1e-4
  c.disc_optax.lr = 1e-3
  c.input.synthetic = True
  c.input.window = 8
  c.input.resolution = 16
  c.input.keys = ("pose", "gaze", "mel")
  c.regression = dict(width=64, target_scale=1.0, disc=a.disc, adv_weight=0.05, nan_at_step=0)
  return c
