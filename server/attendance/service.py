"""Recording check-ins, and the sign-in sheet (one builder for the API and the CLI)."""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import or_
from sqlmodel import Session, col, select

from server.attendance.models import (
    Attendance,
    AttendanceSheet,
    NamedRef,
    SheetCounts,
    SheetEvent,
    SheetMember,
    SheetPresence,
)
from server.auth.service import Principal
from server.errors import EventNotFound
from server.events.models import Event
from server.events.service import require_event
from server.orgs.models import Member, Organisation
from server.orgs.service import organisation_subtree_ids
from server.venues.models import Venue
from server.vocabulary import MemberCategory, MemberStatus


def has_checked_in(session: Session, *, event_id: int, member_id: int) -> bool:
    return _attendance_for_update(session, event_id=event_id, member_id=member_id) is not None


def record_checkin(session: Session, *, event_id: int, member_id: int, tap_id: int, at: datetime) -> None:
    """Count an accepted tap towards the member's attendance.

    Taps can arrive out of order (a kiosk uploads its offline backlog late), so first and last are
    the earliest and latest tap times seen, not the first and last received. Two first taps racing
    on PostgreSQL: the second insert fails on the (event, member) unique key and the caller retries.
    """
    attendance = _attendance_for_update(session, event_id=event_id, member_id=member_id)
    if attendance is None:
        session.add(
            Attendance(
                event_id=event_id,
                member_id=member_id,
                first_tap_at=at,
                last_tap_at=at,
                tap_count=1,
                first_tap_id=tap_id,
                last_tap_id=tap_id,
            )
        )
        session.flush()
        return
    if at < attendance.first_tap_at:
        attendance.first_tap_at, attendance.first_tap_id = at, tap_id
    if at >= attendance.last_tap_at:
        attendance.last_tap_at, attendance.last_tap_id = at, tap_id
    attendance.tap_count += 1
    session.add(attendance)
    session.flush()


def _attendance_for_update(session: Session, *, event_id: int, member_id: int) -> Attendance | None:
    return session.exec(
        select(Attendance)
        .where(Attendance.event_id == event_id, Attendance.member_id == member_id)
        .with_for_update()
    ).first()


def build_attendance_sheet(
    session: Session, *, event_id: int, viewer: Principal | None, tz: tzinfo
) -> AttendanceSheet:
    """The event's sign-in sheet: expected members, who was present (first tap), who was absent.

    Expected are the active members of the event's organisation and everything below it who had
    joined by the start. Present members from outside that subtree are listed as guests.
    ``viewer`` None means the caller is trusted (the admin CLI); a scoped viewer only sees events
    of its own subtree, and others look as if they did not exist.

    Raises:
        EventNotFound: no such event, or outside the viewer's scope.
    """
    event = require_event(session, event_id)
    if viewer is not None and not viewer.can_see_org(session, event.org_id):
        raise EventNotFound(f"活动 {event_id} 不存在")
    org_ids = organisation_subtree_ids(session, event.org_id)

    expected_members = session.exec(
        select(Member)
        .where(
            col(Member.org_id).in_(org_ids),
            Member.status == MemberStatus.ACTIVE,
            or_(col(Member.joined_org_at).is_(None), col(Member.joined_org_at) <= event.start_at),
        )
        .order_by(col(Member.org_id), col(Member.name), col(Member.id))
    ).all()
    presences = session.exec(
        select(Attendance, Member)
        .join(Member, col(Member.id) == col(Attendance.member_id))
        .where(Attendance.event_id == event_id)
        .order_by(col(Attendance.first_tap_at), col(Member.id))
    ).all()
    needed_orgs = {event.org_id} | {m.org_id for m in expected_members} | {m.org_id for _, m in presences}
    org_names = {
        org.id: org.name
        for org in session.exec(select(Organisation).where(col(Organisation.id).in_(needed_orgs))).all()
    }

    def as_sheet_member(member: Member) -> SheetMember:
        assert member.id is not None
        return SheetMember(
            member_id=member.id,
            name=member.name,
            category=member.category,
            organisation=NamedRef(id=member.org_id, name=org_names[member.org_id]),
        )

    expected = [as_sheet_member(m) for m in expected_members]
    expected_ids = {m.member_id for m in expected}
    present = [
        SheetPresence(
            **as_sheet_member(member).model_dump(),
            first_tap_at=attendance.first_tap_at.astimezone(tz),
            last_tap_at=attendance.last_tap_at.astimezone(tz),
            tap_count=attendance.tap_count,
            expected=member.id in expected_ids,
        )
        for attendance, member in presences
    ]
    present_ids = {p.member_id for p in present}
    absent = [m for m in expected if m.member_id not in present_ids]
    present_expected = [p for p in present if p.expected]
    return AttendanceSheet(
        event=_sheet_event(session, event, org_names[event.org_id], tz),
        expected=expected,
        present=present,
        absent=absent,
        counts=SheetCounts(
            expected=len(expected),
            present=len(present_expected),
            absent=len(absent),
            present_full=sum(p.category == MemberCategory.FULL for p in present_expected),
            present_probationary=sum(p.category == MemberCategory.PROBATIONARY for p in present_expected),
            guests=len(present) - len(present_expected),
        ),
    )


def _sheet_event(session: Session, event: Event, org_name: str, tz: tzinfo) -> SheetEvent:
    venue = session.get(Venue, event.venue_id)
    assert event.id is not None
    assert venue is not None
    assert venue.id is not None
    return SheetEvent(
        id=event.id,
        title=event.title,
        kind=event.kind,
        organisation=NamedRef(id=event.org_id, name=org_name),
        venue=NamedRef(id=venue.id, name=venue.name),
        start_at=event.start_at.astimezone(tz),
        end_at=event.end_at.astimezone(tz),
        checkin_opens_at=event.checkin_opens_at.astimezone(tz),
        checkin_closes_at=event.checkin_closes_at.astimezone(tz),
    )
