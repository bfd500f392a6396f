"""Attendance (sign-in sheet) endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from server.attendance.models import AttendanceSheet
from server.attendance.service import build_attendance_sheet
from server.deps import PrincipalDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api/v1/events", tags=["attendance"])


@router.get("/{event_id}/attendance")
def event_attendance(
    event_id: int, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> AttendanceSheet:
    """The event's sign-in sheet: expected, present (with first tap time) and absent members."""
    return build_attendance_sheet(session, event_id=event_id, viewer=principal, tz=settings.tz)
