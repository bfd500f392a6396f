"""Read-only lookups the pages need to fill lists and choices, limited to the viewer's scope.

No decisions here (those are in the domain services): only "which rows may this user pick from".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from server.attendance.models import Attendance
from server.events.models import Event, EventOrganisation
from server.orgs.models import Member, Organisation
from server.orgs.tree import ancestor_ids
from server.users.service import WebUser
from server.venues.models import Venue
from server.vocabulary import MemberStatus


def organisations_in_scope(session: Session, viewer: WebUser) -> list[Organisation]:
    query = select(Organisation).order_by(col(Organisation.id))
    if viewer.org_ids is not None:
        query = query.where(col(Organisation.id).in_(viewer.org_ids))
    return list(session.exec(query).all())


def organisation_names(session: Session, org_ids: set[int]) -> dict[int, str]:
    if not org_ids:
        return {}
    rows = session.exec(select(Organisation).where(col(Organisation.id).in_(org_ids))).all()
    return {org.id: org.name for org in rows if org.id is not None}


def venues_for(session: Session, viewer: WebUser) -> list[Venue]:
    """Venues an event of the viewer's may use: in the subtree, or of an organisation above it
    (a branch meets in its 党委's hall)."""
    query = select(Venue).order_by(col(Venue.name))
    if viewer.org_ids is not None and viewer.org_id is not None:
        usable = set(viewer.org_ids) | set(ancestor_ids(session, viewer.org_id))
        query = query.where(col(Venue.org_id).in_(usable))
    return list(session.exec(query).all())


def events_in_scope(
    session: Session,
    viewer: WebUser,
    *,
    now: datetime,
    upcoming: bool,
    limit: int = 100,
) -> list[Event]:
    """Events held (or co-held) by the viewer's subtree: upcoming soonest first, or past latest first."""
    query = select(Event)
    if viewer.org_ids is not None:
        holders = select(EventOrganisation.event_id).where(col(EventOrganisation.org_id).in_(viewer.org_ids))
        query = query.where(col(Event.id).in_(holders))
    if upcoming:
        query = query.where(col(Event.end_at) >= now).order_by(col(Event.start_at))
    else:
        query = query.where(col(Event.end_at) < now).order_by(col(Event.start_at).desc())
    return list(session.exec(query.limit(limit)).all())


def count_events_between(session: Session, viewer: WebUser, *, start: datetime, end: datetime) -> int:
    """Events of the viewer's subtree starting in [start, end)."""
    query = (
        select(func.count()).select_from(Event).where(col(Event.start_at) >= start, col(Event.start_at) < end)
    )
    if viewer.org_ids is not None:
        holders = select(EventOrganisation.event_id).where(col(EventOrganisation.org_id).in_(viewer.org_ids))
        query = query.where(col(Event.id).in_(holders))
    count: int = session.exec(query).one()
    return count


def present_counts(session: Session, event_ids: Sequence[int]) -> dict[int, int]:
    """How many members have an attendance record at each event."""
    if not event_ids:
        return {}
    rows = session.exec(
        select(Attendance.event_id, func.count())
        .where(col(Attendance.event_id).in_(list(event_ids)))
        .group_by(col(Attendance.event_id))
    ).all()
    return dict(rows)


def members_in_scope(
    session: Session, viewer: WebUser, *, search: str = "", include_inactive: bool = False, limit: int = 200
) -> list[Member]:
    query = select(Member).order_by(col(Member.org_id), col(Member.name), col(Member.id))
    if viewer.org_ids is not None:
        query = query.where(col(Member.org_id).in_(viewer.org_ids))
    if not include_inactive:
        query = query.where(Member.status == MemberStatus.ACTIVE)
    text = search.strip()
    if text:
        conditions = [col(Member.name).contains(text)]
        if text.isdigit():
            conditions.append(col(Member.id) == int(text))
        query = query.where(or_(*conditions))
    return list(session.exec(query.limit(limit)).all())
