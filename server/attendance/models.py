"""Attendance table, and the sign-in sheet returned by the API and printed by the CLI."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime
from server.taps.models import TAP_ID_TYPE
from server.vocabulary import EventKind, MemberCategory


class Attendance(SQLModel, table=True):
    """A member's presence at an event: first and last accepted tap, and how many."""

    __tablename__ = "attendance"
    __table_args__ = (UniqueConstraint("event_id", "member_id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="event.id", index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    first_tap_at: datetime = Field(sa_type=UtcDateTime)
    last_tap_at: datetime = Field(sa_type=UtcDateTime)
    tap_count: int
    first_tap_id: int = Field(foreign_key="tap.id", sa_type=TAP_ID_TYPE)
    last_tap_id: int = Field(foreign_key="tap.id", sa_type=TAP_ID_TYPE)


class NamedRef(BaseModel):
    id: int
    name: str


class SheetEvent(BaseModel):
    id: int
    title: str
    kind: EventKind
    organisation: NamedRef
    venue: NamedRef
    start_at: datetime
    end_at: datetime
    checkin_opens_at: datetime
    checkin_closes_at: datetime


class SheetMember(BaseModel):
    member_id: int
    name: str
    category: MemberCategory
    organisation: NamedRef


class SheetPresence(SheetMember):
    first_tap_at: datetime
    last_tap_at: datetime
    tap_count: int
    expected: bool  # False: a guest from outside the organisation (e.g. a mobile member)


class SheetCounts(BaseModel):
    expected: int
    present: int  # expected members who tapped
    absent: int
    present_full: int
    present_probationary: int
    guests: int


class AttendanceSheet(BaseModel):
    """签到表: who was expected, who came (with first tap time), who did not."""

    event: SheetEvent
    expected: list[SheetMember]
    present: list[SheetPresence]
    absent: list[SheetMember]
    counts: SheetCounts
