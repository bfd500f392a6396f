"""Kiosks and their one-time enrollment codes."""
