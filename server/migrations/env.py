"""Alembic environment for the server's tables.

``server.migrate`` runs migrations programmatically and hands in an open connection through
``config.attributes["connection"]``; developers can also run the ``alembic`` command with
``-c server/migrations/alembic.ini``, which connects to ``ECARD_DATABASE_URL``.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, Enum
from sqlmodel.sql.sqltypes import AutoString

from server.config import ServerSettings
from server.db import UtcDateTime, make_engine
from server.records import metadata


def render_item(type_: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    """Write our column types as plain SQLAlchemy types, so a migration never imports app code
    (which will change after the migration is frozen)."""
    if type_ != "type":
        return False
    if isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    if isinstance(obj, Enum) and not obj.native_enum:
        return f"sa.String(length={obj.length})"
    if isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # server.db begins SQLite transactions explicitly, which makes its DDL transactional too:
        # a failed migration leaves the schema as it was.
        transactional_ddl=True,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

handed_in = context.config.attributes.get("connection")
if handed_in is not None:
    run_migrations(handed_in)
else:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or ServerSettings().database_url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
            connection.commit()
    finally:
        engine.dispose()
