"""PC-Talk's training stages."""
