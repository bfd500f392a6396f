"""Conditions for "this column is one of these many ids", the cheap way on each backend.

PostgreSQL takes the whole list as one array parameter (``col = ANY(:ids)``): one bind value, a
statement text that does not change with the list's length, and a plan no worse than ``IN``;
a long ``IN (...)`` list costs a placeholder per value to render, send and parse. SQLite has no
arrays, so there the ids go in ``IN`` lists of at most :data:`server.db.IN_CHUNK_SIZE` values.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from sqlalchemy import ColumnElement, Integer, any_, bindparam, inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlmodel import Session

from server.db import in_chunks


def one_of(session: Session, column: Mapped[Any], values: Collection[Any]) -> Iterator[ColumnElement[bool]]:
    """Conditions that together select the rows whose ``column`` is in ``values``: run one
    statement per condition and combine the results (one on PostgreSQL, one per chunk on SQLite;
    none when ``values`` is empty, as nothing can match)."""
    if not values:
        return
    ordered = sorted(values)
    if session.get_bind().dialect.name == "postgresql":
        element_type = inspect(column).type if isinstance(column, InstrumentedAttribute) else Integer()
        array = bindparam(None, ordered, type_=ARRAY(element_type), unique=True)
        yield column == any_(array)
        return
    for chunk in in_chunks(ordered):
        yield column.in_(chunk)
