"""Config pieces shared by GoHD's stages (not a stage: no `get_config`).

`animator_model_config(size)` is the face animator's `config.model`
(`jaxtalk.models.gohd.animator.animator_from_config`); the animator's stage config (losses,
optimiser, input) builds on it.
"""

import ml_collections

ANIMATOR_SIZES = ("paper", "tiny")


def animator_model_config(size: str = "paper", image_size=None) -> ml_collections.ConfigDict:
  """The face animator's model config (GoHD section 3.3; `jaxtalk/models/gohd/animator.py`).

  Args:
    size: "paper": GoHD's release (LIA's generator): 256², latent 512, 20 directions, channel
      multiplier 1 (channels 512 up to 32², then 256 / 128 / 64 at 64² / 128² / 256²), driving
      branch 3 dilated Conv1d blocks x 512 over windows of radius 13 (27 frames), a 4-layer ξ MLP.
      "tiny": 64², latent 64, 20 directions, channels 32 up to 32² and 16 at 64², driving branch
      2 blocks x 64, radius 4, a 2-layer MLP; trains in minutes on a 2-core CPU.
    image_size: overrides the size's resolution (a power of two >= 8; channels follow
      channel_base / resolution, capped at channel_max).

  Keys: image_size, latent_dim, num_directions, channel_base (channels at resolution r are
  min(channel_max, channel_base // r); LIA's channel multiplier m is channel_base = 16384·m),
  channel_max, driving_channels, driving_layers, mlp_layers, radius (the driving window is
  2·radius + 1 frames; read by the input side, `animator.driving_windows`).

  Raises:
    ValueError: an unknown size.
  """
  if size == "paper":
    m = dict(image_size=256, latent_dim=512, num_directions=20, channel_base=16384,
             channel_max=512, driving_channels=512, driving_layers=3, mlp_layers=4, radius=13)
  elif size == "tiny":
    m = dict(image_size=64, latent_dim=64, num_directions=20, channel_base=1024, channel_max=32,
             driving_channels=64, driving_layers=2, mlp_layers=2, radius=4)
  else:
    raise ValueError(f"gohd animator: size={size!r}; expected one of {ANIMATOR_SIZES}")
  if image_size is not None:
    m["image_size"] = int(image_size)
  return ml_collections.ConfigDict(m)
