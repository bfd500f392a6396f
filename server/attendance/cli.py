"""``ecard admin attendance`` (补录) and ``ecard admin taps`` (unmatched taps); also ``event add`` and
``card bind`` (registered under those groups by ``server.cli``), because both decide earlier taps
again (``server.attendance.derive``) and the events and cards domains may not import attendance."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import (
    AdminContext,
    DbOption,
    JsonOption,
    Outcome,
    comma_list,
    iso,
    parse_time,
    run_admin,
)
from server.vocabulary import EventKind

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


def event_add(
    title: str,
    org: Annotated[int, typer.Option("--org", help="Organising organisation id.")],
    venue: Annotated[int, typer.Option("--venue", help="Venue id.")],
    start: Annotated[str, typer.Option("--start", help="ISO 8601; without an offset, ECARD_TIMEZONE.")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601; without an offset, ECARD_TIMEZONE.")],
    kind: Annotated[EventKind, typer.Option("--kind")] = EventKind.OTHER,
    checkin_opens: Annotated[
        str | None, typer.Option("--checkin-opens", help="Default: 30 minutes before the start.")
    ] = None,
    checkin_closes: Annotated[str | None, typer.Option("--checkin-closes", help="Default: the end.")] = None,
    kinds: Annotated[
        str | None,
        typer.Option("--kinds", help="Comma-separated kinds it counts for (the first is the main kind)."),
    ] = None,
    orgs: Annotated[
        str | None, typer.Option("--orgs", help="Comma-separated partner organisations of a joint event.")
    ] = None,
    chair: Annotated[int | None, typer.Option("--chair", help="Chair (主持人), a member id.")] = None,
    recorder: Annotated[int | None, typer.Option("--recorder", help="Recorder (记录人), member id.")] = None,
    topic: Annotated[str, typer.Option("--topic", help="Topic or agenda (议题).")] = "",
    late_after: Annotated[
        str | None, typer.Option("--late-after", help="First taps after this are late (default: the start).")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Schedule an event at a venue; kiosks there check members in during its window."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.derive import schedule_event

        tz = ctx.settings.tz
        all_kinds = comma_list(kinds, EventKind, "--kinds") or [kind]
        partners = [o for o in comma_list(orgs, int, "--orgs") if o != org]
        event = schedule_event(
            ctx.session,
            title=title,
            org_id=org,
            venue_id=venue,
            kind=all_kinds[0],
            also_counts_as=all_kinds[1:],
            joint_org_ids=partners,
            chair_member_id=chair,
            recorder_member_id=recorder,
            topic=topic,
            late_after=parse_time(late_after, "--late-after", tz) if late_after else None,
            start_at=parse_time(start, "--start", tz),
            end_at=parse_time(end, "--end", tz),
            checkin_opens_at=parse_time(checkin_opens, "--checkin-opens", tz) if checkin_opens else None,
            checkin_closes_at=parse_time(checkin_closes, "--checkin-closes", tz) if checkin_closes else None,
            now=ctx.now,
            caller=ctx.caller,
        )
        data = {
            "id": event.id,
            "title": event.title,
            "org_id": event.org_id,
            "venue_id": event.venue_id,
            "kind": event.kind.value,
            "kinds": [k.value for k in dict.fromkeys(all_kinds)],
            "org_ids": [org, *partners],
            "chair_member_id": event.chair_member_id,
            "recorder_member_id": event.recorder_member_id,
            "topic": event.topic,
            "late_after": iso(event.late_after, tz),
            "start_at": iso(event.start_at, tz),
            "end_at": iso(event.end_at, tz),
            "checkin_opens_at": iso(event.checkin_opens_at, tz),
            "checkin_closes_at": iso(event.checkin_closes_at, tz),
        }
        window = f"{iso(event.checkin_opens_at, tz)} – {iso(event.checkin_closes_at, tz)}"
        return Outcome(data, f"event {event.id} added: {event.title} (check-in {window})")

    run_admin(action, db=db, json_output=json_output)


def card_bind(
    member_id: int,
    card_no: Annotated[str | None, typer.Option("--card-no", help="19-digit card number.")] = None,
    uid: Annotated[str | None, typer.Option("--uid", help="Card UID in hex.")] = None,
    issuer_mac: Annotated[
        bool,
        typer.Option(
            "--issuer-mac",
            help="The card answers the issuer's challenge: a kiosk that asks and gets no valid answer "
            "has a clone, and UID-only reads of it are refused (needs --card-no).",
        ),
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Bind a card (by number, UID or both) to a member. Only masked forms are ever shown."""

    def action(ctx: AdminContext) -> Outcome:
        from server.attendance.derive import bind_member_card_counting

        binding = bind_member_card_counting(
            ctx.session,
            keyring=ctx.keyring,
            member_id=member_id,
            card_no=card_no,
            uid=uid,
            now=ctx.now,
            caller=ctx.caller,
            issuer_mac=issuer_mac,
        )
        data = {
            "id": binding.id,
            "member_id": binding.member_id,
            "card_no_masked": binding.card_no_masked,
            "uid_masked": binding.uid_masked,
            "status": binding.status.value,
            "verified_level": binding.verified_level.value,
            "issuer_mac": binding.issuer_mac_since is not None,
        }
        shown = " / ".join(m for m in (binding.card_no_masked, binding.uid_masked) if m)
        return Outcome(data, f"card {shown} bound to member {binding.member_id} (binding {binding.id})")

    run_admin(action, db=db, json_output=json_output)
