"""Event tables: the event, the organisations holding it and the kinds it counts for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import EventKind


class Event(SQLModel, table=True):
    """A meeting or activity of an organisation, held at a venue, with a check-in window.

    ``org_id`` is the host and ``kind`` the main kind; :class:`EventOrganisation` and
    :class:`EventKindTag` hold the full lists (host and main kind included), which is what ledgers
    and cadence checks read. Create events with ``server.events.service.add_event`` (or insert the
    link rows alongside, when bulk loading).
    """

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_venue_window", "venue_id", "checkin_opens_at", "checkin_closes_at"),
        Index("ix_event_start_at", "start_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    venue_id: int = Field(foreign_key="venue.id")
    kind: EventKind = Field(sa_type=string_enum(EventKind))
    start_at: datetime = Field(sa_type=UtcDateTime)
    end_at: datetime = Field(sa_type=UtcDateTime)
    checkin_opens_at: datetime = Field(sa_type=UtcDateTime)
    checkin_closes_at: datetime = Field(sa_type=UtcDateTime)
    # A first tap after this is late (迟到); defaults to the start.
    late_after: datetime = Field(sa_type=UtcDateTime)
    chair_member_id: int | None = Field(default=None, foreign_key="member.id")  # 主持人
    recorder_member_id: int | None = Field(default=None, foreign_key="member.id")  # 记录人
    topic: str = Field(default="", max_length=500)  # 议题 / 主题
    created_at: datetime = Field(sa_type=UtcDateTime)


class EventOrganisation(SQLModel, table=True):
    """An organisation holding the event: the host, and the partners of a joint event (联合活动)."""

    __tablename__ = "event_organisation"
    __table_args__ = (Index("ix_event_organisation_org_event", "org_id", "event_id"),)

    event_id: int = Field(foreign_key="event.id", primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", primary_key=True)


class EventKindTag(SQLModel, table=True):
    """A kind the event counts for: a 主题党日 that holds a 党员大会 counts for both."""

    __tablename__ = "event_kind"

    event_id: int = Field(foreign_key="event.id", primary_key=True)
    kind: EventKind = Field(sa_type=string_enum(EventKind), primary_key=True)
