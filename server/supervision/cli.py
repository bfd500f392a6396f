"""``ecard admin supervision``: stored reminders (督查督办) — list, acknowledge, send down, sweep."""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated, Any

import typer

from server.cli_support import AdminContext, DbOption, JsonOption, Outcome, effective_time, iso, run_admin

supervision_app = typer.Typer(no_args_is_help=True, help="Stored reminders (督查督办) and the daily sweep.")


def reminder_data(row: Any, tz: tzinfo) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule,
        "family": row.family.value,
        "subject": row.subject,
        "period": row.period,
        "org_id": row.org_id,
        "level": row.level.value,
        "state": row.state.value,
        "message": row.message,
        "opened_at": iso(row.opened_at, tz),
        "escalated_to": row.escalated_to,
    }


def _lines(rows: list[Any]) -> str:
    return "\n".join(f"#{r.id} [{r.state.value}/{r.level.value}] {r.message}" for r in rows) or "no reminders"


@supervision_app.command("sweep")
def supervision_sweep(
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run the daily sweep now (the server also runs it by itself: ``ecard admin jobs``)."""

    def action(ctx: AdminContext) -> Outcome:
        from server.supervision.sweep import run_sweep

        result = run_sweep(ctx.session, now=effective_time(ctx, at), settings=ctx.settings)
        return Outcome(vars(result), result.summary())

    run_admin(action, db=db, json_output=json_output)


@supervision_app.command("list")
def supervision_list(
    org: Annotated[int, typer.Option("--org", help="Organisation id (its whole subtree).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Open and acknowledged reminders of an organisation's subtree."""

    def action(ctx: AdminContext) -> Outcome:
        from server.supervision.service import reminders_of

        rows = reminders_of(ctx.session, org_id=org, caller=ctx.caller)
        return Outcome({"reminders": [reminder_data(r, ctx.settings.tz) for r in rows]}, _lines(rows))

    run_admin(action, db=db, json_output=json_output)


@supervision_app.command("queue")
def supervision_queue_command(
    org: Annotated[int, typer.Option("--org", help="The superior organisation (and those below it).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The 督办 queue: reminders escalated to an organisation."""

    def action(ctx: AdminContext) -> Outcome:
        from server.supervision.service import supervision_queue

        rows = supervision_queue(ctx.session, org_id=org, caller=ctx.caller)
        return Outcome({"reminders": [reminder_data(r, ctx.settings.tz) for r in rows]}, _lines(rows))

    run_admin(action, db=db, json_output=json_output)


@supervision_app.command("ack")
def supervision_ack(
    reminder_id: int,
    note: Annotated[str, typer.Option("--note", help="What is being done about it.")] = "",
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Acknowledge a reminder (已知悉，整改中): it is no longer escalated."""

    def action(ctx: AdminContext) -> Outcome:
        from server.supervision.service import acknowledge

        row = acknowledge(ctx.session, reminder_id, caller=ctx.caller, now=ctx.now, note=note)
        return Outcome(reminder_data(row, ctx.settings.tz), f"reminder {row.id} acknowledged")

    run_admin(action, db=db, json_output=json_output)


@supervision_app.command("send-down")
def supervision_send_down(
    reminder_id: int,
    note: Annotated[str, typer.Option("--note", help="The superior's instruction (督办意见).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Send an escalated reminder back down to the organisation responsible, with a note."""

    def action(ctx: AdminContext) -> Outcome:
        from server.supervision.service import send_down

        row = send_down(ctx.session, reminder_id, caller=ctx.caller, now=ctx.now, note=note)
        return Outcome(reminder_data(row, ctx.settings.tz), f"reminder {row.id} sent down")

    run_admin(action, db=db, json_output=json_output)
