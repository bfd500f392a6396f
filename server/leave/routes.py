"""Leave endpoints: request (before the event), list, and a secretary's decision."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from server.deps import RequestDep
from server.inputs import RowId
from server.leave.service import decide_leave, leave_requests_for_event, request_leave, withdraw_leave
from server.records.leave import LeaveRequest
from server.vocabulary import LeaveStatus

router = APIRouter(prefix="/api/v1", tags=["leave"])


class LeaveCreate(BaseModel):
    member_id: RowId
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
def create_leave(event_id: RowId, body: LeaveCreate, ctx: RequestDep) -> LeavePublic:
    """Ask leave for a member (before the event starts)."""
    leave = request_leave(
        ctx.session,
        event_id=event_id,
        member_id=body.member_id,
        reason=body.reason,
        caller=ctx.caller,
        now=ctx.now,
    )
    return _public(leave)


@router.get("/events/{event_id}/leave")
def list_leave(event_id: RowId, ctx: RequestDep) -> list[LeavePublic]:
    """Every leave request for the event."""
    leave = leave_requests_for_event(ctx.session, event_id=event_id, caller=ctx.caller)
    return [_public(request) for request in leave]


@router.post("/leave/{leave_id}/decision")
def decide(leave_id: RowId, body: LeaveDecision, ctx: RequestDep) -> LeavePublic:
    """Approve or refuse (with a note) a pending request."""
    leave = decide_leave(
        ctx.session,
        leave_id=leave_id,
        approve=body.approve,
        note=body.note,
        caller=ctx.caller,
        now=ctx.now,
    )
    return _public(leave)


@router.post("/leave/{leave_id}/withdraw")
def withdraw(leave_id: RowId, ctx: RequestDep) -> LeavePublic:
    """Withdraw a pending or approved request."""
    return _public(withdraw_leave(ctx.session, leave_id=leave_id, caller=ctx.caller, now=ctx.now))
