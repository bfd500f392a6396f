"""API bearer tokens."""
