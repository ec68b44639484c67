"""GoHD's networks (one model per file)."""
