"""Evaluation metrics of jaxtalk, one metric family per module.

* `motion`: head-motion generation (PoseTalk Table 3, GoHD Tables 2, 5, 6): Fréchet distance
  and Diversity over non-network motion features, per-dimension variance ratio, SSIM_p (pose),
  SSIM_e (eye features) and MLD (mouth landmarks of expression coefficients; `compare_expression`),
  and the text+audio / text-only / audio-only comparison on held-out clips.
* `image`: SSIM, PSNR, LPIPS-style perceptual distance.
* `identity`: identity similarity (IP).
* `landmarks`: mouth landmark distance.
* `sync`: SyncNet confidence / distance.
* `reenactment`: self-reenactment evaluation of a renderer (PoseTalk Tables 1-2).
"""
