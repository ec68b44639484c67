"""PC-Talk's stage configs."""
