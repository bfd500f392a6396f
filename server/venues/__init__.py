"""Venues: where kiosks stand and events take place."""
