"""Config pieces shared by PC-Talk's stages (not a stage: no `get_config`).

`renderer_model_config(size)` is the implicit-keypoint renderer's `config.model`
(`jaxtalk.models.pctalk.renderer.renderer_from_config`).
"""

import ml_collections

RENDERER_SIZES = ("paper", "tiny")


def renderer_model_config(size: str = "paper") -> ml_collections.ConfigDict:
  """The renderer's model config (PC-Talk section 3.1; LivePortrait's `models.yaml`).

  Args:
    size: "paper": LivePortrait's modules at 256² in, 256² out (upscale 1; 2 gives its 512²):
      F block 64, 2 down blocks, volume C 32 x D 16 at 64², 6 3-D residual blocks; M ConvNeXt-V2
      tiny (depths 3-3-9-3, dims 96-192-384-768), 21 keypoints; W dense motion hourglass 32 / 5
      blocks / max 1024, compress 4, 256 warped channels; G 6 SPADE middle blocks, hidden 128,
      64 output channels; stitching / retargeting MLPs at LivePortrait's widths.
      "tiny": 64² in and out: F block 16, volume C 16 x D 4 at 16², 1 residual block; M depths
      1-1-2-1, dims 16-32-48-64; W hourglass 8 / 2 blocks / max 64, compress 2, mask kernel 3,
      32 warped channels; G 1 middle block, SPADE hidden 16, 16 output channels; stitching MLP
      widths / 4. Minutes on a CPU.

  Raises:
    ValueError: an unknown size.
  """
  if size == "paper":
    m = dict(image_size=256, block_expansion=64, num_down_blocks=2, volume_channels=32,
             volume_depth=16, num_resblocks=6, motion_depths=(3, 3, 9, 3),
             motion_dims=(96, 192, 384, 768), num_keypoints=21, dense_block_expansion=32,
             dense_num_blocks=5, dense_max_features=1024, compress=4, mask_kernel=7, warp_features=256,
             middle_blocks=6, spade_hidden=128, decoder_features=64, upscale=1,
             stitching_hidden_scale=1)
  elif size == "tiny":
    m = dict(image_size=64, block_expansion=16, num_down_blocks=2, volume_channels=16,
             volume_depth=4, num_resblocks=1, motion_depths=(1, 1, 2, 1),
             motion_dims=(16, 32, 48, 64), num_keypoints=21, dense_block_expansion=8,
             dense_num_blocks=2, dense_max_features=64, compress=2, mask_kernel=3, warp_features=32,
             middle_blocks=1, spade_hidden=16, decoder_features=16, upscale=1,
             stitching_hidden_scale=4)
  else:
    raise ValueError(f"pctalk renderer: size={size!r}; expected one of {RENDERER_SIZES}")
  return ml_collections.ConfigDict(m)
