"""jaxtalk networks, one model per file (see ../shared/DESIGN.md)."""
