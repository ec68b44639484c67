"""Evaluation metrics of jaxtalk, one metric family per module.

* `motion`: head-motion generation (PoseTalk Table 3, GoHD Table 2): Fréchet distance and
  Diversity over non-network motion features, per-dimension variance ratio, SSIM_p, and the
  text+audio / text-only / audio-only comparison on held-out clips.
* `image`: SSIM, PSNR, LPIPS-style perceptual distance.
* `identity`: identity similarity (IP).
* `landmarks`: mouth landmark distance.
* `sync`: SyncNet confidence / distance.
* `reenactment`: self-reenactment evaluation of a renderer (PoseTalk Tables 1-2).
"""
