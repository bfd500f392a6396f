"""Attendance endpoints: the sign-in sheet (签到表, also as a file), manual entries by the recorder,
and out-of-window taps a secretary may assign to an event."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from server.attendance.models import AttendanceSheet
from server.attendance.service import build_attendance_sheet, record_manual_attendance
from server.attendance.unmatched import UnmatchedTap, assign_unmatched_tap, list_unmatched_taps
from server.deps import ClockDep, PrincipalDep, SessionDep, SettingsDep
from server.ledgers.http import FormatQuery, ledger_response, token_actor
from server.ledgers.render import ExportFormat
from server.vocabulary import AttendanceSource

router = APIRouter(prefix="/api/v1", tags=["attendance"])


class ManualAttendanceCreate(BaseModel):
    member_id: int
    reason: str = Field(min_length=1, max_length=500)
    arrived_at: AwareDatetime | None = None  # default: the event's start


class TapAssignment(BaseModel):
    event_id: int
    reason: str = Field(min_length=1, max_length=500)


class AttendancePublic(BaseModel):
    id: int
    event_id: int
    member_id: int
    first_tap_at: datetime
    last_tap_at: datetime
    source: AttendanceSource
    note: str


@router.get("/events/{event_id}/attendance", response_model=AttendanceSheet)
def event_attendance(
    event_id: int,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    fmt: FormatQuery = ExportFormat.JSON,
) -> Response:
    """The event's sign-in sheet: 应到/实到/请假/缺席 (正式/预备), 签到/签退 times, quorum."""
    sheet = build_attendance_sheet(session, event_id=event_id, viewer=principal, tz=settings.tz)
    return ledger_response(sheet, fmt)


@router.post("/events/{event_id}/attendance", status_code=201)
def add_manual_attendance(
    event_id: int, body: ManualAttendanceCreate, session: SessionDep, principal: PrincipalDep, clock: ClockDep
) -> AttendancePublic:
    """The recorder records a presence without a tap, with a reason (audited)."""
    attendance = record_manual_attendance(
        session,
        event_id=event_id,
        member_id=body.member_id,
        reason=body.reason,
        at=body.arrived_at,
        actor=token_actor(principal),
        now=clock(),
        viewer=principal,
    )
    return AttendancePublic.model_validate(attendance, from_attributes=True)


@router.get("/taps/unmatched")
def unmatched_taps(
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    clock: ClockDep,
    org: Annotated[int | None, Query(description="Organisation id; default: the token's")] = None,
    days: Annotated[int, Query(ge=1, le=3650, description="How far back to look")] = 7,
) -> list[UnmatchedTap]:
    """Taps outside every check-in window at the organisation's venues (card holder masked)."""
    now = clock()
    return list_unmatched_taps(
        session,
        viewer=principal,
        org_id=org if org is not None else principal.org_id,
        since=now - timedelta(days=days),
        until=now + timedelta(days=1),
        retention=settings.unmatched_retention,
        tz=settings.tz,
    )


@router.post("/taps/{tap_id}/assign", status_code=201)
def assign_tap(
    tap_id: int, body: TapAssignment, session: SessionDep, principal: PrincipalDep, clock: ClockDep
) -> AttendancePublic:
    """A secretary files an out-of-window tap as the card holder's presence at an event (audited)."""
    attendance = assign_unmatched_tap(
        session,
        tap_id=tap_id,
        event_id=body.event_id,
        reason=body.reason,
        actor=token_actor(principal),
        viewer=principal,
        now=clock(),
    )
    return AttendancePublic.model_validate(attendance, from_attributes=True)
