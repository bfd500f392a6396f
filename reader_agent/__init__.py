"""Kiosk reader agent: reads cards, signs taps, keeps them in a durable outbox and uploads them."""
