"""GoHD's training stages."""
