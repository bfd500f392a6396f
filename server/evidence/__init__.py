"""Evidence an inspector can verify: sealed signed taps on per-kiosk chains, and export codes."""
