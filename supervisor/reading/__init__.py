"""Reading logs: bytes from a growing file -> numbered lines with byte offsets (no parsing)."""
