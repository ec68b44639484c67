"""Loaders and converters of pretrained networks the papers use."""
