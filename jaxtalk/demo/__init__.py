"""`jaxtalk demo`: the built-in clips, the end-to-end run and its report."""
