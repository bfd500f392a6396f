"""Checks on text from outside, shared by every boundary, and on free text that operators type.

* :func:`check_text` is THE definition of a character no text may hold (:data:`REFUSED_CHARACTERS`).
  Every boundary applies it: HTTP query, path, form and JSON values (:mod:`server.textguard`),
  command-line arguments (:class:`server.cli_support.CheckedArgsGroup`), roster cells
  (:mod:`server.roster.sheet`) and :func:`clean_text` in the services. The kiosk wire messages
  bound their own strings (``schemas.messages``), so one bad envelope fails only itself.
* :func:`like_pattern` makes a search term match literally in ``LIKE``: every LIKE search uses it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from server.errors import InvalidInput, InvalidText, ReasonRequired

# NUL (PostgreSQL refuses it in text), the other C0 controls but tab, newline and carriage return
# (invisible, and they break exports and terminals), and lone surrogates (no UTF-8 form, so no
# database can store them; JSON's "\ud800" and undecodable command-line bytes produce them).
REFUSED_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")

# The escape character of every LIKE pattern built by like_pattern().
LIKE_ESCAPE = "\\"


def has_refused_character(value: str) -> bool:
    return REFUSED_CHARACTERS.search(value) is not None


def check_text(value: str, *, field: str, label: str | None = None) -> str:
    """``value`` unchanged; raises InvalidText (422, naming ``field``, or ``label`` to people) when
    it holds a character in :data:`REFUSED_CHARACTERS`."""
    if has_refused_character(value):
        raise InvalidText(field, label=label)
    return value


def clean_text(value: str, *, field: str, max_length: int) -> str:
    """``value`` stripped; raises InvalidText for a refused character, InvalidInput when empty or
    longer than the column allows."""
    text = " ".join(check_text(value, field=field).split())
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


def like_pattern(text: str) -> str:
    """``%text%`` with ``%``, ``_`` and the escape character taken literally; pass
    ``escape=LIKE_ESCAPE`` to ``like``/``ilike`` (``col(x).like(like_pattern(s), escape=LIKE_ESCAPE)``),
    so a search for ``50%`` finds “50%” and ``张_`` does not find 张四三."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", f"{LIKE_ESCAPE}%")
        .replace("_", f"{LIKE_ESCAPE}_")
    )
    return f"%{escaped}%"


MAX_ROW_ID = 2**31 - 1
"""The largest id a table can hold (PostgreSQL's INTEGER; SQLite's is wider)."""

RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
"""An id that arrives from outside (path, query, body): one no row can have is refused with 422
here, instead of overflowing the column in the query (a 500 on PostgreSQL from 2³¹, on SQLite
from 2⁶³)."""
