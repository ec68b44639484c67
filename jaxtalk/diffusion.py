"""Gaussian diffusion: noise schedules, q_sample, ε-loss, DDPM/DDIM samplers, classifier-free
guidance.

Notation (Ho et al. 2020): `β_t` for t = 0..K-1, `α_t = 1 - β_t`, `ᾱ_t = Π_{s<=t} α_s`.
Forward process: `x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε` (`q_sample`). The network predicts ε
(PoseTalk eq. 2: `L = E ||ε - ε_θ(z_t, t, c)||²`, `eps_loss`).

Guidance:
* PoseTalk eq. 3: `ε^s = s ε_θ(z_t, t, c) + (1 - s) ε_θ(z_t, t, ∅)`, s = 7.5 (`cfg`).
* GoHD eq. 3: `ε^γ = γ ε_θ(x_n, c_{1:T}, n) + (1 - γ) ε_θ(x_n, a_{1:T}, n)`: the same form between
  a fully-conditioned and a less-conditioned prediction, 0 < γ < 1 in GoHD (`gohd_guidance`).
`guided_eps` evaluates both predictions in ONE batched call of the network (2B examples).

All schedule arrays and sampler arithmetic are float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("linear", "scaled_linear", "cosine")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A discrete noise schedule (numpy float64 on the host, cast to float32 when used).

  Attributes:
    betas: `[K]` β_t in (0, 1).
    alphas_cumprod: `[K]` ᾱ_t, decreasing from ~1.
  """
  betas: np.ndarray
  alphas_cumprod: np.ndarray

  @property
  def num_steps(self) -> int:
    return int(self.betas.shape[0])


def make_betas(name: str, num_steps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
  """β schedule `[num_steps]` float64.

  Args:
    name: "linear" (β linear in [beta_start, beta_end], DDPM), "scaled_linear" (√β linear,
      Stable Diffusion / MLD, use e.g. 0.00085..0.012), "cosine" (Nichol & Dhariwal 2021,
      ᾱ(t) = cos²((t/K + s)/(1 + s) · π/2), s = 0.008, β clipped to 0.999; ignores start/end).
    num_steps: K >= 1.

  Raises:
    ValueError: unknown name or bad sizes.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if name == "linear":
    b = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  elif name == "scaled_linear":
    b = np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_steps, dtype=np.float64) ** 2
  elif name == "cosine":
    s = 0.008
    f = lambda t: np.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    t = np.arange(num_steps + 1, dtype=np.float64)
    abar = f(t) / f(0.0)
    b = np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
  else:
    raise ValueError(f"unknown beta schedule {name!r}; expected one of {SCHEDULES}")
  if not (np.all(b > 0) and np.all(b < 1)):
    raise ValueError(f"betas must be in (0, 1); got range [{b.min()}, {b.max()}]")
  return b


def make_schedule(name: str = "scaled_linear", num_steps: int = 1000, beta_start: float = 8.5e-4,
                  beta_end: float = 0.012) -> Schedule:
  """`Schedule` from `make_betas` (defaults: MLD's scaled-linear 1000 steps)."""
  b = make_betas(name, num_steps, beta_start, beta_end)
  return Schedule(betas=b, alphas_cumprod=np.cumprod(1.0 - b))


def schedule_from_config(diff_cfg) -> Schedule:
  """`make_schedule` from a `config.diffusion` mapping (keys schedule, num_steps, beta_start,
  beta_end)."""
  d = dict(diff_cfg)
  return make_schedule(d["schedule"], int(d["num_steps"]), float(d["beta_start"]),
                       float(d["beta_end"]))


def _abar(schedule: Schedule, t):
  """ᾱ_t gathered for integer t (t = -1 gives 1.0: the clean end of the chain)."""
  table = jnp.asarray(np.concatenate([schedule.alphas_cumprod, [1.0]]), jnp.float32)
  return table[jnp.where(t < 0, schedule.num_steps, t)]


def _bcast(v, x):
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(schedule: Schedule, x0, t, noise):
  """`x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε`; x0/noise `[B, ...]`, t `[B]` int -> float32."""
  a = _bcast(_abar(schedule, t), x0)
  return jnp.sqrt(a) * x0.astype(jnp.float32) + jnp.sqrt(1.0 - a) * noise.astype(jnp.float32)


def predict_x0(schedule: Schedule, x_t, t, eps):
  """x0 implied by ε: `(x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)`, float32."""
  a = _bcast(_abar(schedule, t), x_t)
  return (x_t.astype(jnp.float32) - jnp.sqrt(1.0 - a) * eps.astype(jnp.float32)) / jnp.sqrt(a)


def eps_from_x0(schedule: Schedule, x_t, t, x0):
  """ε implied by x0: `(x_t - sqrt(ᾱ_t) x0) / sqrt(1 - ᾱ_t)`, float32."""
  a = _bcast(_abar(schedule, t), x_t)
  return (x_t.astype(jnp.float32) - jnp.sqrt(a) * x0.astype(jnp.float32)) / jnp.sqrt(1.0 - a)


def eps_loss(eps_pred, noise, weights=None):
  """PoseTalk eq. 2: mean over elements of `||ε - ε_θ||²`, float32.

  Args:
    eps_pred, noise: `[B, ...]`. weights: optional `[B]` per-example weights (mean over them).
  """
  se = (eps_pred.astype(jnp.float32) - noise.astype(jnp.float32)) ** 2
  per = jnp.mean(se.reshape(se.shape[0], -1), axis=-1)
  if weights is None:
    return jnp.mean(per)
  w = weights.astype(jnp.float32)
  return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1e-8)


# ---------------------------------------------------------------------------------------------
# Classifier-free guidance.
# ---------------------------------------------------------------------------------------------

def cfg(eps_cond, eps_uncond, scale: float):
  """PoseTalk eq. 3: `s ε_θ(z_t, t, c) + (1 - s) ε_θ(z_t, t, ∅)`."""
  return scale * eps_cond + (1.0 - scale) * eps_uncond


def gohd_guidance(eps_full, eps_less, gamma: float):
  """GoHD eq. 3: `γ ε_θ(x_n, c_{1:T}, n) + (1 - γ) ε_θ(x_n, a_{1:T}, n)` (c = a ⊕ p0)."""
  return gamma * eps_full + (1.0 - gamma) * eps_less


def guided_eps(eps_fn: Callable, x, t, scale: float):
  """Classifier-free guided ε with ONE batched network call.

  Args:
    eps_fn: `(x [2B, ...], t [2B], uncond [2B] bool) -> ε [2B, ...]`; for examples with
      `uncond=True` the caller drops the conditions (or the extra condition, for GoHD eq. 3).
    x: `[B, ...]` noisy inputs. t: `[B]` timesteps. scale: s (eq. 3) or γ (GoHD eq. 3).

  Returns:
    `cfg(ε_cond, ε_uncond, scale)` `[B, ...]` float32. With `scale == 1` (a Python number) only
    the conditional half is evaluated.
  """
  b = x.shape[0]
  if isinstance(scale, (int, float)) and scale == 1.0:
    return eps_fn(x, t, jnp.zeros((b,), bool)).astype(jnp.float32)
  x2 = jnp.concatenate([x, x], axis=0)
  t2 = jnp.concatenate([t, t], axis=0)
  uncond = jnp.concatenate([jnp.zeros((b,), bool), jnp.ones((b,), bool)])
  e = eps_fn(x2, t2, uncond).astype(jnp.float32)
  return cfg(e[:b], e[b:], scale)


# ---------------------------------------------------------------------------------------------
# Samplers.
# ---------------------------------------------------------------------------------------------

def ddim_timesteps(num_train_steps: int, steps: int) -> np.ndarray:
  """Descending int32 timesteps `[steps]` evenly spaced over [0, K-1], starting at K-1."""
  if not 1 <= steps <= num_train_steps:
    raise ValueError(f"steps must be in [1, {num_train_steps}], got {steps}")
  ts = np.round(np.linspace(num_train_steps - 1, 0, steps)).astype(np.int32)
  if len(np.unique(ts)) != steps:
    raise ValueError(f"{steps} DDIM steps are not distinct over {num_train_steps} train steps")
  return ts


def ddim_sample(eps_fn: Callable, schedule: Schedule, x_T, *, steps: int = 50, eta: float = 0.0,
                rng: Optional[jax.Array] = None,
                x0_fn: Optional[Callable] = None, clip_x0: Optional[float] = None,
                return_trajectory: bool = False):
  """DDIM sampler (Song et al. 2021), traceable (one `lax.scan`).

  At step i with timestep t and previous timestep t' (-1 after the last step, ᾱ = 1):
    x̂0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)        [optionally x̂0 <- x0_fn(x̂0, i); clipped]
    ε  <- (x_t - sqrt(ᾱ_t) x̂0) / sqrt(1 - ᾱ_t)       (only when x̂0 was changed)
    σ  = η sqrt((1 - ᾱ_t')/(1 - ᾱ_t)) sqrt(1 - ᾱ_t/ᾱ_t')
    x_t' = sqrt(ᾱ_t') x̂0 + sqrt(1 - ᾱ_t' - σ²) ε + σ z.

  Args:
    eps_fn: `(x_t [B, ...], t [B] int32) -> ε̂` (guidance already applied).
    schedule: the training `Schedule`.
    x_T: `[B, ...]` initial noise.
    steps: number of DDIM steps. eta: 0 deterministic .. 1 DDPM-like. rng: needed if eta > 0.
    x0_fn: optional `(x0_hat, i) -> x0_hat` (e.g. inpainting by replacement).
    clip_x0: clip x̂0 to [-clip_x0, clip_x0] when given.
    return_trajectory: also return the x̂0 predictions `[steps, B, ...]`.

  Returns:
    x_0 `[B, ...]` float32 (and the trajectory when asked).
  """
  ts = ddim_timesteps(schedule.num_steps, steps)
  prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)
  if eta > 0 and rng is None:
    raise ValueError("ddim_sample: eta > 0 needs rng")
  rng = jax.random.PRNGKey(0) if rng is None else rng
  b = x_T.shape[0]

  def body(carry, inp):
    x, key = carry
    i, t, tp = inp
    tb = jnp.full((b,), t, jnp.int32)
    eps = eps_fn(x, tb).astype(jnp.float32)
    x0 = predict_x0(schedule, x, tb, eps)
    if x0_fn is not None or clip_x0 is not None:
      if x0_fn is not None:
        x0 = x0_fn(x0, i)
      if clip_x0 is not None:
        x0 = jnp.clip(x0, -clip_x0, clip_x0)
      eps = eps_from_x0(schedule, x, tb, x0)
    a_t = _abar(schedule, t)
    a_p = _abar(schedule, tp)
    sigma = eta * jnp.sqrt((1.0 - a_p) / (1.0 - a_t)) * jnp.sqrt(jnp.maximum(1.0 - a_t / a_p,
                                                                           0.0))
    key, sub = jax.random.split(key)
    z = jax.random.normal(sub, x.shape, jnp.float32) if eta > 0 else 0.0
    x_prev = (jnp.sqrt(a_p) * x0 + jnp.sqrt(jnp.maximum(1.0 - a_p - sigma ** 2, 0.0)) * eps +
              sigma * z)
    return (x_prev, key), (x0 if return_trajectory else None)

  (x, _), traj = jax.lax.scan(
      body, (x_T.astype(jnp.float32), rng),
      (jnp.arange(steps), jnp.asarray(ts), jnp.asarray(prev)))
  return (x, traj) if return_trajectory else x


def ddpm_sample(eps_fn: Callable, schedule: Schedule, x_T, *, rng: jax.Array,
                clip_x0: Optional[float] = None, x0_fn: Optional[Callable] = None):
  """Ancestral DDPM sampler (Ho et al. 2020) over all K steps, posterior variance β̃_t.

    x̂0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t)
    μ = (sqrt(ᾱ_{t-1}) β_t x̂0 + sqrt(α_t)(1 - ᾱ_{t-1}) x_t) / (1 - ᾱ_t)
    x_{t-1} = μ + sqrt(β̃_t) z (no noise at t = 0),  β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t).

  Args: as `ddim_sample` (`x0_fn(x0_hat, i)`, i = 0 at the first step, is applied before the
  clip). Returns x_0 `[B, ...]` float32.
  """
  k = schedule.num_steps
  betas = jnp.asarray(schedule.betas, jnp.float32)
  b = x_T.shape[0]

  def body(carry, t):
    x, key = carry
    tb = jnp.full((b,), t, jnp.int32)
    eps = eps_fn(x, tb).astype(jnp.float32)
    x0 = predict_x0(schedule, x, tb, eps)
    if x0_fn is not None:
      x0 = x0_fn(x0, k - 1 - t)
    if clip_x0 is not None:
      x0 = jnp.clip(x0, -clip_x0, clip_x0)
    a_t, a_p, beta = _abar(schedule, t), _abar(schedule, t - 1), betas[t]
    mean = (jnp.sqrt(a_p) * beta * x0 + jnp.sqrt(1.0 - beta) * (1.0 - a_p) * x) / (1.0 - a_t)
    var = beta * (1.0 - a_p) / (1.0 - a_t)
    key, sub = jax.random.split(key)
    z = jax.random.normal(sub, x.shape, jnp.float32)
    x = mean + jnp.where(t > 0, jnp.sqrt(var), 0.0) * z
    return (x, key), None

  (x, _), _ = jax.lax.scan(body, (x_T.astype(jnp.float32), rng), jnp.arange(k - 1, -1, -1))
  return x
