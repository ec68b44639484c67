"""jaxtalk: one-shot talking-head generation in JAX/Flax (PoseTalk, GoHD, PC-Talk)."""

__version__ = "0.1.0"
