"""Kiosks: enrollment codes, enrollment, key history and rotation, authentication of signed kiosk
messages (taps, heartbeats, rotations), heartbeats and health, and revocation."""
