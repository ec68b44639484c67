"""Infrastructure shared by every stage: sharding, checkpointing, optimizers, the input
pipeline, logging."""
