"""Read-only lookups the pages need to fill lists and choices, limited to the caller's scope.

No decisions here (those are in the domain services): only "which rows may this user pick from".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from server.caller import Caller
from server.inputs import LIKE_ESCAPE, MAX_ROW_ID, like_pattern
from server.records.attendance import Attendance
from server.records.events import Event, EventOrganisation
from server.records.orgs import Member, Organisation
from server.vocabulary import MemberStatus


def organisations_in_scope(session: Session, caller: Caller) -> list[Organisation]:
    query = select(Organisation).where(caller.scope.condition(Organisation.id)).order_by(col(Organisation.id))
    return list(session.exec(query).all())


def events_in_scope(
    session: Session,
    caller: Caller,
    *,
    now: datetime,
    upcoming: bool,
    limit: int = 100,
) -> list[Event]:
    """Events held (or co-held) by the caller's subtree: upcoming soonest first, or past latest first."""
    query = _held_in_scope(select(Event), caller)
    if upcoming:
        query = query.where(col(Event.end_at) >= now).order_by(col(Event.start_at))
    else:
        query = query.where(col(Event.end_at) < now).order_by(col(Event.start_at).desc())
    return list(session.exec(query.limit(limit)).all())


def count_events_between(session: Session, caller: Caller, *, start: datetime, end: datetime) -> int:
    """Events of the caller's subtree starting in [start, end)."""
    starting = (
        select(func.count()).select_from(Event).where(col(Event.start_at) >= start, col(Event.start_at) < end)
    )
    query = _held_in_scope(starting, caller)
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
    session: Session, caller: Caller, *, search: str = "", include_inactive: bool = False, limit: int = 200
) -> list[Member]:
    query = (
        select(Member)
        .where(caller.scope.condition(Member.org_id))
        .order_by(col(Member.org_id), col(Member.name), col(Member.id))
    )
    if not include_inactive:
        query = query.where(Member.status == MemberStatus.ACTIVE)
    text = search.strip()
    if text:
        by_name = col(Member.name).like(like_pattern(text), escape=LIKE_ESCAPE)
        conditions: list[ColumnElement[bool]] = [by_name]
        # An id only when it could be one: a pasted card number must not overflow the column, and
        # str.isdigit() also admits digits int() refuses (「²」).
        if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ROW_ID:
            conditions.append(col(Member.id) == int(text))
        query = query.where(or_(*conditions))
    return list(session.exec(query.limit(limit)).all())


Query = TypeVar("Query", SelectOfScalar[Event], SelectOfScalar[int])


def _held_in_scope(query: Query, caller: Caller) -> Query:
    """Only events held (or co-held) by an organisation in the caller's scope."""
    if caller.scope.org_ids is None:
        return query
    holders = select(EventOrganisation.event_id).where(caller.scope.condition(EventOrganisation.org_id))
    return query.where(col(Event.id).in_(holders))
