"""PoseTalk's networks (one model per file)."""
