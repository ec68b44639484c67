"""Serving: export (StableHLO + params), the generation bundle, `jaxtalk generate`, video IO."""
