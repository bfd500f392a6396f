"""``ecard server``: run and migrate."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from server.cli_support import (
    CheckedArgsGroup,
    DbOption,
    JsonOption,
    Outcome,
    emit,
    load_settings,
    refusals_reported,
)

server_app = typer.Typer(cls=CheckedArgsGroup, no_args_is_help=True, help="Run and migrate the server.")


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@server_app.command("migrate")
def server_migrate(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Apply the database migrations (safe to repeat)."""
    from server.db import describe_url, make_engine
    from server.migrate import migrate

    settings = load_settings(db, json_output)
    with refusals_reported(json_output):
        engine = make_engine(settings.database_url)
        try:
            revision = migrate(engine)
        finally:
            engine.dispose()
    where = describe_url(settings.database_url)
    emit(
        Outcome({"revision": revision, "database": where}, f"database at revision {revision}: {where}"),
        json_output,
    )


@server_app.command("run")
def server_run(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (see the ready line).")] = 8000,
    db: DbOption = None,
    log_level: Annotated[LogLevel, typer.Option(help="Logging threshold.")] = LogLevel.INFO,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes sharing the port (PostgreSQL only; SQLite serves from one process).",
        ),
    ] = 1,
) -> None:
    """Migrate the database, then serve the API until interrupted."""
    from server.serve import configure_logging, serve

    configure_logging(log_level.value)
    settings = load_settings(db, json_output=False)
    with refusals_reported(json_output=False):
        serve(settings, host=host, port=port, log_level=log_level.value, workers=workers)
