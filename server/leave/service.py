"""Leave requests (请假): asked before the event (“事先必须向党支部请假获准”), decided by a
secretary; approved leave takes the member out of 应到 (see ``server.attendance.rolls``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from server.attendance.rolls import compute_rolls
from server.audit.service import record
from server.caller import Caller
from server.errors import (
    EventNotFound,
    LeaveAlreadyRequested,
    LeaveNotPending,
    LeaveRequestNotFound,
    LeaveTooLate,
    MemberNotExpected,
    MemberNotFound,
    ReasonRequired,
)
from server.events.service import require_event, require_visible_event
from server.inputs import clean_text, required_reason
from server.orgs.service import members_by_id, organisation_names, require_member, roster_order
from server.records.events import Event, EventOrganisation
from server.records.leave import LeaveRequest
from server.records.orgs import Member
from server.vocabulary import LeaveStatus

_OPEN = (LeaveStatus.PENDING, LeaveStatus.APPROVED)


def request_leave(
    session: Session,
    *,
    event_id: int,
    member_id: int,
    reason: str,
    caller: Caller,
    now: datetime,
) -> LeaveRequest:
    """A member (or a secretary for them) asks to be excused from an event.

    Raises:
        EventNotFound (also outside the caller's scope), MemberNotFound.
        ReasonRequired: no reason.
        LeaveTooLate: the event has already started.
        MemberNotExpected: the member is not invited (not in the holding organisations, or not on
            the committee of a 支委会), or is exempt anyway.
        LeaveAlreadyRequested: a pending or approved request exists.
    """
    event = require_visible_event(session, event_id, caller=caller)
    member = require_member(session, member_id)
    text = required_reason(reason, missing="请假须说明理由", field="请假理由")
    if now >= event.start_at:
        raise LeaveTooLate()
    roll = compute_rolls(session, [event], only_member_id=member_id)[event_id]
    if member_id not in roll.invited or member_id in roll.exempt:
        if not caller.sees_org(member.org_id):
            # Not invited and outside the caller's scope: answer as for an id nobody has.
            raise MemberNotFound(f"党员 {member_id} 不存在")
        raise MemberNotExpected()
    existing = session.exec(
        select(LeaveRequest).where(
            LeaveRequest.event_id == event_id,
            LeaveRequest.member_id == member_id,
            col(LeaveRequest.status).in_(_OPEN),
        )
    ).first()
    if existing is not None:
        raise LeaveAlreadyRequested()
    leave = LeaveRequest(
        event_id=event_id,
        member_id=member_id,
        reason=text,
        status=LeaveStatus.PENDING,
        requested_at=now,
        requested_by=caller.actor.ref,
    )
    session.add(leave)
    session.flush()
    record(
        session,
        actor=caller.actor,
        action="leave.request",
        object_type="leave_request",
        object_id=leave.id or 0,
        org_id=event.org_id,
        at=now,
        reason=text,
        detail={"event_id": event_id, "member_id": member_id},
    )
    return leave


def decide_leave(
    session: Session,
    *,
    leave_id: int,
    approve: bool,
    note: str,
    caller: Caller,
    now: datetime,
) -> LeaveRequest:
    """A secretary approves or refuses a pending request (a refusal needs a note). Audited.

    Raises:
        LeaveRequestNotFound (also outside the caller's scope); LeaveNotPending;
        ReasonRequired (refusal without a note).
    """
    leave = _require_leave(session, leave_id, caller)
    if leave.status != LeaveStatus.PENDING:
        raise LeaveNotPending()
    if not approve and not note.strip():
        raise ReasonRequired("不予准假须说明理由")
    leave.decision_note = clean_text(note, field="审批意见", max_length=500) if note.strip() else ""
    status = LeaveStatus.APPROVED if approve else LeaveStatus.REJECTED
    action = "leave.approve" if approve else "leave.reject"
    return _settle(session, leave, status, action=action, caller=caller, now=now, reason=leave.decision_note)


def withdraw_leave(session: Session, *, leave_id: int, caller: Caller, now: datetime) -> LeaveRequest:
    """The member withdraws a pending or approved request (they will come after all).

    Raises:
        LeaveRequestNotFound (also outside the caller's scope); LeaveNotPending (already refused
        or withdrawn).
    """
    leave = _require_leave(session, leave_id, caller)
    if leave.status not in _OPEN:
        raise LeaveNotPending("该请假申请已结束，不能撤回")
    return _settle(session, leave, LeaveStatus.WITHDRAWN, action="leave.withdraw", caller=caller, now=now)


def leave_requests_for_event(session: Session, *, event_id: int, caller: Caller) -> list[LeaveRequest]:
    """Every request for the event, oldest first. Raises EventNotFound (also out of scope)."""
    require_visible_event(session, event_id, caller=caller)
    return list(
        session.exec(
            select(LeaveRequest)
            .where(LeaveRequest.event_id == event_id)
            .order_by(col(LeaveRequest.requested_at), col(LeaveRequest.id))
        ).all()
    )


@dataclass(frozen=True)
class LeaveListing:
    """A request with what a page shows beside it: the event and the member (and their branch)."""

    leave: LeaveRequest
    event: Event
    member_name: str
    org_name: str


def require_visible_leave(session: Session, leave_id: int, *, caller: Caller) -> LeaveListing:
    """One request, if its event is in the caller's scope.

    Raises:
        LeaveRequestNotFound: no such request, or its event is outside the scope (indistinguishable).
    """
    leave = session.get(LeaveRequest, leave_id)
    if leave is None:
        raise LeaveRequestNotFound(f"请假申请 {leave_id} 不存在")
    try:
        require_visible_event(session, leave.event_id, caller=caller)
    except EventNotFound as exc:
        raise LeaveRequestNotFound(f"请假申请 {leave_id} 不存在") from exc
    return _listings(session, [leave])[0]


def leave_requests_in_scope(
    session: Session, *, caller: Caller, pending: bool, limit: int = 100
) -> list[LeaveListing]:
    """Requests for events held (or co-held) in the caller's scope: the pending ones, soonest
    event first, or the decided ones, latest decision first."""
    query = select(LeaveRequest).join(Event, col(Event.id) == col(LeaveRequest.event_id))
    if caller.scope.org_ids is not None:
        holders = select(EventOrganisation.event_id).where(caller.scope.condition(EventOrganisation.org_id))
        query = query.where(col(LeaveRequest.event_id).in_(holders))
    if pending:
        query = query.where(LeaveRequest.status == LeaveStatus.PENDING).order_by(
            col(Event.start_at), col(LeaveRequest.requested_at), col(LeaveRequest.id)
        )
    else:
        query = query.where(LeaveRequest.status != LeaveStatus.PENDING).order_by(
            col(LeaveRequest.decided_at).desc(), col(LeaveRequest.id).desc()
        )
    return _listings(session, list(session.exec(query.limit(limit)).all()))


def members_who_may_ask(session: Session, *, event_id: int, caller: Caller, now: datetime) -> list[Member]:
    """Whom leave can be recorded for at the event now (the choices of a form): invited, not
    exempt, in the caller's scope, without a pending or approved request; nobody once it has
    started. In 花名册 order, by organisation.

    Raises:
        EventNotFound (also outside the caller's scope).
    """
    event = require_visible_event(session, event_id, caller=caller)
    if now >= event.start_at:
        return []
    roll = compute_rolls(session, [event])[event_id]
    asked = set(
        session.exec(
            select(LeaveRequest.member_id).where(
                LeaveRequest.event_id == event_id, col(LeaveRequest.status).in_(_OPEN)
            )
        ).all()
    )
    candidates = members_by_id(session, roll.invited - set(roll.exempt) - asked)
    return sorted(
        (member for member in candidates.values() if caller.sees_org(member.org_id)),
        key=lambda member: (member.org_id, roster_order(member)),
    )


def _listings(session: Session, requests: list[LeaveRequest]) -> list[LeaveListing]:
    events = {
        event.id: event
        for event in session.exec(
            select(Event).where(col(Event.id).in_(sorted({leave.event_id for leave in requests})))
        ).all()
    }
    members = members_by_id(session, {leave.member_id for leave in requests})
    org_names = organisation_names(session, {member.org_id for member in members.values()})
    return [
        LeaveListing(
            leave=leave,
            event=events[leave.event_id],
            member_name=members[leave.member_id].name,
            org_name=org_names.get(members[leave.member_id].org_id, ""),
        )
        for leave in requests
    ]


def _settle(
    session: Session,
    leave: LeaveRequest,
    status: LeaveStatus,
    *,
    action: str,
    caller: Caller,
    now: datetime,
    reason: str = "",
) -> LeaveRequest:
    """Move a request to its decided *status* (who and when are kept on it) and audit *action*."""
    leave.status = status
    leave.decided_at = now
    leave.decided_by = caller.actor.ref
    session.add(leave)
    event = require_event(session, leave.event_id)
    record(
        session,
        actor=caller.actor,
        action=action,
        object_type="leave_request",
        object_id=leave.id or 0,
        org_id=event.org_id,
        at=now,
        reason=reason,
        detail={"event_id": leave.event_id, "member_id": leave.member_id},
    )
    session.flush()
    return leave


def _require_leave(session: Session, leave_id: int, caller: Caller) -> LeaveRequest:
    leave = session.exec(select(LeaveRequest).where(LeaveRequest.id == leave_id).with_for_update()).first()
    if leave is None:
        raise LeaveRequestNotFound(f"请假申请 {leave_id} 不存在")
    try:
        require_visible_event(session, leave.event_id, caller=caller)
    except EventNotFound as exc:
        raise LeaveRequestNotFound(f"请假申请 {leave_id} 不存在") from exc
    return leave
