"""Leave endpoints: request (before the event), list, and a secretary's decision."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from server.deps import ClockDep, PrincipalDep, SessionDep
from server.leave.models import LeaveRequest
from server.leave.service import decide_leave, leave_requests_for_event, request_leave, withdraw_leave
from server.ledgers.http import token_actor
from server.vocabulary import LeaveStatus

router = APIRouter(prefix="/api/v1", tags=["leave"])


class LeaveCreate(BaseModel):
    member_id: int
    reason: str = Field(min_length=1, max_length=500)


class LeaveDecision(BaseModel):
    approve: bool
    note: str = Field(default="", max_length=500)


class LeavePublic(BaseModel):
    id: int
    event_id: int
    member_id: int
    reason: str
    status: LeaveStatus
    requested_at: datetime
    decided_at: datetime | None
    decision_note: str


def _public(leave: LeaveRequest) -> LeavePublic:
    return LeavePublic.model_validate(leave, from_attributes=True)


@router.post("/events/{event_id}/leave", status_code=201)
def create_leave(
    event_id: int, body: LeaveCreate, session: SessionDep, principal: PrincipalDep, clock: ClockDep
) -> LeavePublic:
    """Ask leave for a member (before the event starts)."""
    leave = request_leave(
        session,
        event_id=event_id,
        member_id=body.member_id,
        reason=body.reason,
        actor=token_actor(principal),
        now=clock(),
        viewer=principal,
    )
    return _public(leave)


@router.get("/events/{event_id}/leave")
def list_leave(event_id: int, session: SessionDep, principal: PrincipalDep) -> list[LeavePublic]:
    """Every leave request for the event."""
    return [
        _public(leave) for leave in leave_requests_for_event(session, event_id=event_id, viewer=principal)
    ]


@router.post("/leave/{leave_id}/decision")
def decide(
    leave_id: int, body: LeaveDecision, session: SessionDep, principal: PrincipalDep, clock: ClockDep
) -> LeavePublic:
    """Approve or refuse (with a note) a pending request."""
    leave = decide_leave(
        session,
        leave_id=leave_id,
        approve=body.approve,
        note=body.note,
        actor=token_actor(principal),
        now=clock(),
        viewer=principal,
    )
    return _public(leave)


@router.post("/leave/{leave_id}/withdraw")
def withdraw(leave_id: int, session: SessionDep, principal: PrincipalDep, clock: ClockDep) -> LeavePublic:
    """Withdraw a pending or approved request."""
    leave = withdraw_leave(
        session, leave_id=leave_id, actor=token_actor(principal), now=clock(), viewer=principal
    )
    return _public(leave)
