"""Masked forms of sensitive values, for screens and logs (never reversible)."""

from __future__ import annotations


def mask_card_no(card_no: str) -> str:
    """``3104********8901``: first and last four digits, fixed-width middle (hides the length too)."""
    return f"{card_no[:4]}********{card_no[-4:]}"


def mask_uid(uid: str) -> str:
    """``A1B2****``: the first two bytes only."""
    return f"{uid[:4]}****"


def mask_name(name: str) -> str:
    """张*明 / 欧**娜 / 张*: keep the first and (for three or more characters) the last character."""
    name = name.strip()
    if len(name) <= 2:
        return name[:1] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
