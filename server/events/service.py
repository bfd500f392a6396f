"""Events: scheduling (kinds, joint organisations, window, chair and recorder), and the rule that
maps a tap to the event it checks in to."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import or_
from sqlmodel import Session, SQLModel, col, select

from server.audit.service import record
from server.caller import Caller
from server.db import in_values
from server.errors import EventNotFound, InvalidInput, InvalidTimeRange, OrganisationNotFound
from server.inputs import LIKE_ESCAPE, check_text, clean_text, like_pattern
from server.orgs.service import require_organisation, require_visible_member
from server.orgs.tree import ancestor_ids
from server.records.events import Event, EventKindTag, EventOrganisation
from server.records.orgs import CommitteeSeat
from server.venues.service import require_usable_venue
from server.vocabulary import EventKind

EVENT_TABLE = SQLModel.metadata.tables[Event.__tablename__]

DEFAULT_CHECKIN_LEAD = timedelta(minutes=30)
"""Check-in opens this long before the start unless the event says otherwise (closes at the end)."""

SIGN_OUT_GRACE = timedelta(minutes=30)
"""After the window closes, a member who checked in may still sign out (签退) for this long after
the end: people tap on their way out, which is often just after the meeting ends (the rule is
``server.attendance.derive.choose_event``)."""


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
    also_counts_as: Sequence[EventKind] = (),
    joint_org_ids: Sequence[int] = (),
    late_after: datetime | None = None,
    chair_member_id: int | None = None,
    recorder_member_id: int | None = None,
    topic: str = "",
    now: datetime,
    caller: Caller,
) -> Event:
    """Schedule an event; the check-in window defaults to [start - 30 min, end), lateness to the start.

    ``also_counts_as`` adds kinds (a 主题党日 that holds a 党员大会), ``joint_org_ids`` the partner
    organisations of a joint event: their members are expected too, and the event appears in
    their ledgers. Audited (``event.create``).

    Raises:
        OrganisationNotFound: no such organisation, or outside the caller's scope.
        VenueNotFound: no such venue, or not one the caller's events may use.
        MemberNotFound (chair or recorder, also outside the caller's scope).
        InvalidTimeRange: end not after start, an empty check-in window, or lateness outside it.
    """
    require_organisation(session, org_id)
    if not caller.sees_org(org_id):
        raise OrganisationNotFound(f"党组织 {org_id} 不存在")
    require_usable_venue(session, venue_id, caller=caller)
    for partner in joint_org_ids:
        require_organisation(session, partner)
    for person in (chair_member_id, recorder_member_id):
        if person is not None:
            require_visible_member(session, person, caller=caller)
    opens = checkin_opens_at or start_at - DEFAULT_CHECKIN_LEAD
    closes = checkin_closes_at or end_at
    late = late_after or start_at
    if end_at <= start_at or closes <= opens:
        raise InvalidTimeRange()
    if not start_at <= late <= end_at:
        raise InvalidTimeRange("迟到时间须在活动开始与结束之间")
    event = Event(
        title=clean_text(title, field="标题", max_length=200),
        org_id=org_id,
        venue_id=venue_id,
        kind=kind,
        start_at=start_at,
        end_at=end_at,
        checkin_opens_at=opens,
        checkin_closes_at=closes,
        late_after=late,
        chair_member_id=chair_member_id,
        recorder_member_id=recorder_member_id,
        topic=_clean_topic(topic),
        created_at=now,
    )
    session.add(event)
    session.flush()
    assert event.id is not None
    for partner in dict.fromkeys([org_id, *joint_org_ids]):
        session.add(EventOrganisation(event_id=event.id, org_id=partner))
    for tag in dict.fromkeys([kind, *also_counts_as]):
        session.add(EventKindTag(event_id=event.id, kind=tag))
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="event.create",
        object_type="event",
        object_id=event.id,
        org_id=event.org_id,
        at=now,
        detail={"title": event.title, "kind": event.kind.value},
    )
    return event


def update_event_details(
    session: Session,
    *,
    event_id: int,
    title: str | None = None,
    topic: str | None = None,
    chair_member_id: int | None = None,
    recorder_member_id: int | None = None,
    also_counts_as: Sequence[EventKind] | None = None,
    now: datetime,
    caller: Caller,
) -> Event:
    """Change what the record says about an event (title, topic, chair, recorder, extra kinds).

    Times, venue and organisations stay fixed once scheduled: taps were matched against them.
    Audited (``event.update``).

    Raises:
        EventNotFound (also outside the caller's scope), MemberNotFound.
    """
    event = require_visible_event(session, event_id, caller=caller)
    if title is not None:
        event.title = clean_text(title, field="标题", max_length=200)
    if topic is not None:
        event.topic = _clean_topic(topic)
    if chair_member_id is not None:
        require_visible_member(session, chair_member_id, caller=caller)
        event.chair_member_id = chair_member_id
    if recorder_member_id is not None:
        require_visible_member(session, recorder_member_id, caller=caller)
        event.recorder_member_id = recorder_member_id
    if also_counts_as is not None:
        wanted = set(dict.fromkeys([event.kind, *also_counts_as]))
        current = {
            tag.kind: tag
            for tag in session.exec(select(EventKindTag).where(EventKindTag.event_id == event_id))
        }
        for kind, tag in current.items():
            if kind not in wanted:
                session.delete(tag)
        for kind in wanted - set(current):
            session.add(EventKindTag(event_id=event_id, kind=kind))
    session.add(event)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="event.update",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=now,
        detail={"title": event.title},
    )
    return event


def set_event_roles(
    session: Session,
    *,
    event_id: int,
    chair_member_id: int | None,
    recorder_member_id: int | None,
    now: datetime,
    caller: Caller,
) -> Event:
    """Set (or, with None, clear) the event's 主持人 and 记录人. Audited (``event.roles``) when
    something changed.

    Raises:
        EventNotFound (also outside the caller's scope), MemberNotFound (also outside it).
    """
    event = require_visible_event(session, event_id, caller=caller)
    for person in (chair_member_id, recorder_member_id):
        if person is not None:
            require_visible_member(session, person, caller=caller)
    if (event.chair_member_id, event.recorder_member_id) == (chair_member_id, recorder_member_id):
        return event
    event.chair_member_id = chair_member_id
    event.recorder_member_id = recorder_member_id
    session.add(event)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="event.roles",
        object_type="event",
        object_id=event_id,
        org_id=event.org_id,
        at=now,
        detail={"chair_member_id": chair_member_id, "recorder_member_id": recorder_member_id},
    )
    return event


MAX_SEARCH_LENGTH = 50
MONTH_PATTERN = re.compile(r"(\d{4})-(\d{1,2})")


def month_span(text: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """The month ``YYYY-MM`` (what ``<input type="month">`` sends) as [first instant, next month's
    first instant) in ``tz``.

    Raises:
        InvalidInput: not a month, or a year outside 2000–2100.
    """
    match = MONTH_PATTERN.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2100:
        raise InvalidInput("月份格式不正确，请选择年月，例如 2026-12（2000年至2100年之间）")
    year, month = int(match[1]), int(match[2])
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return start, end


def search_events(
    session: Session,
    *,
    caller: Caller,
    now: datetime,
    upcoming: bool = True,
    span: tuple[datetime, datetime] | None = None,
    kind: EventKind | None = None,
    text: str = "",
    limit: int = 200,
) -> list[Event]:
    """Events held (or co-held) by the caller's scope, filtered.

    ``span``: events starting in [start, end), oldest first (then ``upcoming`` is ignored); else
    upcoming ones (not yet ended) soonest first, or past ones latest first. ``kind``: events that
    count for it (a 主题党日 that holds a 党员大会 is found under both). ``text``: in the title or
    the topic, matched literally.

    Raises:
        InvalidInput: a search text longer than :data:`MAX_SEARCH_LENGTH`.
    """
    query = select(Event)
    if caller.scope.org_ids is not None:
        holders = select(EventOrganisation.event_id).where(caller.scope.condition(EventOrganisation.org_id))
        query = query.where(col(Event.id).in_(holders))
    if span is not None:
        query = query.where(col(Event.start_at) >= span[0], col(Event.start_at) < span[1])
        query = query.order_by(col(Event.start_at), col(Event.id))
    elif upcoming:
        query = query.where(col(Event.end_at) >= now).order_by(col(Event.start_at), col(Event.id))
    else:
        query = query.where(col(Event.end_at) < now)
        query = query.order_by(col(Event.start_at).desc(), col(Event.id).desc())
    if kind is not None:
        query = query.where(col(Event.id).in_(select(EventKindTag.event_id).where(EventKindTag.kind == kind)))
    words = " ".join(check_text(text, field="搜索").split())
    if len(words) > MAX_SEARCH_LENGTH:
        raise InvalidInput(f"搜索内容最长{MAX_SEARCH_LENGTH}个字符")
    if words:
        pattern = like_pattern(words)
        query = query.where(
            or_(
                col(Event.title).like(pattern, escape=LIKE_ESCAPE),
                col(Event.topic).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    return list(session.exec(query.limit(limit)).all())


def require_event(session: Session, event_id: int) -> Event:
    """The event, whoever asks (the kiosk ingest path); callers use :func:`require_visible_event`."""
    event = session.get(Event, event_id)
    if event is None:
        raise EventNotFound(f"活动 {event_id} 不存在")
    return event


def require_visible_event(session: Session, event_id: int, *, caller: Caller) -> Event:
    """The event, if one of its holding organisations is in the caller's scope.

    Raises:
        EventNotFound: no such event, or not visible (indistinguishable on purpose).
    """
    event = require_event(session, event_id)
    if caller.scope.org_ids is None:
        return event  # no need to read the holders
    holders = event_organisations(session, [event_id])[event_id] or [event.org_id]
    if not caller.scope.sees_any(holders):
        raise EventNotFound(f"活动 {event_id} 不存在")
    return event


def event_kinds(session: Session, event_ids: Sequence[int]) -> dict[int, list[EventKind]]:
    """Each event's kinds, in the vocabulary's order."""
    found: dict[int, list[EventKind]] = {event_id: [] for event_id in event_ids}
    if not event_ids:
        return found
    order = {kind: index for index, kind in enumerate(EventKind)}
    for tag in session.exec(select(EventKindTag).where(col(EventKindTag.event_id).in_(list(event_ids)))):
        found[tag.event_id].append(tag.kind)
    for kinds in found.values():
        kinds.sort(key=order.__getitem__)
    return found


def event_organisations(session: Session, event_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each event's holding organisations (host included)."""
    found: dict[int, list[int]] = {event_id: [] for event_id in event_ids}
    if not event_ids:
        return found
    rows = session.exec(
        select(EventOrganisation)
        .where(col(EventOrganisation.event_id).in_(list(event_ids)))
        .order_by(col(EventOrganisation.org_id))
    )
    for row in rows:
        found[row.event_id].append(row.org_id)
    return found


class EventWindows:
    """The events whose check-in windows overlap a span of time at each of some venues, read at
    once: a batch of taps finds its events without a query per tap. Ingest creates no events,
    so what was read stays true for the batch."""

    def __init__(self, events: Iterable[Event], spans: Mapping[int, tuple[datetime, datetime]]) -> None:
        self._spans = dict(spans)
        self._by_venue: dict[int, list[Event]] = {}
        for event in events:
            self._by_venue.setdefault(event.venue_id, []).append(event)

    @classmethod
    def load(cls, session: Session, spans: Mapping[int, tuple[datetime, datetime]]) -> EventWindows:
        """*spans*: venue id → (earliest, latest) tap time to be looked up there."""
        if not spans:
            return cls([], spans)
        # One statement for every venue, over the span holding all of theirs; each venue's events
        # outside its own span are dropped here.
        earliest = min(first for first, _last in spans.values())
        latest = max(last for _first, last in spans.values())
        found = session.exec(
            select(Event).where(
                in_values(EVENT_TABLE.c.venue_id, sorted(spans)),
                col(Event.checkin_opens_at) <= latest,
                col(Event.checkin_closes_at) > earliest,
            )
        )
        events = [
            event
            for event in found
            if event.checkin_opens_at <= spans[event.venue_id][1]
            and event.checkin_closes_at > spans[event.venue_id][0]
        ]
        return cls(events, spans)

    def open_at(self, venue_id: int, at: datetime) -> list[Event] | None:
        """The venue's events whose window holds *at*; None when that was not read."""
        span = self._spans.get(venue_id)
        if span is None or not span[0] <= at <= span[1]:
            return None
        events = self._by_venue.get(venue_id, [])
        return [event for event in events if event.checkin_opens_at <= at < event.checkin_closes_at]

    @property
    def event_ids(self) -> list[int]:
        return sorted(
            event.id for events in self._by_venue.values() for event in events if event.id is not None
        )


def find_event_for_tap(
    session: Session,
    *,
    venue_id: int,
    at: datetime,
    member_id: int | None = None,
    member_org_id: int | None = None,
    windows: EventWindows | None = None,
) -> Event | None:
    """The event at this venue whose check-in window [opens, closes) contains ``at``.

    When several windows contain the tap (meetings sharing a room on one day, one running late
    while the next opens), the member's own meeting wins over one where they would be a guest:
    an event held by their organisation or an ancestor of it, or, for a 支委会, one on whose
    committee they sit. Among equals the event whose start is nearest wins: a member arriving
    early belongs to the next meeting, one arriving soon after a start to that meeting.
    *windows*: the events read for a whole batch (else this tap's are read now).
    """
    candidates = windows.open_at(venue_id, at) if windows is not None else None
    if candidates is None:
        candidates = EventWindows.load(session, {venue_id: (at, at)}).open_at(venue_id, at) or []
    if not candidates:
        return None
    if len(candidates) == 1 or member_org_id is None:
        return min(candidates, key=lambda event: (abs(event.start_at - at), event.id or 0))
    own = _events_expecting(session, candidates, member_id=member_id, member_org_id=member_org_id, at=at)
    return min(candidates, key=lambda event: (event.id not in own, abs(event.start_at - at), event.id or 0))


def _events_expecting(
    session: Session, events: Sequence[Event], *, member_id: int | None, member_org_id: int, at: datetime
) -> set[int]:
    """Which of ``events`` count the member as expected (by organisation, or committee seat)."""
    event_ids = [event.id for event in events if event.id is not None]
    lineage = set(ancestor_ids(session, member_org_id))
    holders = event_organisations(session, event_ids)
    kinds = event_kinds(session, event_ids)
    seats: set[int] = set()
    if member_id is not None:
        seats = set(
            session.exec(
                select(CommitteeSeat.org_id).where(
                    CommitteeSeat.member_id == member_id,
                    col(CommitteeSeat.started_at) <= at,
                    (col(CommitteeSeat.ended_at).is_(None)) | (col(CommitteeSeat.ended_at) > at),
                )
            ).all()
        )
    own: set[int] = set()
    for event_id in event_ids:
        if kinds[event_id] == [EventKind.COMMITTEE]:
            if seats & set(holders[event_id]):
                own.add(event_id)
        elif lineage & set(holders[event_id]):
            own.add(event_id)
    return own


def _clean_topic(topic: str) -> str:
    text = " ".join(topic.split())
    if len(text) > 500:
        raise InvalidInput("议题最长500个字符")
    return text
