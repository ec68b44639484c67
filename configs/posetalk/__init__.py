"""PoseTalk's stage configs."""
