"""Attendance endpoints: manual entries by the recorder, and out-of-window taps a secretary may
assign to an event. (The sign-in sheet itself is a ledger: ``server.ledgers.routes``.)"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from server.attendance.service import record_manual_attendance
from server.attendance.unmatched import UnmatchedTap, assign_unmatched_tap, list_unmatched_taps
from server.deps import RequestDep
from server.inputs import RowId
from server.vocabulary import AttendanceSource

router = APIRouter(prefix="/api/v1", tags=["attendance"])


class ManualAttendanceCreate(BaseModel):
    member_id: RowId
    reason: str = Field(min_length=1, max_length=500)
    arrived_at: AwareDatetime | None = None  # default: the event's start


class TapAssignment(BaseModel):
    event_id: RowId
    reason: str = Field(min_length=1, max_length=500)


class AttendancePublic(BaseModel):
    id: int
    event_id: int
    member_id: int
    first_tap_at: datetime
    last_tap_at: datetime
    source: AttendanceSource
    note: str


@router.post("/events/{event_id}/attendance", status_code=201)
def add_manual_attendance(event_id: RowId, body: ManualAttendanceCreate, ctx: RequestDep) -> AttendancePublic:
    """The recorder records a presence without a tap, with a reason (audited)."""
    attendance = record_manual_attendance(
        ctx.session,
        event_id=event_id,
        member_id=body.member_id,
        reason=body.reason,
        at=body.arrived_at,
        caller=ctx.caller,
        now=ctx.now,
    )
    return AttendancePublic.model_validate(attendance, from_attributes=True)


@router.get("/taps/unmatched")
def unmatched_taps(
    ctx: RequestDep,
    org: Annotated[RowId | None, Query(description="Organisation id; default: the token's")] = None,
    days: Annotated[int, Query(ge=1, le=3650, description="How far back to look")] = 7,
) -> list[UnmatchedTap]:
    """Taps outside every check-in window at the organisation's venues (card holder masked)."""
    return list_unmatched_taps(
        ctx.session,
        caller=ctx.caller,
        org_id=org if org is not None else ctx.caller.org_id,
        since=ctx.now - timedelta(days=days),
        until=ctx.now + timedelta(days=1),
        retention=ctx.settings.unmatched_retention,
        tz=ctx.tz,
    )


@router.post("/taps/{tap_id}/assign", status_code=201)
def assign_tap(tap_id: RowId, body: TapAssignment, ctx: RequestDep) -> AttendancePublic:
    """A secretary files an out-of-window tap as the card holder's presence at an event (audited)."""
    attendance = assign_unmatched_tap(
        ctx.session,
        tap_id=tap_id,
        event_id=body.event_id,
        reason=body.reason,
        caller=ctx.caller,
        now=ctx.now,
    )
    return AttendancePublic.model_validate(attendance, from_attributes=True)
