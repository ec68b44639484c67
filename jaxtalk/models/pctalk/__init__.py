"""PC-Talk's networks: implicit-keypoint renderer (LivePortrait's F, M, W, G), stitching."""
