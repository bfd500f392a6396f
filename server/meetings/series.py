"""A monthly series of events (每月主题党日, 每月支委会): each occurrence a normal event.

The dates follow :mod:`server.events.recurrence`; every occurrence keeps the first one's local
time of day, length and check-in window, and is scheduled like a single event (its own audit entry,
its venue's earlier taps decided again), then the series as a whole is audited (``event.series``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from sqlmodel import Session

from server.attendance.derive import schedule_event
from server.audit.service import record
from server.caller import Caller
from server.errors import InvalidTimeRange
from server.events.recurrence import RepeatRule, describe_rule, monthly_dates, on_date
from server.records.events import Event
from server.vocabulary import EventKind


def schedule_series(
    session: Session,
    *,
    title: str,
    org_id: int,
    venue_id: int,
    kind: EventKind,
    start_at: datetime,
    end_at: datetime,
    rule: RepeatRule,
    count: int,
    tz: tzinfo,
    checkin_opens_at: datetime | None = None,
    checkin_closes_at: datetime | None = None,
    also_counts_as: Sequence[EventKind] = (),
    chair_member_id: int | None = None,
    recorder_member_id: int | None = None,
    topic: str = "",
    now: datetime,
    caller: Caller,
) -> list[Event]:
    """Schedule ``count`` monthly events, the first at ``start_at``; returns them in date order.

    Raises:
        InvalidRecurrence: a count out of bounds, or a first date the rule cannot repeat.
        InvalidTimeRange, and everything ``server.events.service.add_event`` raises.
    """
    if end_at <= start_at:
        raise InvalidTimeRange()
    dates = monthly_dates(start_at.astimezone(tz).date(), rule, count)
    events: list[Event] = []
    for day in dates:
        start = on_date(start_at, day, tz)
        shift = start - start_at
        events.append(
            schedule_event(
                session,
                title=title,
                org_id=org_id,
                venue_id=venue_id,
                kind=kind,
                start_at=start,
                end_at=end_at + shift,
                checkin_opens_at=checkin_opens_at + shift if checkin_opens_at else None,
                checkin_closes_at=checkin_closes_at + shift if checkin_closes_at else None,
                also_counts_as=also_counts_as,
                chair_member_id=chair_member_id,
                recorder_member_id=recorder_member_id,
                topic=topic,
                now=now,
                caller=caller,
            )
        )
    first = events[0]
    assert first.id is not None
    record(
        session,
        actor=caller.actor,
        action="event.series",
        object_type="event",
        object_id=first.id,
        org_id=org_id,
        at=now,
        detail={
            "rule": describe_rule(dates[0], rule),
            "count": len(events),
            "event_ids": [event.id for event in events],
        },
    )
    return events
