"""Engine factory, the unit of work, and the column types every table shares.

One transaction per request (or per CLI command): :func:`unit_of_work` commits once at the end
and rolls back on any exception, so a service's writes land together or not at all. Services
``add`` and ``flush``; they never commit.

Concurrency. On PostgreSQL the pool holds one connection per worker thread of the server
(``ECARD_WORKER_THREADS``), so no request opens its own. SQLite allows one writer at a time:
every transaction that may write first takes the engine's in-process writer lock, then
``BEGIN IMMEDIATE``, so concurrent uploads queue in order instead of racing on SQLite's busy
handler (which gave up with "database is locked" under load); the server's requests wait for
their turn before they take a worker thread (``server.deps.write_turn``). A transaction opened
with :func:`read_only` takes neither: it reads a WAL snapshot while the writer works, and SQLite
itself refuses any write in it (``PRAGMA query_only``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Enum,
    Select,
    Table,
    Update,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    make_url,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import NullType, TypeDecorator
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

DEFAULT_POOL_SIZE = 20
"""Connections per PostgreSQL engine, and worker threads per server process (``server.app``)."""

COPY_MIN_ROWS = 8
"""From this many rows :func:`bulk_insert` uses ``COPY`` on PostgreSQL (three round trips)."""
INTEGRITY_SQLSTATE_CLASS = "23"  # SQLSTATE class 23: integrity constraint violation

SQLITE_WRITER_WAIT_S = 60
"""How long a transaction waits for its turn to write before it fails (a stuck writer, not load:
a batch holds the turn for milliseconds)."""

_READ_ONLY = "ecard_read_only"
_HOLDS_WRITER = "ecard_holds_writer"

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


def value_chunks(dialect: Dialect, values: Sequence[T]) -> Iterator[Sequence[T]]:
    """*values* in lists for :func:`in_values`: all at once on PostgreSQL (one array parameter),
    else short enough for one ``IN (...)`` each."""
    if dialect.name == "postgresql":
        if values:
            yield values
        return
    yield from in_chunks(values)


class OneOf(FunctionElement[Any]):
    """``column`` is one of some values (:func:`in_values`), compiled for the dialect at hand."""

    inherit_cache = True
    # Not Boolean: SQLite would compare a Boolean-typed function with 1.
    type = NullType()
    name = "one_of"


def in_values(column: ColumnElement[Any] | Mapped[Any], values: Sequence[Any]) -> ColumnElement[Any]:
    """``column`` is one of *values*: on PostgreSQL ``= ANY(array)`` with one parameter, so the
    statement's text is the same however many values there are (psycopg parses and prepares it
    once, not once per length); ``IN (...)`` elsewhere (SQLite: at most ``IN_CHUNK_SIZE``). One
    value is compared with ``=``: an array of one costs more to send and to plan."""
    if isinstance(column, InstrumentedAttribute):
        column = column.__clause_element__()
    assert isinstance(column, ColumnElement)
    if len(values) == 1:
        equal: ColumnElement[Any] = column == values[0]
        return equal
    # Both forms are built, so that the statement's cache key holds the values either way.
    as_array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
    return OneOf(column.in_(values), column == any_(as_array))


@compiles(OneOf)
def _one_of_in(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    in_list, _any = element.clauses.clauses
    return compiler.process(in_list, **kw)


@compiles(OneOf, "postgresql")
def _one_of_any(element: OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    _in_list, as_any = element.clauses.clauses
    return compiler.process(as_any, **kw)


def key_probes(
    table: Table,
    key: Sequence[str],
    *,
    unique: bool,
    columns: Sequence[str] | None = None,
    for_update: bool = False,
) -> Select[Any]:
    """PostgreSQL only: the rows of *table* whose *key* (the columns an index starts with, in its
    order; with *unique*, a unique index's) equals one of some tuples, each tuple found by its own
    seek in that index. The tuples travel as one array per key column (:func:`key_probe_params`),
    so the statement is built once whatever their number; rows come in the arrays' order (and are
    locked in it, *for_update*), with *columns* (default: all of the table's, in its order).

    Why not ``a = ANY(:as) AND b = ANY(:bs)``: PostgreSQL before 17 costs an array on an index's
    second column as one descent per element and, when its statistics do not know the values (a
    new event, a fresh table), prefers an index on the first column alone, or the table, and
    filters the rest: it reads every row of the event, or of the kiosk. A LATERAL subquery with a
    LIMIT or an OFFSET cannot be flattened into a join, so each tuple is one equality lookup on all
    of *key* however many tuples there are and whatever the statistics know of their values
    (``LIMIT 1`` on a unique key drops nothing; ``OFFSET 0`` skips nothing). One case remains:
    statistics taken while a table held a handful of rows make its first column look unique, and
    then another index starting with that column ties with this one (``make bench`` seeds a
    history for that reason; autovacuum refreshes such statistics within minutes)."""
    wanted = _unnested(table, key, alias="wanted")
    hit = select(table).where(*(table.c[name] == wanted.c[name] for name in key))
    hit = hit.limit(1) if unique else hit.offset(0)
    if for_update:
        hit = hit.with_for_update()
    found = hit.lateral("hit")
    selected = found.c if columns is None else [found.c[name] for name in columns]
    return select(*selected).select_from(wanted).join(found, true())


def key_probe_params(key: Sequence[str], tuples: Iterable[Sequence[Any]]) -> dict[str, list[Any]]:
    """The parameters of :func:`key_probes` for *tuples* (each in *key*'s column order)."""
    return _array_params(key, tuples, alias="wanted")


def _unnested(table: Table, names: Sequence[str], *, alias: str) -> TableValuedAlias:
    """Rows of *names* (columns of *table*) as the derived table *alias*, unnested from one array
    parameter per column (``{alias}_{name}``; :func:`_array_params`)."""
    arrays = (bindparam(f"{alias}_{name}", type_=postgresql.ARRAY(table.c[name].type)) for name in names)
    return func.unnest(*arrays).table_valued(*names).render_derived(name=alias)


def _array_params(
    names: Sequence[str], tuples: Iterable[Sequence[Any]], *, alias: str
) -> dict[str, list[Any]]:
    """The parameters of :func:`_unnested` for *tuples* (each in *names*' order)."""
    columns: list[list[Any]] = [[] for _name in names]
    for values in tuples:
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return {f"{alias}_{name}": column for name, column in zip(names, columns, strict=True)}


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


def make_engine(database_url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> Engine:
    """An engine for SQLite (WAL, foreign keys, busy timeout, one writer at a time) or PostgreSQL
    (a pool of *pool_size* connections, checked before use)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=0, pool_timeout=60)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )
    # Another process (a CLI command) may still write; the busy timeout covers that case.
    writer = threading.Lock()
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", lambda connection: _begin_sqlite(connection, writer))
    event.listen(engine, "commit", _release_writer)
    event.listen(engine, "rollback", _release_writer)
    return engine


def read_only(engine: Engine) -> Engine:
    """*engine* for transactions that only read: on SQLite they neither wait for nor block the
    writer, and a write in them fails (PostgreSQL is unchanged)."""
    return engine.execution_options(**{_READ_ONLY: True})


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module (it would not BEGIN before SELECTs or
    # SAVEPOINTs) so that _begin_sqlite below decides how every transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _begin_sqlite(connection: Connection, writer: threading.Lock) -> None:
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("PRAGMA query_only=1")
        connection.exec_driver_sql("BEGIN")
        return
    # A transaction that reads and then writes: a deferred one whose read lock cannot be upgraded
    # after another writer committed fails at once (the busy timeout does not apply), so writes
    # take the lock up front, and our own threads queue on a lock of ours rather than polling.
    if not writer.acquire(timeout=SQLITE_WRITER_WAIT_S):
        raise TimeoutError(f"no turn to write to SQLite within {SQLITE_WRITER_WAIT_S} s")
    turn = _WriterTurn(writer)
    connection.info[_HOLDS_WRITER] = turn
    try:
        connection.exec_driver_sql("PRAGMA query_only=0")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        # Released here, not through connection.info: a connection that failed this way has
        # been invalidated, and its info is gone (or unreachable) with its driver connection.
        turn.release()
        raise


class _WriterTurn:
    """One transaction's hold on the SQLite writer lock; releasing it twice releases it once."""

    def __init__(self, writer: threading.Lock) -> None:
        self._writer: threading.Lock | None = writer

    def release(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()


def _release_writer(connection: Connection) -> None:
    try:
        turn: _WriterTurn | None = connection.info.pop(_HOLDS_WRITER, None)
    except SQLAlchemyError:  # an invalidated connection: its turn was released where it failed
        return
    if turn is not None:
        turn.release()


def bulk_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write *rows* (dicts with the same keys, columns of *table*) in the session's transaction:
    PostgreSQL takes many by ``COPY``; otherwise one executemany. Nothing is returned, so give
    every value the rows need, ids too."""
    if not rows:
        return
    connection = session.connection()
    # COPY takes three round trips however many rows; a few rows go faster as one executemany.
    if connection.dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS:
        connection.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    processors = [table.c[name].type.bind_processor(connection.dialect) for name in columns]
    names = ", ".join(connection.dialect.identifier_preparer.quote(name) for name in columns)
    raw = connection.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                values = [row[name] for name in columns]
                copy.write_row([v if p is None else p(v) for p, v in zip(processors, values, strict=True)])
    except Exception as exc:
        # COPY runs on the driver's own connection: give a unique-key race the error callers catch.
        if str(getattr(exc, "sqlstate", "") or "").startswith(INTEGRITY_SQLSTATE_CLASS):
            raise IntegrityError(f"COPY {table.name}", None, exc) from exc
        raise


def bulk_update(
    session: Session, table: Table, key: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Set, in each row of *table* whose *key* columns equal a dict's, the dict's other columns
    (*rows*: dicts with the same keys, columns of *table*). PostgreSQL takes them all in one
    ``UPDATE … FROM unnest(arrays)``, built once per table and columns (an executemany would be a
    statement per row for the server to run); otherwise one executemany."""
    if not rows:
        return
    connection = session.connection()
    names = tuple(rows[0])
    arrays = connection.dialect.name == "postgresql"
    statement = _update_statement(table, tuple(key), names, arrays)
    if arrays:
        connection.execute(
            statement, _array_params(names, ([row[n] for n in names] for row in rows), alias="new")
        )
        return
    connection.execute(statement, [{f"new_{name}": row[name] for name in names} for row in rows])


@cache
def _update_statement(table: Table, key: tuple[str, ...], names: tuple[str, ...], arrays: bool) -> Update:
    if not arrays:
        return (
            update(table)
            .where(*(table.c[name] == bindparam(f"new_{name}") for name in key))
            .values({name: bindparam(f"new_{name}") for name in names if name not in key})
        )
    new = _unnested(table, names, alias="new")
    return (
        update(table)
        .where(*(table.c[name] == new.c[name] for name in key))
        .values({name: new.c[name] for name in names if name not in key})
    )


@contextmanager
def unit_of_work(bind: Engine | Connection) -> Iterator[Session]:
    """A session whose work is committed once on success and rolled back on any exception (on a
    connection of the engine's pool, or on *bind* itself when it is a connection)."""
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def describe_url(database_url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(database_url).render_as_string(hide_password=True)
