"""Motion generators: audio (+ text) -> `jaxtalk.motion.Motion`."""
