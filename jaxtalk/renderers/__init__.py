"""Renderers: (source portrait, `Motion`, audio features) -> frames."""
