"""Engine factory, the unit of work, and the column types every table shares.

One transaction per request (or per CLI command): :func:`unit_of_work` commits once at the end
and rolls back on any exception, so a service's writes land together or not at all. Services
``add`` and ``flush``; they never commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Dialect, Engine, Enum, create_engine, event, make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, SQLModel

log = logging.getLogger(__name__)

T = TypeVar("T")

# Named constraints let later migrations (and SQLite batch mode) address them by name. Set before
# any table is declared: names are fixed when a constraint attaches to its table.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 10_000

# Bind parameters per ``IN (...)`` list: SQLite allows 32,766 per statement, and PostgreSQL plans
# long lists no better than a few shorter ones.
IN_CHUNK_SIZE = 5000


def in_chunks(values: Iterable[T], size: int = IN_CHUNK_SIZE) -> Iterator[list[T]]:
    """``values`` in lists short enough for one ``IN (...)`` each, in their order."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; SQLite keeps no offset, so we normalise on the way in and out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    # ``dialect`` is part of SQLAlchemy's hook signature; UTC handling is the same for every dialect.

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def string_enum(enum_class: type[StrEnum]) -> Enum:
    """A StrEnum stored by value as VARCHAR(32), without a CHECK, so new values need no migration."""
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


def make_engine(database_url: str) -> Engine:
    """An engine for SQLite (WAL, foreign keys, busy timeout, immediate transactions) or PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module (it would not BEGIN before SELECTs or
    # SAVEPOINTs) so that _begin_immediate below decides how every transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _begin_immediate(connection: Any) -> None:
    # Ingest reads then writes. A deferred transaction that tries to upgrade its read lock after
    # another writer committed fails at once with SQLITE_BUSY (the busy timeout does not apply),
    # so take the write lock up front; writers then queue on the busy timeout instead of failing.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed once on success and rolled back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def describe_url(database_url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(database_url).render_as_string(hide_password=True)
