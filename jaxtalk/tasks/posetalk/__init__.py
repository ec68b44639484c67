"""PoseTalk's training stages."""
