"""A member's history: moves between organisations, 转正, status changes, exemptions from
organisational life, and committee seats.

Each change closes the open :class:`~server.records.orgs.MembershipPeriod` and opens the next, so
ledgers of earlier periods keep showing the member where and as what they were then. Every change
is audited in the same unit of work, in the caller's name.

Scope: what a change acts on must be in the caller's scope (else it is not found), except the
member a transfer brings in from elsewhere (:func:`move_member`, :func:`change_member_status`),
whose receiving organisation the transfer service has already checked.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Caller
from server.errors import (
    AlreadyEnded,
    CommitteeSeatNotFound,
    ExemptionNotFound,
    InvalidTimeRange,
    MemberNotActive,
)
from server.inputs import clean_text
from server.orgs.service import (
    next_roster_position,
    require_member,
    require_visible_member,
    require_visible_organisation,
)
from server.records.orgs import CommitteeSeat, Member, MemberExemption, MembershipPeriod
from server.vocabulary import CommitteeRole, ExemptionReason, MemberCategory, MemberStatus


def move_member(
    session: Session, *, member_id: int, to_org_id: int, at: datetime, caller: Caller, reason: str = ""
) -> Member:
    """Move an active member to another organisation from ``at`` on (e.g. a transfer received).

    Their attendance stays theirs; events before ``at`` keep them in the old organisation's 应到.
    Their six-month clock keeps running (``joined_org_at`` is not reset); they go to the end of
    the destination's 花名册.
    The member may come from outside the caller's scope (a transfer in); the destination may not.

    Raises:
        MemberNotFound, OrganisationNotFound (also outside the caller's scope).
        MemberNotActive: the member is not currently active.
        InvalidTimeRange: ``at`` is before the start of their current period.
    """
    member = require_member(session, member_id)
    require_visible_organisation(session, to_org_id, caller=caller)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotActive()
    from_org_id = member.org_id
    _start_next_period(session, member, org_id=to_org_id, category=member.category, at=at)
    if to_org_id != from_org_id:
        member.roster_position = next_roster_position(session, to_org_id)
    member.org_id = to_org_id
    # ``joined_org_at`` stays: the six-month clock runs across moves (time there counts).
    session.add(member)
    _audit(
        session,
        caller,
        "member.move",
        member,
        at,
        reason,
        {"from_org_id": from_org_id, "to_org_id": to_org_id},
    )
    session.flush()
    return member


def change_member_category(
    session: Session,
    *,
    member_id: int,
    category: MemberCategory,
    at: datetime,
    caller: Caller,
    reason: str = "",
) -> Member:
    """Record 转正 (probationary → full) or a correction, effective from ``at``.

    Raises:
        MemberNotFound (also outside the caller's scope); MemberNotActive; InvalidTimeRange
        (``at`` before the current period).
    """
    member = require_visible_member(session, member_id, caller=caller)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotActive()
    if member.category == category:
        return member
    before = member.category
    _start_next_period(session, member, org_id=member.org_id, category=category, at=at)
    member.category = category
    session.add(member)
    _audit(
        session, caller, "member.category", member, at, reason, {"from": before.value, "to": category.value}
    )
    session.flush()
    return member


def change_member_status(
    session: Session, *, member_id: int, status: MemberStatus, at: datetime, caller: Caller, reason: str = ""
) -> Member:
    """Change a member's status from ``at``: leaving ``active`` ends their membership period,
    returning to it opens a new one in their organisation.

    The system never does this on its own (reminders only warn); a person decides and is audited.
    Not scoped: a member transferred out earlier and now received back stands outside the
    receiving caller's scope until the transfer moves them in.

    Raises:
        MemberNotFound; InvalidTimeRange (``at`` before the current period).
    """
    member = require_member(session, member_id)
    if member.status == status:
        return member
    before = member.status
    if before == MemberStatus.ACTIVE:
        _close_open_period(session, member, at=at)
    elif status == MemberStatus.ACTIVE:
        _open_period(session, member, org_id=member.org_id, category=member.category, at=at)
    member.status = status
    session.add(member)
    _audit(session, caller, "member.status", member, at, reason, {"from": before.value, "to": status.value})
    session.flush()
    return member


def add_exemption(
    session: Session,
    *,
    member_id: int,
    reason: ExemptionReason,
    starts_at: datetime,
    ends_at: datetime | None,
    note: str,
    caller: Caller,
    now: datetime,
) -> MemberExemption:
    """Record an approved exemption from organisational life over [starts_at, ends_at).

    Raises:
        MemberNotFound (also outside the caller's scope); InvalidTimeRange (ends before it starts).
    """
    member = require_visible_member(session, member_id, caller=caller)
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidTimeRange("结束时间须晚于开始时间")
    exemption = MemberExemption(
        member_id=member_id,
        reason=reason,
        note=note.strip()[:500],
        starts_at=starts_at,
        ends_at=ends_at,
        approved_by=caller.actor.ref,
        created_at=now,
    )
    session.add(exemption)
    session.flush()
    _audit(
        session,
        caller,
        "member.exemption.add",
        member,
        now,
        note,
        {"exemption_id": exemption.id, "reason": reason.value, "starts_at": starts_at, "ends_at": ends_at},
    )
    return exemption


def end_exemption(session: Session, *, exemption_id: int, at: datetime, caller: Caller) -> MemberExemption:
    """End an exemption early (the member is back). Raises ExemptionNotFound (also outside the
    caller's scope), AlreadyEnded."""
    exemption = session.get(MemberExemption, exemption_id)
    if exemption is None or not caller.sees_org(require_member(session, exemption.member_id).org_id):
        raise ExemptionNotFound()
    if exemption.ends_at is not None and exemption.ends_at <= at:
        raise AlreadyEnded()
    if at <= exemption.starts_at:
        raise InvalidTimeRange("结束时间须晚于开始时间")
    exemption.ends_at = at
    session.add(exemption)
    member = require_member(session, exemption.member_id)
    _audit(session, caller, "member.exemption.end", member, at, "", {"exemption_id": exemption_id})
    session.flush()
    return exemption


def appoint_committee_member(
    session: Session, *, org_id: int, member_id: int, role: CommitteeRole, at: datetime, caller: Caller
) -> CommitteeSeat:
    """Seat a member on the organisation's committee from ``at``.

    Raises:
        OrganisationNotFound (also outside the caller's scope), MemberNotFound; MemberNotActive.
    """
    require_visible_organisation(session, org_id, caller=caller)
    member = require_member(session, member_id)
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotActive()
    seat = CommitteeSeat(org_id=org_id, member_id=member_id, role=role, started_at=at)
    session.add(seat)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="committee.appoint",
        object_type="committee_seat",
        object_id=seat.id or 0,
        org_id=org_id,
        at=at,
        detail={"member_id": member_id, "role": role.value},
    )
    return seat


def end_committee_seat(session: Session, *, seat_id: int, at: datetime, caller: Caller) -> CommitteeSeat:
    """End a committee seat (换届, resignation). Raises CommitteeSeatNotFound (also outside the
    caller's scope), AlreadyEnded."""
    seat = session.get(CommitteeSeat, seat_id)
    if seat is None or not caller.sees_org(seat.org_id):
        raise CommitteeSeatNotFound()
    if seat.ended_at is not None:
        raise AlreadyEnded()
    if at <= seat.started_at:
        raise InvalidTimeRange("结束时间须晚于任职开始时间")
    seat.ended_at = at
    session.add(seat)
    record(
        session,
        actor=caller.actor,
        action="committee.end",
        object_type="committee_seat",
        object_id=seat_id,
        org_id=seat.org_id,
        at=at,
        detail={"member_id": seat.member_id},
    )
    session.flush()
    return seat


def committee_seats(session: Session, *, org_id: int, at: datetime) -> list[CommitteeSeat]:
    """The organisation's committee at ``at``."""
    return list(
        session.exec(
            select(CommitteeSeat)
            .where(
                CommitteeSeat.org_id == org_id,
                col(CommitteeSeat.started_at) <= at,
                (col(CommitteeSeat.ended_at).is_(None)) | (col(CommitteeSeat.ended_at) > at),
            )
            .order_by(col(CommitteeSeat.id))
        ).all()
    )


def in_organisation_since(session: Session, member: Member) -> datetime | None:
    """When the member came to their current organisation: the start of the unbroken run of
    periods there (a change of category continues it). None when that predates the records.

    Not ``joined_org_at``, which is when their organisational life in this system began and
    carries across moves (the six-month rule counts from it)."""
    periods = session.exec(
        select(MembershipPeriod)
        .where(MembershipPeriod.member_id == member.id)
        .order_by(col(MembershipPeriod.started_at).desc().nulls_last(), col(MembershipPeriod.id).desc())
    ).all()
    since: datetime | None = None
    for period in periods:
        if period.org_id != member.org_id:
            break
        since = period.started_at
        if since is None:
            break
    return since


def _open_period_of(session: Session, member_id: int) -> MembershipPeriod | None:
    return session.exec(
        select(MembershipPeriod)
        .where(MembershipPeriod.member_id == member_id, col(MembershipPeriod.ended_at).is_(None))
        .order_by(col(MembershipPeriod.id).desc())
        .with_for_update()
    ).first()


def _close_open_period(session: Session, member: Member, *, at: datetime) -> None:
    assert member.id is not None
    current = _open_period_of(session, member.id)
    if current is None:
        return
    if current.started_at is not None and at < current.started_at:
        raise InvalidTimeRange("变更生效时间早于当前所在组织/类别的开始时间")
    current.ended_at = at
    session.add(current)


def _open_period(
    session: Session, member: Member, *, org_id: int, category: MemberCategory, at: datetime
) -> None:
    assert member.id is not None
    session.add(MembershipPeriod(member_id=member.id, org_id=org_id, category=category, started_at=at))


def _start_next_period(
    session: Session, member: Member, *, org_id: int, category: MemberCategory, at: datetime
) -> None:
    _close_open_period(session, member, at=at)
    _open_period(session, member, org_id=org_id, category=category, at=at)


def _audit(
    session: Session,
    caller: Caller,
    action: str,
    member: Member,
    at: datetime,
    reason: str,
    detail: dict[str, object],
) -> None:
    assert member.id is not None
    record(
        session,
        actor=caller.actor,
        action=action,
        object_type="member",
        object_id=member.id,
        org_id=member.org_id,
        at=at,
        reason=clean_text(reason, field="理由", max_length=500) if reason.strip() else "",
        detail=detail,
    )
