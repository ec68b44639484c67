"""GoHD's motion generators: audio -> head pose (and gaze) by conformer diffusion (section 3.1).

The denoiser (`jaxtalk.models.gohd.pose_denoiser`) predicts the noise of x_0 = Δp = p_{1:T} − p_0,
the motion relative to the first frame (eqs. 1-2). Sampling combines its p_0-conditional and
p_0-unconditional predictions (eq. 3, `diffusion.gohd_guidance`; both in one batched call) and
adds the sampled residual back (eq. 4):

    ε^γ = γ ε_θ(x_n, a ⊕ p_0, n) + (1 − γ) ε_θ(x_n, a, n),      p̂_{1:T} = p_0 + x̂_0.

Long audio: windows of the training length W overlap by `overlap` frames. Window i > 0 starts
from the pose sampled at its first frame (its p_0, as training windows do), the overlap frames
already sampled are imposed on x̂_0 at every step (inpainting by replacement), and the overlap is
cross-faded linearly, so the sequence has no jump at window borders.

All arrays are normalised pose (or gaze) features, float32.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk import diffusion
from jaxtalk.motion import windows as windows_lib


def guided_eps_fn(net, params, audio, p0, gamma: float, mask=None):
  """`(x_n [B, W, D], n [B]) -> ε^γ` of GoHD eq. 3, one 2B-batched call of `net`.

  Args:
    net / params: a `ConformerPoseDenoiser` and its params (the `{"params": ...}` dict).
    audio: `[B, W, ...]` the window's audio condition. p0: `[B, D]`. mask: optional `[B, W]`.
    gamma: γ (GoHD uses 0.4); 1 = p_0-conditional only, 0 = p_0-unconditional only.
  """
  def eps_fn(x2, n2, uncond):
    # 2B examples (both halves of eq. 3), or B when guided_eps evaluates only the p_0 half (γ=1).
    reps = x2.shape[0] // p0.shape[0]
    dup = lambda v: None if v is None else jnp.concatenate([v] * reps, axis=0)
    return net.apply(params, x2, n2, dup(audio), dup(p0), ~uncond, dup(mask))

  return lambda x, n: diffusion.guided_eps(eps_fn, x, n, gamma)


def sample_window(net, params, schedule: diffusion.Schedule, audio, p0, noise, *,
                  gamma: float = 0.4, sampler: str = "ddpm", steps: Optional[int] = None,
                  known=None, known_mask=None, rng=None, scale=None):
  """One window of motion, GoHD eqs. 3-4 (traceable; jit it).

  Args:
    net / params / schedule: the denoiser, its params and the training schedule.
    audio: `[B, W, 16, 80]` log-mel windows or `[B, W, A]` features.
    p0: `[B, D]` normalised first pose of the window (the source pose for window 0).
    noise: `[B, W, D]` x_N.
    gamma: γ of eq. 3. sampler: "ddpm" (all N steps, as GoHD) or "ddim" (`steps` steps, η = 0).
    known / known_mask: `[B, W, D]` normalised poses imposed where `known_mask [B, W]` is True.
    rng: key of the DDPM noise (required for "ddpm").
    scale: optional `[D]` std of the training residuals: the network diffuses x_0 / scale (each
      dimension at unit scale, as the stage trains it) and the result is scaled back.

  Returns:
    p̂ `[B, W, D]` float32 = p_0 + x̂_0 (eq. 4).

  Raises:
    ValueError: unknown sampler, or "ddpm" without rng.
  """
  eps = guided_eps_fn(net, params, audio, p0, gamma)
  scale = jnp.ones(p0.shape[-1:], jnp.float32) if scale is None else jnp.asarray(scale, jnp.float32)
  x0_fn = None
  if known is not None:
    known_x0 = (known.astype(jnp.float32) - p0[:, None]) / scale
    x0_fn = lambda x0, i: jnp.where(known_mask[..., None], known_x0, x0)
  if sampler == "ddpm":
    if rng is None:
      raise ValueError("sample_window: sampler='ddpm' needs rng")
    x0 = diffusion.ddpm_sample(eps, schedule, noise, rng=rng, x0_fn=x0_fn)
  elif sampler == "ddim":
    x0 = diffusion.ddim_sample(eps, schedule, noise, steps=int(steps or 50), x0_fn=x0_fn)
  else:
    raise ValueError(f"sample_window: sampler={sampler!r}; expected 'ddpm' or 'ddim'")
  return p0[:, None].astype(jnp.float32) + x0 * scale


def sample_sequence(net, params, schedule: diffusion.Schedule, audio: np.ndarray, p0: np.ndarray,
                    *, window: int, overlap: int = 10, gamma: float = 0.4, sampler: str = "ddpm",
                    steps: Optional[int] = None, seed: int = 0, scale=None) -> np.ndarray:
  """Normalised motion `[T, D]` float32 for audio of any length (module docstring).

  Args:
    audio: `[T, 16, 80]` or `[T, A]` per-frame audio condition, T >= 1 frames at 25 fps.
    p0: `[D]` normalised source pose (the portrait's).
    window / overlap: the training window W and the frames shared by consecutive windows.
    gamma / sampler / steps / scale: as `sample_window`. seed: seed of the noise.

  Raises:
    ValueError: as `windows.window_starts` (overlap >= window) or `sample_window`.
  """
  audio = np.asarray(audio, np.float32)
  total, d = audio.shape[0], int(np.shape(p0)[-1])
  padded = max(total, window)
  if padded > total:  # one window longer than the audio: the last frame's audio is repeated.
    audio = np.concatenate([audio, np.repeat(audio[-1:], padded - total, axis=0)])
  fn = jax.jit(functools.partial(sample_window, net, params, schedule, gamma=gamma,
                                 sampler=sampler, steps=steps, scale=scale))
  out = np.zeros((padded, d), np.float32)
  done, key = 0, jax.random.PRNGKey(seed)
  for i, s in enumerate(windows_lib.window_starts(padded, window, overlap)):
    e = s + window
    k_noise, k_ddpm = jax.random.split(jax.random.fold_in(key, i))
    start = np.asarray(p0, np.float32) if i == 0 else out[s]
    known_mask = (np.arange(s, e) < done)[None]
    y = fn(audio[s:e][None], jnp.asarray(start)[None],
           jax.random.normal(k_noise, (1, window, d), jnp.float32),
           known=out[s:e][None], known_mask=known_mask, rng=k_ddpm)[0]
    done = windows_lib.continue_sequence(out, y, s, done)
  return out[:total]
