"""``ecard admin event``: schedule events and print their sign-in sheets."""

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

event_app = typer.Typer(no_args_is_help=True, help="Events (会议/活动) and their sign-in sheets.")


@event_app.command("add")
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
        from server.events.service import add_event

        tz = ctx.settings.tz
        all_kinds = comma_list(kinds, EventKind, "--kinds") or [kind]
        partners = [o for o in comma_list(orgs, int, "--orgs") if o != org]
        event = add_event(
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
