"""Event table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import EventKind


class Event(SQLModel, table=True):
    """A meeting or activity of an organisation, held at a venue, with a check-in window."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_venue_window", "venue_id", "checkin_opens_at", "checkin_closes_at"),)

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    venue_id: int = Field(foreign_key="venue.id")
    kind: EventKind = Field(sa_type=string_enum(EventKind))
    start_at: datetime = Field(sa_type=UtcDateTime)
    end_at: datetime = Field(sa_type=UtcDateTime)
    checkin_opens_at: datetime = Field(sa_type=UtcDateTime)
    checkin_closes_at: datetime = Field(sa_type=UtcDateTime)
    created_at: datetime = Field(sa_type=UtcDateTime)
