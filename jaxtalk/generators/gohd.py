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

`sample_motion(models, audio, source_motion)` (models from
`jaxtalk.tasks.gohd.sampling.load_motion_models`) is GoHD's whole motion path from
trained stages (pose, gaze, and the two-stage expression predictor of section 3.2, eq. 8) to a
`Motion` in raw units; it needs the training shards' dataset_info.json (pose / gaze statistics)
and expression basis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk import diffusion
from jaxtalk import motion as motion_lib
from jaxtalk.features import audio as audio_lib
from jaxtalk.features import expression as expression_lib
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


_WINDOW_FNS = {}


def _window_fn(net, schedule, gamma, sampler, steps):
  """`sample_window` jitted with params and scale as arguments (not baked-in constants), one
  compilation per (network, schedule, sampler settings) for the process, reused across calls."""
  key = (id(net), id(schedule), float(gamma), sampler, steps)
  if key not in _WINDOW_FNS:
    def fn(params, scale, audio, p0, noise, known, known_mask, rng):
      return sample_window(net, params, schedule, audio, p0, noise, gamma=gamma, sampler=sampler,
                           steps=steps, known=known, known_mask=known_mask, rng=rng, scale=scale)
    _WINDOW_FNS[key] = (jax.jit(fn), net, schedule)  # keeps net/schedule alive: ids stay unique.
  return _WINDOW_FNS[key][0]


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
  fn = _window_fn(net, schedule, gamma, sampler, steps)
  out = np.zeros((padded, d), np.float32)
  done, key = 0, jax.random.PRNGKey(seed)
  for i, s in enumerate(windows_lib.window_starts(padded, window, overlap)):
    e = s + window
    k_noise, k_ddpm = jax.random.split(jax.random.fold_in(key, i))
    start = np.asarray(p0, np.float32) if i == 0 else out[s]
    known_mask = (np.arange(s, e) < done)[None]
    y = fn(params, scale, audio[s:e][None], jnp.asarray(start)[None],
           jax.random.normal(k_noise, (1, window, d), jnp.float32),
           out[s:e][None], known_mask, k_ddpm)[0]
    done = windows_lib.continue_sequence(out, y, s, done)
  return out[:total]


# ----------------------------------------------------------------------------------------------
# GoHD's motion from trained stages: pose + gaze diffusion and the two-stage expression predictor.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class MotionStage:
  """One trained stage, ready to sample (built by `jaxtalk.tasks.gohd.sampling.load_motion_models`).

  Attributes:
    config: the stage's resolved config (ConfigDict).
    params: pose / gaze: the denoiser's `{"params": ...}`; expression: the stage's params.
    net / schedule / scale: pose / gaze: the denoiser, its training schedule and the residuals'
      std `[D]` (`params["stats"]["residual_std"]` of the stage).
    infer / frozen: expression: the stage's `Task.infer` and frozen params.
  """
  config: Any
  params: Any
  net: Any = None
  schedule: Any = None
  scale: Any = None
  infer: Any = None
  frozen: Any = None


@dataclasses.dataclass
class MotionModels:
  """GoHD's motion generators and the data statistics they need.

  Attributes:
    pose / gaze / expression: trained gohd_pose, gohd_gaze and gohd_exp_eye stages (gaze and
      expression optional: missing ones keep the source's gaze / have no expression).
    pose_mean, pose_std `[6]`, gaze_mean, gaze_std `[2]`: the shards' statistics (raw units) the
      diffusion stages were trained in.
    basis: the shards' expression basis (f_0 of the source is computed from e_0 with it).
  """
  pose: MotionStage
  gaze: Optional[MotionStage]
  expression: Optional[MotionStage]
  pose_mean: np.ndarray
  pose_std: np.ndarray
  gaze_mean: np.ndarray
  gaze_std: np.ndarray
  basis: Any = None


def _sample_target(stage: MotionStage, mel_w, start_norm, *, gamma, seed):
  d = stage.config.diffusion
  return sample_sequence(stage.net, stage.params, stage.schedule, mel_w, start_norm,
                         window=int(stage.config.input.window),
                         overlap=int(stage.config.sampling.overlap), gamma=gamma,
                         sampler=str(d.sampler), steps=int(d.sample_steps), seed=seed,
                         scale=stage.scale)


def sample_motion(models: MotionModels, audio: np.ndarray, source_motion, seconds=None,
                  gamma: float = 0.4, seed: int = 0):
  """GoHD's audio-driven motion: pose and gaze by conformer diffusion (eqs. 3-4, windows for any
  length) and expression by the two-stage predictor (eq. 8), from one source frame.

  Args:
    models: `jaxtalk.tasks.gohd.sampling.load_motion_models`.
    audio: `[N]` float32 mono speech at 16 kHz in [-1, 1].
    source_motion: `Motion` of the portrait (raw units, `[1, 1, ...]` or `[1, T, ...]`: frame 0
      is used): pose (and gaze; expression `[1, 1, 64]` when `models.expression` is set, zeros =
      the basis' neutral face when None).
    seconds: length of the result (default: the audio's); audio shorter than that is padded
      with silence.
    gamma: γ of eq. 3 (GoHD: 0.4). seed: seed of every noise draw.

  Returns:
    `Motion` `[1, T, ...]`, T = 25 fps frames, raw units; `expression [1, T, 64]` when
    `models.expression` is set, otherwise None.

  Raises:
    ValueError: empty audio or a source without pose.
  """
  wav = np.asarray(audio, np.float32).reshape(-1)
  frames = int(round((seconds if seconds is not None else wav.size / audio_lib.SAMPLE_RATE)
                     * audio_lib.FPS))
  if frames < 1 or wav.size == 0:
    raise ValueError(f"sample_motion: no audio frames (audio {wav.size} samples, seconds "
                     f"{seconds})")
  need = frames * audio_lib.SAMPLES_PER_FRAME
  wav = np.pad(wav, (0, max(need - wav.size, 0)))[:need]
  mel_w = audio_lib.mel_windows(audio_lib.log_mel(wav), frames)
  p0 = np.asarray(source_motion.pose, np.float32).reshape(-1, 6)[0]
  g0 = np.asarray(source_motion.gaze, np.float32).reshape(-1, 2)[0]
  pose = _sample_target(models.pose, mel_w, (p0 - models.pose_mean) / models.pose_std,
                        gamma=gamma, seed=seed) * models.pose_std + models.pose_mean
  if models.gaze is not None:
    gaze = _sample_target(models.gaze, mel_w, (g0 - models.gaze_mean) / models.gaze_std,
                          gamma=gamma, seed=seed + 1) * models.gaze_std + models.gaze_mean
  else:
    gaze = np.broadcast_to(g0, (frames, 2))
  expression = None
  if models.expression is not None:
    k = models.basis.num_components
    e0 = (np.zeros([k], np.float32) if source_motion.expression is None
          else source_motion.expression)
    expression = sample_expression(models.expression, models.basis, mel_w, e0, seed)
  return motion_lib.Motion(pose=jnp.asarray(pose)[None], gaze=jnp.asarray(gaze)[None],
                           expression=expression)


def sample_expression(stage: MotionStage, basis, mel_w, e0, seed: int = 0):
  """ê `[1, T, 64]` float32 of GoHD eq. 8: the two-stage expression predictor over the whole
  sequence in one LSTM pass.

  Args:
    stage: the gohd_exp_eye `MotionStage` (`MotionModels.expression`).
    basis: its expression basis (f_0 = the eye features of e_0 in it).
    mel_w: `[T, 16, 80]` Wav2Lip log-mel windows (`features.audio.mel_windows`).
    e0: `[k]` the source's coefficients (zeros = the basis' neutral face).
    seed: seed of the per-frame noise z.
  """
  k = basis.num_components
  e0 = np.asarray(e0, np.float32).reshape(-1, k)[0]
  f0 = expression_lib.eye_features_from_coefficients(basis, e0)
  frames = mel_w.shape[0]
  noise = jax.random.normal(jax.random.PRNGKey(seed + 2),
                            (1, frames, int(stage.config.model.noise_dim)), jnp.float32)
  out = jax.jit(stage.infer)(stage.params, stage.frozen,
                             {"mel": jnp.asarray(mel_w)[None],
                              "source_expression": jnp.asarray(e0)[None],
                              "source_eye_features": jnp.asarray(f0)[None], "noise": noise})
  return out["expression"]
