"""Conditions for "this column is one of these many ids", the cheap way on each backend.

PostgreSQL takes the whole list as one array parameter (``col = ANY(:ids)``): one bind value, a
statement text that does not change with the list's length, and a plan no worse than ``IN``;
a long ``IN (...)`` list costs a placeholder per value to render, send and parse. SQLite has no
arrays, so there the ids go in ``IN`` lists of at most :data:`server.db.IN_CHUNK_SIZE` values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Mapped
from sqlmodel import Session

from server.db import in_values, value_chunks


def one_of(session: Session, column: Mapped[Any], values: Collection[Any]) -> Iterator[ColumnElement[bool]]:
    """Conditions that together select the rows whose ``column`` is in ``values``: run one
    statement per condition and combine the results (one on PostgreSQL, one per chunk on SQLite;
    none when ``values`` is empty, as nothing can match)."""
    for chunk in value_chunks(session.get_bind().dialect, sorted(values)):
        yield in_values(column, chunk)
