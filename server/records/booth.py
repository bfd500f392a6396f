"""留言亭 tables: representatives (党代表), one-time member links and their sessions, messages and
replies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.records.taps import TAP_ID_TYPE
from server.vocabulary import BoothMessageStatus, BoothTopic


class BoothPhoto(SQLModel, table=True):
    """A photo of a message or of a representative: a JPEG or PNG checked by its signature, kept in
    the database with what it belongs to (one transaction writes both, one backup holds both)."""

    __tablename__ = "booth_photo"

    id: int | None = Field(default=None, primary_key=True)
    media_type: str = Field(max_length=50)
    size_bytes: int
    data: bytes = Field(sa_type=LargeBinary)
    uploaded_at: datetime = Field(sa_type=UtcDateTime)


class Representative(SQLModel, table=True):
    """A 党代表 members of ``org_id``'s subtree may write to; ``user_id`` is their web account."""

    __tablename__ = "booth_representative"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    name: str = Field(max_length=100)
    constituency: str = Field(default="", max_length=200, description="选区 or 代表团, as people say it.")
    user_id: int | None = Field(default=None, foreign_key="web_user.id", unique=True)
    active: bool = Field(default=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    photo_id: int | None = Field(default=None, foreign_key="booth_photo.id")


class BoothLink(SQLModel, table=True):
    """A one-time link answered to one accepted message-mode tap, and the short member session it
    opens. Only SHA-256 digests of the link token and of the session cookie are stored."""

    __tablename__ = "booth_link"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    tap_id: int = Field(foreign_key="tap.id", unique=True, sa_type=TAP_ID_TYPE)
    uid_hmac: str = Field(max_length=64, index=True, description="The tapped card, for the daily limit.")
    card_masked: str = Field(max_length=32, description="Masked card number or UID, all a page may show.")
    issued_at: datetime = Field(sa_type=UtcDateTime, index=True)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    session_hash: str | None = Field(default=None, max_length=64, unique=True)
    csrf_token: str = Field(default="", max_length=64)
    session_expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class BoothMessage(SQLModel, table=True):
    """A member's message to a representative. ``anonymous``: the representative is shown
    「匿名党员」; the member is still recorded (and audited)."""

    __tablename__ = "booth_message"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    org_id: int = Field(foreign_key="organisation.id", index=True, description="The member's, when sent.")
    representative_id: int = Field(foreign_key="booth_representative.id", index=True)
    link_id: int = Field(foreign_key="booth_link.id", index=True)
    uid_hmac: str = Field(max_length=64, index=True)
    topic: BoothTopic = Field(sa_type=string_enum(BoothTopic), default=BoothTopic.OTHER)
    body: str = Field(max_length=1000)
    anonymous: bool = Field(default=False)
    status: BoothMessageStatus = Field(sa_type=string_enum(BoothMessageStatus), index=True)
    created_at: datetime = Field(sa_type=UtcDateTime, index=True)
    read_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    forwarded_org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    outcome: str = Field(default="", max_length=500)
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime, index=True)
    replied_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    reply_seen_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    photo_id: int | None = Field(default=None, foreign_key="booth_photo.id")


class BoothReply(SQLModel, table=True):
    """A reply to a message, by the representative or the organisation it was forwarded to."""

    __tablename__ = "booth_reply"

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="booth_message.id", index=True)
    body: str = Field(max_length=1000)
    author_name: str = Field(max_length=100)
    author_ref: str = Field(max_length=64)
    at: datetime = Field(sa_type=UtcDateTime)
