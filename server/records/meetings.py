"""Meeting record tables: the 会议记录 of an event, its attachments and their bytes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, Text
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime


class MeetingRecord(SQLModel, table=True):
    """The 会议记录 of one event: agenda (议程), minutes (会议内容) and resolutions (决议).

    Written by the secretary or the recorder after the meeting; ``locked_at`` is set when the
    secretary signs it off (签发), after which neither the text nor the attachments change.
    Write it through ``server.meetings.service``.
    """

    __tablename__ = "meeting_record"

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="event.id", unique=True)
    agenda: str = Field(default="", sa_type=Text)
    minutes: str = Field(default="", sa_type=Text)
    resolutions: str = Field(default="", sa_type=Text)
    updated_at: datetime = Field(sa_type=UtcDateTime)
    updated_by: str = Field(max_length=100)
    updated_by_name: str = Field(default="", max_length=100)
    locked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    locked_by: str = Field(default="", max_length=100)
    locked_by_name: str = Field(default="", max_length=100)


class MeetingAttachment(SQLModel, table=True):
    """A photo of the meeting or a scanned page (JPEG, PNG or PDF) attached to a meeting record.

    The bytes are in :class:`MeetingAttachmentContent`, so listing attachments reads no file.
    """

    __tablename__ = "meeting_attachment"

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="meeting_record.id", index=True)
    file_name: str = Field(max_length=200)
    media_type: str = Field(max_length=50)
    size_bytes: int
    sha256: str = Field(max_length=64)
    uploaded_at: datetime = Field(sa_type=UtcDateTime)
    uploaded_by: str = Field(max_length=100)
    uploaded_by_name: str = Field(default="", max_length=100)


class MeetingAttachmentContent(SQLModel, table=True):
    """The bytes of one attachment, kept in the database with the record they belong to (one
    transaction writes both, and a database backup holds both)."""

    __tablename__ = "meeting_attachment_content"

    attachment_id: int = Field(foreign_key="meeting_attachment.id", primary_key=True)
    data: bytes = Field(sa_type=LargeBinary)
