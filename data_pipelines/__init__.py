"""Apache Beam preprocessing: talking-face videos -> ArrayRecord clip shards (see pipeline.py)."""
