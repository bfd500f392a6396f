"""Masked forms of sensitive values, for screens and logs (never reversible)."""

from __future__ import annotations

from schemas.masking import mask_card_no, mask_uid

__all__ = ["mask_card_no", "mask_name", "mask_uid"]


def mask_name(name: str) -> str:
    """张*明 / 欧**娜 / 张*: keep the first and (for three or more characters) the last character."""
    name = name.strip()
    if len(name) <= 2:
        return name[:1] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
