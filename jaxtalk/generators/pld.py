"""Sampling head poses with PoseTalk's Pose Latent Diffusion: `sample_motion(params, audio, text)`.

`PLDParams` bundles everything sampling needs: the frozen pose-VAE params and architecture, the
denoiser params (its "stats" subtree holds the pose/gaze normalisation mean/std and the latent
mean/std used to scale VAE latents), the denoiser architecture, the diffusion settings, the
training window, the text tokenizer (word vocabulary or CLIP folder) and, with CLIP, the frozen
CLIP text encoder. `load_pld(<pld workdir>/params)` builds it from the folders `train.py`
writes (params + `config.json` of the PLD stage and of the VAE stage named by
`config.init_from.pose_vae`).

Audio condition (`audio_condition`): what the denoiser was trained on (`audio_feature(model)`):
Wav2Lip log-mel windows, or, for a PLD trained with configs/posetalk/pld.py `audio=wav2vec`,
wav2vec 2.0
features computed from the waveform by the same code and folder as preprocessing
(`jaxtalk.features.audio.Wav2Vec2Features`, 25 fps alignment of
`jaxtalk.features.wav2vec.to_video_frames`),
rounded to float16 as the shards store them. The wav2vec model is loaded once per `PLDParams`.

Long audio: windows of the training length W overlap by `overlap` frames. Window i > 0 is
sampled with DDIM while its first frames are *inpainted* from window i-1: at every DDIM step the
predicted clean latent is decoded, its overlap frames are replaced by the previous window's frames,
and it is re-encoded (posterior mean) before the DDIM update. The overlap is then cross-faded
linearly (a partition of unity), so the output has no jump at window borders.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtalk.features import audio as audio_lib
from jaxtalk import diffusion
from jaxtalk.core import files
from jaxtalk import motion as motion_lib
from jaxtalk.features import text as text_lib
from jaxtalk.motion import windows as windows_lib
from jaxtalk.models.posetalk import pose_denoiser as den_lib
from jaxtalk.models.posetalk import pose_vae as vae_lib

PyTree = Any
MODES = ("text_audio", "text", "audio", "none")


def audio_feature(model_cfg) -> str:
  """"mel" or "wav2vec": the per-frame audio condition of a pld `config.model` mapping.

  Raises:
    ValueError: an unknown `audio_feature` with `audio_input="features"`.
  """
  m = dict(model_cfg)
  if m.get("audio_input", "mel") == "mel":
    return "mel"
  feature = m.get("audio_feature", "wav2vec")
  if feature != "wav2vec":
    raise ValueError(f"pld model: audio_feature={feature!r}; expected wav2vec (with "
                     "audio_input='features')")
  return feature


def make_schedule(diff_cfg) -> diffusion.Schedule:
  """The PLD's training schedule (`diffusion.schedule_from_config`)."""
  return diffusion.schedule_from_config(diff_cfg)


def split_stats(den_params):
  """`(network params, stats)` of a PLD params tree (stats = the frozen "stats" subtree)."""
  net = {k: v for k, v in den_params.items() if k != "stats"}
  return net, den_params["stats"]


def sample_window(vae: vae_lib.PoseVAE, den: den_lib.PoseDenoiser, schedule: diffusion.Schedule,
                  vae_params, den_params, noise, *, text_ids=None, text_tokens=None,
                  text_mask=None, audio=None, audio_mask=None, use_text=None, use_audio=None,
                  known=None, known_mask=None, guidance=7.5, steps: int = 50, eta: float = 0.0,
                  rng=None, num_frames: Optional[int] = None):
  """Samples one window of normalised pose+gaze `[B, W, 8]` (traceable; jit it).

  Args:
    vae / den / schedule: the modules and the training schedule.
    vae_params / den_params: params (den_params includes "stats").
    noise: `[B, N, D]` initial latent noise.
    text_ids `[B, L]` (trainable text encoder) or text_tokens `[B, L, Dt]` (CLIP), text_mask
      `[B, L]`; audio `[B, W, 16, 80]` mel windows (or features) with audio_mask `[B, W]`.
    use_text / use_audio: `[B]` bool: which conditions this sample keeps (modes of Table 3).
      The unconditional branch of the guidance drops both (PoseTalk eq. 3).
    known: `[B, W, 8]` normalised frames to inpaint where known_mask `[B, W]` is True.
    guidance: s of eq. 3 (scalar, may be traced; always evaluated as one 2B-batched call).
    steps / eta / rng: DDIM settings.
    num_frames: W (default: audio length, else known length).

  Returns:
    (frames `[B, W, 8]` float32 normalised, z `[B, N, D]` unscaled latents).
  """
  net, stats = split_stats(den_params)
  b = noise.shape[0]
  w = num_frames or (audio.shape[1] if audio is not None else known.shape[1])
  lm, ls = stats["latent_mean"], stats["latent_std"]
  tt, tm, at, am = None, None, None, None
  if text_tokens is None and text_ids is not None:
    text_tokens, _ = den.apply({"params": net}, text_ids, text_mask, method=den.encode_text)
  if text_tokens is not None:
    tt = text_tokens
    tm = text_mask.astype(bool) if text_mask is not None else jnp.ones(tt.shape[:2], bool)
    if use_text is not None:
      tm = tm & use_text.reshape(b, 1)
  if audio is not None:
    am = jnp.ones(audio.shape[:2], bool) if audio_mask is None else audio_mask.astype(bool)
    at, _ = den.apply({"params": net}, audio, am, method=den.encode_audio)
    if use_audio is not None:
      am = am & use_audio.reshape(b, 1)

  def eps_fn(z2, t2, uncond):
    keep = ~uncond[:, None]
    dup = lambda v: None if v is None else jnp.concatenate([v, v], axis=0)
    tm2 = None if tm is None else dup(tm) & keep
    am2 = None if am is None else dup(am) & keep
    e, _ = den.apply({"params": net}, z2, t2, dup(tt), tm2, dup(at), am2, method=den.denoise)
    return e

  guided = lambda z, t: diffusion.guided_eps(eps_fn, z, t, guidance)
  decode = lambda z: vae.apply({"params": vae_params}, z * ls + lm, w, method=vae.decode)
  x0_fn = None
  if known is not None and known_mask is not None:
    km = known_mask.astype(bool)

    def inpaint(z0):
      frames = jnp.where(km[..., None], known.astype(jnp.float32), decode(z0))
      mu, _ = vae.apply({"params": vae_params}, frames, method=vae.encode)
      return jnp.where(jnp.any(km, axis=1)[:, None, None], (mu - lm) / ls, z0)

    def x0_fn(z0, i):
      del i
      # A window without known frames (the first) skips the VAE decode + encode at every step.
      return jax.lax.cond(jnp.any(km), inpaint, lambda z: z, z0)

  z = diffusion.ddim_sample(guided, schedule, noise, steps=steps, eta=eta, rng=rng, x0_fn=x0_fn)
  return decode(z), z * ls + lm


# ---------------------------------------------------------------------------------------------
# The params bundle.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PLDParams:
  """Everything `sample_motion` needs (see module docstring).

  Attributes:
    vae: pose-VAE params. denoiser: PLD params (with "stats").
    vae_model / model / diffusion: architecture and diffusion settings (dicts, as in the configs).
    window: training window W (frames). overlap: frames shared by consecutive windows.
    text_len: token length L. dtype: compute dtype name.
    tokenizer: object with `encode(texts, max_len)` (word vocabulary or CLIP), or None (then
      text prompts raise ValueError).
    clip: `jaxtalk.models.text_encoder.ClipTextEncoder` or None.
    audio_feature: "mel" or "wav2vec" (`audio_feature`). wav2vec_path / wav2vec_layer: the
      wav2vec 2.0 folder and hidden state the training features came from (audio_feature
      "wav2vec"). wav2vec_seconds: longest audio run through wav2vec at once (the preprocessed
      clips' length); longer audio goes in cross-faded chunks of this length.
  """
  vae: PyTree
  denoiser: PyTree
  vae_model: dict
  model: dict
  diffusion: dict
  window: int
  overlap: int = 12
  text_len: int = 32
  dtype: str = "float32"
  tokenizer: Any = None
  clip: Any = None
  audio_feature: str = "mel"
  wav2vec_path: str = ""
  wav2vec_layer: int = -1
  wav2vec_seconds: float = 10.0

  @functools.cached_property
  def wav2vec(self) -> audio_lib.Wav2Vec2Features:
    """The wav2vec 2.0 feature extractor (loaded on first use, then cached).

    Raises:
      ValueError: no folder, a folder that is not a wav2vec checkpoint, or features of another
        size than the denoiser was trained on.
    """
    if not self.wav2vec_path:
      raise ValueError("sample_motion: this PLD conditions on wav2vec 2.0 features but no "
                       "wav2vec folder is set; pass load_pld(..., wav2vec=DIR)")
    feats = audio_lib.Wav2Vec2Features(self.wav2vec_path, layer=self.wav2vec_layer)
    want = _audio_feature_dim(self.denoiser)
    if feats.dim != want:
      raise ValueError(f"wav2vec 2.0 folder {self.wav2vec_path!r} gives {feats.dim}-dim features, "
                       f"the PLD was trained on {want}-dim ones (use the folder given to "
                       "`jaxtalk preprocess --wav2vec_path`)")
    return feats

  @functools.cached_property
  def modules(self):
    vae = vae_lib.from_config(self.vae_model, self.dtype, inference=True)
    den = den_lib.from_config(self.model, vae.latent_tokens, vae.latent_dim, self.dtype,
                         text_vocab_size=0 if self.clip is not None else None)
    return vae, den, make_schedule(self.diffusion)

  @functools.cached_property
  def _window_fn(self):
    vae, den, sched = self.modules
    steps, eta = int(self.diffusion["sample_steps"]), float(self.diffusion["eta"])
    clip = self.clip

    def fn(vae_p, den_p, clip_p, noise, mel, audio_mask, ids, tmask, use_text, use_audio, known,
           known_mask, guidance, rng):
      kw = {}
      if clip is not None:
        kw["text_tokens"] = clip(clip_p, ids, tmask)[0]
      else:
        kw["text_ids"] = ids
      return sample_window(vae, den, sched, vae_p, den_p, noise, text_mask=tmask, audio=mel,
                           audio_mask=audio_mask, use_text=use_text, use_audio=use_audio,
                           known=known, known_mask=known_mask, guidance=guidance, steps=steps,
                           eta=eta, rng=rng, **kw)
    return jax.jit(fn)


def _audio_feature_dim(den_params) -> int:
  """C of the features `FeatureAudioEncoder` was trained on (its input LayerNorm's size)."""
  return int(jax.tree.leaves(den_params["audio_encoder"]["ln_in"])[0].shape[-1])


def _dataset_info(cfg: dict) -> dict:
  """dataset_info.json of the stage's data_dir, or {} when there is none (e.g. a bundle)."""
  data_dir = cfg.get("input", {}).get("data_dir", "")
  path = os.path.join(data_dir, "dataset_info.json") if data_dir else ""
  return files.read_json(path) if path and os.path.isfile(path) else {}


def wav2vec_folder(cfg: dict) -> str:
  """The wav2vec 2.0 folder a pld stage config's features came from ("" if not recorded):
  `model.wav2vec_path`, else what preprocessing recorded in the data_dir's dataset_info.json."""
  info = _dataset_info(cfg)
  return (cfg.get("model", {}).get("wav2vec_path") or (info.get("wav2vec") or {}).get("path")
          or info.get("options", {}).get("wav2vec_path") or "")


def load_pld(params_dir: str, *, vae_dir: Optional[str] = None,
             vocab: Optional[Sequence[str]] = None, wav2vec: Optional[str] = None) -> PLDParams:
  """Loads a `PLDParams` bundle from a trained (or exported) PLD stage.

  Args:
    params_dir: `<pld workdir>/params` (params-only checkpoint); `<pld workdir>/config.json`
      gives the architecture, diffusion settings, the VAE location and the data directory.
    vae_dir: the VAE params folder (default: the PLD config's `init_from.pose_vae`).
    vocab: word vocabulary (default: `dataset_info.json` of the PLD config's data_dir, if any).
    wav2vec: wav2vec 2.0 folder for a PLD trained on wav2vec features (default:
      `wav2vec_folder(config)`, the folder preprocessing used); ignored for a log-mel PLD.

  Raises:
    ValueError / FileNotFoundError: missing folders or configs, naming the path; a wav2vec PLD
      without a wav2vec 2.0 folder (config.json) to compute its audio features with.
  """
  from jaxtalk.core import checkpointing  # pylint: disable=g-import-not-at-top
  cfg = checkpointing.stage_config(params_dir)
  vae_dir = vae_dir or cfg.get("init_from", {}).get("pose_vae")
  if not vae_dir:
    raise ValueError(f"{params_dir}: config has no init_from.pose_vae; pass vae_dir")
  vae_cfg = checkpointing.stage_config(vae_dir, what="init_from.pose_vae")
  model = dict(cfg["model"])
  clip = None
  tokenizer = None
  if model.get("clip_path"):
    from jaxtalk.models import text_encoder  # pylint: disable=g-import-not-at-top
    clip = text_encoder.ClipTextEncoder(model["clip_path"])
    tokenizer = text_lib.make_tokenizer(clip_path=model["clip_path"])
  else:
    data_dir = cfg.get("input", {}).get("data_dir", "")
    if vocab is None and data_dir and os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
      vocab = files.read_json(os.path.join(data_dir, "dataset_info.json")).get("vocab")
    if vocab:
      tokenizer = text_lib.make_tokenizer(vocab=vocab)
  feature = audio_feature(model)
  w2v = ""
  if feature == "wav2vec":
    w2v = wav2vec or wav2vec_folder(cfg)
    if not w2v:
      raise ValueError(
          f"{params_dir}: this PLD was trained on wav2vec 2.0 features (configs/posetalk/pld.py "
          "audio=wav2vec) but its config.json and dataset_info.json record no wav2vec folder; "
          "pass load_pld(..., wav2vec=DIR) (`jaxtalk generate --wav2vec DIR`) with the folder "
          "given to `jaxtalk preprocess --wav2vec_path`")
    if not os.path.isfile(os.path.join(w2v, "config.json")):
      raise ValueError(
          f"{params_dir}: this PLD was trained on wav2vec 2.0 features, but the wav2vec folder "
          f"{w2v!r} ({'given' if wav2vec else 'recorded at preprocessing'}) has no config.json; "
          "pass load_pld(..., wav2vec=DIR) (`jaxtalk generate --wav2vec DIR`) with the folder "
          "given to `jaxtalk preprocess --wav2vec_path`")
  return PLDParams(
      vae=checkpointing.load_params(vae_dir), denoiser=checkpointing.load_params(params_dir),
      vae_model=dict(vae_cfg["model"]), model=model, diffusion=dict(cfg["diffusion"]),
      window=int(cfg["input"]["window"]), overlap=int(cfg.get("sampling", {}).get("overlap", 12)),
      text_len=int(cfg["input"].get("text_len", 32)), dtype=str(cfg.get("dtype", "float32")),
      tokenizer=tokenizer, clip=clip, audio_feature=feature, wav2vec_path=w2v,
      wav2vec_layer=int(model.get("wav2vec_layer", -1)),
      wav2vec_seconds=float(cfg.get("sampling", {}).get("wav2vec_seconds", 10.0)))


# ---------------------------------------------------------------------------------------------
# sample_motion.
# ---------------------------------------------------------------------------------------------

def _audio_frames(audio, seconds) -> tuple[Optional[np.ndarray], int]:
  if audio is None:
    if seconds is None:
      raise ValueError("sample_motion: give audio or seconds")
    return None, int(round(float(seconds) * motion_lib.FPS))
  if isinstance(audio, (str, os.PathLike)):
    audio = audio_lib.load_audio(os.fspath(audio))
  wav = np.asarray(audio, np.float32)
  if wav.ndim != 1:
    raise ValueError(f"sample_motion: audio must be mono [N] samples at 16 kHz, got {wav.shape}")
  n = wav.shape[0] // audio_lib.SAMPLES_PER_FRAME
  if seconds is not None:
    n = int(round(float(seconds) * motion_lib.FPS))
  if n < 1:
    raise ValueError(f"sample_motion: audio of {wav.shape[0]} samples is shorter than one frame")
  return wav, n


def audio_condition(params: PLDParams, wav: Optional[np.ndarray], num_frames: int,
                    offset: int = 0) -> np.ndarray:
  """The denoiser's audio input for video frames `offset .. offset + num_frames - 1`.

  Args:
    params: the bundle (its `audio_feature` says which condition).
    wav: 16 kHz mono float32 `[N]`, or None (zeros: the audio condition is then dropped).
    num_frames / offset: frames wanted; frames outside `[0, N // 640)` repeat the edge frame.

  Returns:
    float32 `[num_frames, 16, 80]` log-mel windows (`jaxtalk.features.audio.mel_windows`), or
    `[num_frames, C]` wav2vec features: `params.wav2vec` (the preprocessing path) on the whole
    audio, in cross-faded chunks of `params.wav2vec_seconds` when longer, rounded to float16
    as stored in the shards, so a clip's audio gives its stored `wav2vec` rows.
  """
  if params.audio_feature == "mel":
    if wav is None:
      return np.zeros((num_frames, audio_lib.MEL_STEP, audio_lib.NUM_MELS), np.float32)
    return audio_lib.mel_windows(audio_lib.log_mel(wav), num_frames, offset=offset)
  if wav is None:
    return np.zeros((num_frames, _audio_feature_dim(params.denoiser)), np.float32)
  w2v = params.wav2vec
  spf = audio_lib.SAMPLES_PER_FRAME
  total = max(1, wav.shape[0] // spf)
  chunk = max(1, int(round(params.wav2vec_seconds * audio_lib.FPS)))
  feats = windows_lib.run_windowed(lambda s, e: w2v(wav[s * spf:e * spf]), total, chunk,
                                   chunk // 5 if total > chunk else 0)
  feats = feats.astype(np.float16).astype(np.float32)
  return feats[np.clip(np.arange(offset, offset + num_frames), 0, total - 1)]


def preroll_frames(window: int, overlap: int) -> int:
  """Extra frames `sample_motion` samples before the first and after the last output frame
  (so window k of a T-frame request starts at frame `window_starts(T + 2 e, ...)[k] - e`)."""
  return max(0, min(int(overlap), int(window) // 4))


def sample_motion(params: PLDParams, audio=None, text: Optional[str] = None,
                  seconds: Optional[float] = None, guidance: float = 7.5,
                  seed: int = 0) -> motion_lib.Motion:
  """Samples head pose and gaze for speech and/or a text prompt (PoseTalk PLD, eqs. 2-3).

  Args:
    params: a `PLDParams` bundle (`load_pld`).
    audio: 16 kHz mono float32 samples `[N]` in [-1, 1], or a path to any audio/video file;
      None for text-only / unconditional sampling.
    text: motion description, or None.
    seconds: output duration (default: the audio's duration; required without audio).
    guidance: s of PoseTalk eq. 3 (7.5 in the paper; 1 disables guidance).
    seed: seed of the latent noise.

  Returns:
    `Motion` with pose `[1, T, 6]` and gaze `[1, T, 2]` in raw units (radians, crop-relative),
    T = round(seconds * 25) (audio: N // 640 frames).

  Raises:
    ValueError: no audio and no seconds, unreadable audio, or a text prompt without a tokenizer.
  """
  wav, total = _audio_frames(audio, seconds)
  w, ov = int(params.window), int(params.overlap)
  # Pre- and post-roll: the sequence is sampled `edge` frames longer at both ends (audio windows
  # edge-clamped) and cut, so its first and last frames are not a window's edge frames, which
  # are sampled least accurately (benchmarks/results/tuning_notes.md).
  edge = preroll_frames(w, ov)
  n = total + 2 * edge
  padded = max(n, w)
  # The audio condition: [Tp, 16, 80] log-mel windows or [Tp, C] wav2vec features.
  mel_all = audio_condition(params, wav, padded, offset=-edge)
  valid = np.arange(padded) < n
  if text:
    if params.tokenizer is None:
      raise ValueError("sample_motion: text given but the bundle has no tokenizer (no vocab / "
                       "CLIP folder); pass vocab= to load_pld")
    ids, tmask = params.tokenizer.encode([text], params.text_len)
  else:
    ids = np.zeros((1, params.text_len), np.int32)
    tmask = np.zeros((1, params.text_len), bool)
  use_text = np.array([bool(tmask.any())])
  use_audio = np.array([wav is not None])
  vae, _, _ = params.modules
  starts = windows_lib.window_starts(padded, w, ov)
  out = np.zeros((padded, vae.features), np.float32)
  done = 0  # frames [0, done) are final
  key = jax.random.PRNGKey(seed)
  clip_p = params.clip.params if params.clip is not None else None
  for i, s in enumerate(starts):
    e = s + w
    known_mask = (np.arange(s, e) < done)[None]
    known = out[s:e][None]
    k_noise, k_eta = jax.random.split(jax.random.fold_in(key, i))
    noise = jax.random.normal(k_noise, (1, vae.latent_tokens, vae.latent_dim), jnp.float32)
    frames, _ = params._window_fn(  # pylint: disable=protected-access
        params.vae, params.denoiser, clip_p, noise, mel_all[s:e][None], valid[s:e][None], ids,
        tmask, use_text, use_audio, known, known_mask, jnp.float32(guidance), k_eta)
    done = windows_lib.continue_sequence(out, frames[0], s, done)
  stats = params.denoiser["stats"]
  raw = motion_lib.denormalize(out[edge:edge + total], np.asarray(stats["feat_mean"]),
                               np.asarray(stats["feat_std"]))
  return motion_lib.Motion.from_features(jnp.asarray(raw[None], jnp.float32))


def lazy_sampler(pld_dir: str, vae_dir: str, vocab, wav2vec: Optional[str] = None):
  """`sample_motion(wav, text=None, guidance=7.5, seed=0, num_frames=None, source_motion=None)
  -> Motion` over an exported PLD, loaded on first use (a bundle without text or audio use never
  pays for it); `source_motion` (the portrait's) is accepted and unused.

  Errors loading or sampling raise `video_io.InputError` naming the folder or the problem.
  """
  from jaxtalk.serve.video_io import InputError  # pylint: disable=g-import-not-at-top
  state = {}

  def sample(wav, text=None, guidance: float = 7.5, seed: int = 0,
             num_frames: Optional[int] = None, source_motion=None) -> motion_lib.Motion:
    del source_motion  # PoseTalk's PLD is not conditioned on the portrait's pose.
    if "params" not in state:
      try:
        state["params"] = load_pld(pld_dir, vae_dir=vae_dir, vocab=vocab, wav2vec=wav2vec)
      except (ValueError, OSError) as e:
        raise InputError(f"{pld_dir}: cannot load the pose model ({e})") from e
    try:
      return sample_motion(
          state["params"], np.asarray(wav, np.float32), text=text, guidance=guidance, seed=seed,
          seconds=None if num_frames is None else num_frames / motion_lib.FPS)
    except ValueError as e:
      raise InputError(f"pose model: {e}") from e

  return sample
