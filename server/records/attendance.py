"""Attendance table: one row per member and event, from taps or manual entries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.records.taps import TAP_ID_TYPE
from server.vocabulary import AttendanceSource


class Attendance(SQLModel, table=True):
    """A member's presence at an event: first and last tap (签到 and 签退), and how many.

    A manual entry (``source=manual``) or an assigned out-of-window tap (``assigned``) carries the
    recorder's reason in ``note`` and who did it in ``recorded_by``; a manual entry has no tap.
    """

    __tablename__ = "attendance"
    __table_args__ = (
        # Also the index of an event's rows (migration 0024).
        UniqueConstraint("event_id", "member_id"),
        # The six-month rule asks for each member's latest attendance: an index-only max(). Also
        # the index of a member's rows.
        Index("ix_attendance_member_first_tap", "member_id", "first_tap_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="event.id")
    member_id: int = Field(foreign_key="member.id")
    first_tap_at: datetime = Field(sa_type=UtcDateTime)
    last_tap_at: datetime = Field(sa_type=UtcDateTime)
    tap_count: int
    first_tap_id: int | None = Field(default=None, foreign_key="tap.id", sa_type=TAP_ID_TYPE)
    last_tap_id: int | None = Field(default=None, foreign_key="tap.id", sa_type=TAP_ID_TYPE)
    # The arrival a recorder entered by hand (source=manual): kept apart from the taps so the row
    # can be recomputed from its taps and this entry (server.attendance.derive).
    manual_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    source: AttendanceSource = Field(default=AttendanceSource.TAP, sa_type=string_enum(AttendanceSource))
    note: str = Field(default="", max_length=500)
    recorded_by: str = Field(default="", max_length=100)
