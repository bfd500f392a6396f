"""How card identifiers are shown on screens and in logs — one policy for kiosk, simulators and server.

One policy matters: if the server showed a UID's first bytes and a kiosk log its last ones, anyone
seeing both would learn most of the UID. Masks are never reversible.
"""

from __future__ import annotations


def mask_uid(uid: str | bytes) -> str:
    """``******D4``: only the tail shows — the last byte, or the last two of a 7- or 10-byte UID."""
    text = uid.hex().upper() if isinstance(uid, bytes) else uid.upper()
    visible = 4 if len(text) >= 12 else 2
    return "*" * max(0, len(text) - visible) + text[-visible:]


def mask_card_no(card_no: str) -> str:
    """``3104********8901``: the issuer prefix and the last four digits, fixed-width middle."""
    return f"{card_no[:4]}********{card_no[-4:]}"
