"""Checks on free text that operators type (names, titles), shared by the services."""

from __future__ import annotations

from server.errors import InvalidInput, ReasonRequired


def clean_text(value: str, *, field: str, max_length: int) -> str:
    """``value`` stripped; raises InvalidInput when empty or longer than the column allows."""
    text = " ".join(value.split())
    if not text:
        raise InvalidInput(f"{field}不能为空")
    if len(text) > max_length:
        raise InvalidInput(f"{field}最长{max_length}个字符")
    return text


def required_reason(value: str, *, missing: str, field: str = "理由", max_length: int = 500) -> str:
    """A reason that must be given (audited decisions): ReasonRequired(*missing*) when blank,
    else the cleaned text (InvalidInput when too long)."""
    if not value.strip():
        raise ReasonRequired(missing)
    return clean_text(value, field=field, max_length=max_length)
