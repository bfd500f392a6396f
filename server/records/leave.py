"""Leave request table."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import LeaveStatus


class LeaveRequest(SQLModel, table=True):
    """A member asks to be excused from one event; approved leave takes them out of 应到.

    A member has at most one pending or approved request per event (the service enforces it);
    rejected and withdrawn ones stay as history.
    """

    __tablename__ = "leave_request"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="event.id", index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    reason: str = Field(max_length=500)
    status: LeaveStatus = Field(sa_type=string_enum(LeaveStatus))
    requested_at: datetime = Field(sa_type=UtcDateTime)
    requested_by: str = Field(max_length=100)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    decided_by: str = Field(default="", max_length=100)
    decision_note: str = Field(default="", max_length=500)
