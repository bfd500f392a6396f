"""``ecard admin attendance`` (补录) and ``ecard admin taps`` (unmatched taps)."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import (
    AdminContext,
    DbOption,
    JsonOption,
    Outcome,
    iso,
    parse_time,
    run_admin,
)

attendance_app = typer.Typer(no_args_is_help=True, help="Manual attendance entries (补录).")
taps_app = typer.Typer(no_args_is_help=True, help="Unmatched taps: list, assign to an event, purge.")


@attendance_app.command("add")
def attendance_add(
    event_id: int,
    member: Annotated[int, typer.Option("--member", help="Member id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why there is no tap (required, audited).")],
    at: Annotated[str | None, typer.Option("--at", help="When they arrived (default: the start).")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """The recorder records a presence without a tap (补录), with a reason."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.service import record_manual_attendance

        tz = ctx.settings.tz
        attendance = record_manual_attendance(
            ctx.session,
            event_id=event_id,
            member_id=member,
            reason=reason,
            at=parse_time(at, "--at", tz) if at else None,
            caller=ctx.caller,
            now=ctx.now,
        )
        data = {
            "id": attendance.id,
            "event_id": event_id,
            "member_id": member,
            "source": attendance.source.value,
            "arrived_at": iso(attendance.first_tap_at, tz),
        }
        return Outcome(data, f"member {member} recorded present at event {event_id} (manual)")

    run_admin(action, db=db, json_output=json_output)


@taps_app.command("unmatched")
def taps_unmatched(
    org: Annotated[int | None, typer.Option("--org", help="Venues of this organisation's subtree.")] = None,
    days: Annotated[int, typer.Option("--days", help="How far back.")] = 7,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Taps outside every check-in window (card holder masked), newest first."""

    def action(ctx: AdminContext) -> Outcome:
        from datetime import timedelta

        from server.attendance.unmatched import list_unmatched_taps

        rows = list_unmatched_taps(
            ctx.session,
            caller=ctx.caller,
            org_id=org,
            since=ctx.now - timedelta(days=days),
            until=ctx.now + timedelta(days=1),
            retention=ctx.settings.unmatched_retention,
            tz=ctx.settings.tz,
        )
        lines = [
            f"{r.tap_id}  {r.occurred_at:%Y-%m-%d %H:%M}  {r.venue.name}"
            f"  {r.member_name or '?'}  card {r.card_ref}"
            for r in rows
        ]
        return Outcome(
            {"taps": [r.model_dump(mode="json") for r in rows]}, "\n".join(lines) or "no unmatched taps"
        )

    run_admin(action, db=db, json_output=json_output)


@taps_app.command("assign")
def taps_assign(
    tap_id: int,
    event: Annotated[int, typer.Option("--event", help="Event id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audited).")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """File an out-of-window tap as its card holder's presence at an event."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.unmatched import assign_unmatched_tap

        attendance = assign_unmatched_tap(
            ctx.session,
            tap_id=tap_id,
            event_id=event,
            reason=reason,
            caller=ctx.caller,
            now=ctx.now,
        )
        data = {"attendance_id": attendance.id, "event_id": event, "member_id": attendance.member_id}
        return Outcome(data, f"tap {tap_id} assigned to event {event}")

    run_admin(action, db=db, json_output=json_output)


@taps_app.command("purge")
def taps_purge(
    retention_days: Annotated[
        int | None, typer.Option("--retention-days", help="Default: ECARD_UNMATCHED_RETENTION_DAYS.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Erase card digests of unmatched taps older than the retention period (cron it daily)."""

    def action(ctx: AdminContext) -> Outcome:
        from datetime import timedelta

        from server.attendance.unmatched import purge_unmatched_taps

        days = retention_days if retention_days is not None else ctx.settings.unmatched_retention_days
        purged = purge_unmatched_taps(ctx.session, now=ctx.now, retention=timedelta(days=days))
        return Outcome(
            {"purged": purged, "retention_days": days}, f"purged {purged} taps older than {days} days"
        )

    run_admin(action, db=db, json_output=json_output)
