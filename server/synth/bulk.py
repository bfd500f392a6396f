"""Writing millions of generated rows fast: ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

Both bypass the ORM (5 million taps through it would take an hour) and write into one open
transaction, so a failed build leaves nothing behind. Secondary indexes of the tables written are
dropped before and rebuilt after: building an index once from sorted data is many times faster
than maintaining it row by row. Foreign keys are not checked row by row either (SQLite
``foreign_keys=OFF`` before the transaction, PostgreSQL ``session_replication_role=replica`` when
the role may set it); on SQLite the whole database is checked with ``PRAGMA foreign_key_check``
before the commit instead.

Generated datetimes are naive UTC. On SQLite they are stored exactly as SQLAlchemy stores
:class:`~server.db.UtcDateTime` values (``YYYY-MM-DD HH:MM:SS.ffffff``), so string comparisons in
queries agree; on PostgreSQL the session time zone is UTC while copying.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Index, Integer, Table, text
from sqlalchemy.exc import SQLAlchemyError

from server.db import UtcDateTime
from server.records import metadata
from server.synth.generate import COLUMNS, Row

log = logging.getLogger(__name__)

FLUSH_ROWS = 50_000


class TableWriter(Protocol):
    def write(self, table: str, rows: Sequence[Row]) -> None: ...


class BufferedSink:
    """Collects generated rows per table and writes them in dependency order every ``flush_rows``."""

    def __init__(self, writer: TableWriter, *, flush_rows: int = FLUSH_ROWS) -> None:
        self.writer = writer
        self.flush_rows = flush_rows
        self.buffers: dict[str, list[Row]] = {table: [] for table in COLUMNS}
        self.counts: dict[str, int] = dict.fromkeys(COLUMNS, 0)
        self._pending = 0

    def add(self, table: str, row: Row) -> None:
        self.buffers[table].append(row)
        self._pending += 1
        if self._pending >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        for table, rows in self.buffers.items():
            if rows:
                self.writer.write(table, rows)
                self.counts[table] += len(rows)
                rows.clear()
        self._pending = 0


def _table(name: str) -> Table:
    return metadata.tables[name]


def secondary_indexes() -> list[Index]:
    """Non-unique indexes of the tables the synth writes (unique ones guard the data, so they stay)."""
    return [index for name in COLUMNS for index in sorted(_table(name).indexes, key=str) if not index.unique]


def _datetime_positions(table: str) -> tuple[int, ...]:
    columns = _table(table).c
    return tuple(i for i, name in enumerate(COLUMNS[table]) if isinstance(columns[name].type, UtcDateTime))


class SqliteWriter:
    def __init__(self, connection: Connection) -> None:
        self.cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._sql = {
            table: f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
            for table, columns in COLUMNS.items()
        }
        self._datetimes = {table: _datetime_positions(table) for table in COLUMNS}

    def write(self, table: str, rows: Sequence[Row]) -> None:
        positions = self._datetimes[table]
        if positions:
            rows = [_sqlite_times(row, positions) for row in rows]
        self.cursor.executemany(self._sql[table], rows)


def _sqlite_times(row: Row, positions: tuple[int, ...]) -> Row:
    values = list(row)
    for i in positions:
        value = values[i]
        if value is not None:
            values[i] = value.isoformat(" ", "microseconds")
    return tuple(values)


class PostgresWriter:
    def __init__(self, connection: Connection) -> None:
        self.raw: Any = connection.connection.dbapi_connection
        self._sql = {
            table: f'COPY "{table}" ({", ".join(columns)}) FROM STDIN' for table, columns in COLUMNS.items()
        }

    def write(self, table: str, rows: Sequence[Row]) -> None:
        with self.raw.cursor() as cursor, cursor.copy(self._sql[table]) as copy:
            for row in rows:
                copy.write_row(row)


def prepare_sqlite(connection: Connection) -> None:
    """Before the transaction (these pragmas are ignored inside one): foreign keys off, a large
    cache, and a rollback journal instead of the WAL.

    In WAL mode every page of a multi-gigabyte load is written twice (to the WAL, then copied into
    the database at checkpoint); a rollback journal only saves the pages that existed before, and
    a database that starts empty has almost none. The switch needs the only open connection, so
    callers dispose of their pooled ones first; if it cannot be made, the load is just slower.
    """
    raw: Any = connection.connection.dbapi_connection
    raw.execute("PRAGMA journal_mode=DELETE")
    raw.execute("PRAGMA foreign_keys=OFF")
    raw.execute("PRAGMA cache_size=-1048576")  # 1 GiB, for the index rebuilds
    raw.execute("PRAGMA temp_store=MEMORY")


def restore_sqlite(connection: Connection) -> None:
    raw: Any = connection.connection.dbapi_connection
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA foreign_keys=ON")
    raw.execute("PRAGMA cache_size=-2000")


def check_sqlite_foreign_keys(connection: Connection) -> list[str]:
    """Every dangling reference, as 'table row → parent' (empty when consistent)."""
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    return [f"{table} rowid {rowid} → {parent}" for table, rowid, parent, _ in problems[:20]]


def prepare_postgres(connection: Connection) -> None:
    connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
    try:
        with connection.begin_nested():
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
    except SQLAlchemyError as exc:  # not a superuser: the load is slower, not wrong
        log.info("foreign keys stay checked during the load (%s)", exc.__class__.__name__)


def finish_postgres(connection: Connection) -> None:
    """Move every id sequence past the ids we assigned ourselves."""
    for name in COLUMNS:
        table = _table(name)
        if "id" in table.c and table.c.id.primary_key and isinstance(table.c.id.type, Integer):
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence(:name, 'id'), COALESCE(max(id), 0) + 1, false) "
                    f'FROM "{name}"'
                ),
                {"name": name},
            )
