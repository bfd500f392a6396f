"""Events and the rule that maps a tap to the event it checks in to."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from server.errors import EventNotFound, InvalidTimeRange
from server.events.models import Event
from server.inputs import clean_text
from server.orgs.service import require_organisation
from server.venues.service import require_venue
from server.vocabulary import EventKind

DEFAULT_CHECKIN_LEAD = timedelta(minutes=30)
"""Check-in opens this long before the start unless the event says otherwise (closes at the end)."""


def add_event(
    session: Session,
    *,
    title: str,
    org_id: int,
    venue_id: int,
    kind: EventKind,
    start_at: datetime,
    end_at: datetime,
    checkin_opens_at: datetime | None = None,
    checkin_closes_at: datetime | None = None,
    now: datetime,
) -> Event:
    """Schedule an event; the check-in window defaults to [start - 30 min, end).

    Raises:
        OrganisationNotFound, VenueNotFound.
        InvalidTimeRange: end not after start, or an empty check-in window.
    """
    require_organisation(session, org_id)
    require_venue(session, venue_id)
    opens = checkin_opens_at or start_at - DEFAULT_CHECKIN_LEAD
    closes = checkin_closes_at or end_at
    if end_at <= start_at or closes <= opens:
        raise InvalidTimeRange()
    event = Event(
        title=clean_text(title, field="标题", max_length=200),
        org_id=org_id,
        venue_id=venue_id,
        kind=kind,
        start_at=start_at,
        end_at=end_at,
        checkin_opens_at=opens,
        checkin_closes_at=closes,
        created_at=now,
    )
    session.add(event)
    session.flush()
    return event


def require_event(session: Session, event_id: int) -> Event:
    event = session.get(Event, event_id)
    if event is None:
        raise EventNotFound(f"活动 {event_id} 不存在")
    return event


def find_event_for_tap(session: Session, *, venue_id: int, at: datetime) -> Event | None:
    """The event at this venue whose check-in window [opens, closes) contains ``at``.

    When windows overlap (one meeting runs late while the next opens), the event whose start is
    nearest to the tap wins: a member arriving early belongs to the next meeting, one arriving
    soon after a start belongs to that meeting.
    """
    candidates = session.exec(
        select(Event).where(
            Event.venue_id == venue_id,
            col(Event.checkin_opens_at) <= at,
            col(Event.checkin_closes_at) > at,
        )
    ).all()
    if not candidates:
        return None
    return min(candidates, key=lambda event: (abs(event.start_at - at), event.id or 0))
