"""``ecard admin reminders``."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, effective_time, run_admin


def reminders(
    org: Annotated[int, typer.Option("--org", help="Organisation id (its whole subtree).")],
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Cadence gaps and the six-month rule for an organisation's subtree (nothing is changed)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.ledgers.cadence import CadencePolicy
        from server.reminders.service import build_reminders

        report = build_reminders(
            ctx.session,
            org_id=org,
            caller=ctx.caller,
            now=effective_time(ctx, at),
            tz=ctx.settings.tz,
            policy=CadencePolicy(lecture=ctx.settings.lecture_cadence),
        )
        lines = [f"[{r.level_label}] {r.message}" for r in report.cadence + report.inactivity]
        return Outcome(report.model_dump(mode="json"), "\n".join(lines) or "no reminders")

    run_admin(action, db=db, json_output=json_output)
