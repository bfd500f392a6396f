"""``ecard admin import``: the 花名册 import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from server.cli_support import (
    EXIT_REFUSED,
    DbOption,
    JsonOption,
    Outcome,
    admin_context,
    emit,
    refusals_reported,
)


def roster_import(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The 花名册 workbook (.xlsx).")
    ],
    org: Annotated[
        int | None, typer.Option("--org", help="Only accept branches inside this organisation's subtree.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and report; write nothing.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import a 花名册 (members and 易通卡): every row or none; the same file again changes nothing.

    Columns are found by header (姓名, 性别, 党员类别, 所在支部, 易通卡号, optional UID). Any bad row
    refuses the whole file and lists every problem by row (exit 1); large files show a progress bar.
    """
    from server.errors import RosterInvalid
    from server.roster.console import problems_text, progress_bars, report_text
    from server.roster.service import import_roster

    data = path.read_bytes()
    with refusals_reported(json_output):
        try:
            with admin_context(db, json_output) as ctx:
                report = import_roster(
                    ctx.session,
                    keyring=ctx.keyring,
                    data=data,
                    caller=ctx.caller,
                    org_id=org,
                    now=ctx.now,
                    dry_run=dry_run,
                    track=progress_bars(),
                )
        except RosterInvalid as exc:
            if json_output:
                body = {"error": exc.code, "detail": exc.message, **exc.extra()}
                typer.echo(json.dumps(body, ensure_ascii=False))
            else:
                typer.echo(problems_text(exc), err=True)
            raise typer.Exit(EXIT_REFUSED) from None
    emit(Outcome(report.model_dump(mode="json"), report_text(report)), json_output)
