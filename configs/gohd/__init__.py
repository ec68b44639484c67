"""GoHD's stage configs."""
