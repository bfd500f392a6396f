"""Kiosks: enrollment codes, enrollment, key history and rotation, signed heartbeats and health,
revocation, and 刷卡绑定 (binding a card by tapping it at a kiosk in enrol mode)."""
