"""``ecard server``: run and migrate."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

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


jobs_app = typer.Typer(no_args_is_help=True, help="The server's scheduled jobs: list them, run one now.")


@jobs_app.command("list")
def jobs_list(json_output: JsonOption = False, db: DbOption = None) -> None:
    """Every scheduled job, how often it runs and its last run."""
    from server.cli_support import AdminContext, iso, run_admin

    def action(ctx: AdminContext) -> Outcome:
        from server.schedule import JOBS, latest_runs

        runs = latest_runs(ctx.session)
        jobs: list[dict[str, Any]] = []
        lines: list[str] = []
        for job in JOBS:
            run = runs.get(job.name)
            jobs.append(
                {
                    "name": job.name,
                    "title": job.title,
                    "every_seconds": int(job.every(ctx.settings).total_seconds()),
                    "last_run": None
                    if run is None
                    else {
                        "started_at": iso(run.started_at, ctx.settings.tz),
                        "ok": run.ok,
                        "trigger": run.trigger,
                        "summary": run.summary,
                    },
                }
            )
            last = "never run" if run is None else f"{iso(run.started_at, ctx.settings.tz)} {run.summary}"
            lines.append(f"{job.name:<24} every {int(job.every(ctx.settings).total_seconds())}s  {last}")
        return Outcome({"jobs": jobs}, "\n".join(lines))

    run_admin(action, db=db, json_output=json_output)


@jobs_app.command("run")
def jobs_run(name: str, json_output: JsonOption = False, db: DbOption = None) -> None:
    """Run one job now (refused while another process runs it)."""
    from server.cli_support import AdminContext, iso, run_admin

    def action(ctx: AdminContext) -> Outcome:
        from server.clock import utc_now
        from server.schedule import find_job, run_job

        run = run_job(ctx.session, find_job(name), settings=ctx.settings, clock=utc_now, trigger="manual")
        data = {
            "name": run.name,
            "ok": run.ok,
            "started_at": iso(run.started_at, ctx.settings.tz),
            "summary": run.summary,
        }
        return Outcome(data, f"{run.name}: {'ok' if run.ok else 'FAILED'} — {run.summary}")

    run_admin(action, db=db, json_output=json_output)
