"""Kiosk tables: kiosks, enrollment codes, key history, latest heartbeats, card-enrol sessions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from schemas.messages import ReaderState, TapMode
from server.db import UtcDateTime, string_enum
from server.vocabulary import EnrolSessionStatus, KioskStatus


class EnrolSessionState(StrEnum):
    """What the secretary sees: the stored status, with ``expired`` derived from the clock."""

    PENDING = "pending"
    BOUND = "bound"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Kiosk(SQLModel, table=True):
    __tablename__ = "kiosk"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    venue_id: int = Field(foreign_key="venue.id", index=True)
    status: KioskStatus = Field(sa_type=string_enum(KioskStatus))
    public_key: str | None = Field(default=None, max_length=64, description="base64url raw Ed25519 key")
    kid: str | None = Field(default=None, max_length=64, unique=True)
    agent_version: str = Field(default="", max_length=64)
    enrolled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_seq: int | None = Field(default=None, sa_type=BigInteger)
    last_seen_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(sa_type=UtcDateTime)


class EnrollmentCode(SQLModel, table=True):
    """A one-time code that lets one kiosk register its public key. Stored only as a keyed digest."""

    __tablename__ = "enrollment_code"

    id: int | None = Field(default=None, primary_key=True)
    kiosk_id: str = Field(foreign_key="kiosk.id", index=True, max_length=64)
    code_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    used_by_kid: str | None = Field(default=None, max_length=64)


class KioskKey(SQLModel, table=True):
    """Every key a kiosk ever signed with. A retired key still verifies the taps it signed before
    the rotation (up to ``last_seq``), so taps stored offline across a rotation still ingest."""

    __tablename__ = "kiosk_key"

    kid: str = Field(primary_key=True, max_length=64)
    kiosk_id: str = Field(foreign_key="kiosk.id", index=True, max_length=64)
    public_key: str = Field(max_length=64, description="base64url raw Ed25519 key")
    valid_from: datetime = Field(sa_type=UtcDateTime)
    retired_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_seq: int | None = Field(
        default=None, sa_type=BigInteger, description="Highest seq this key may sign, once retired."
    )


class KioskHeartbeat(SQLModel, table=True):
    """The latest heartbeat of each kiosk (one row per kiosk, replaced by each newer heartbeat)."""

    __tablename__ = "kiosk_heartbeat"

    kiosk_id: str = Field(primary_key=True, foreign_key="kiosk.id", max_length=64)
    received_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime = Field(sa_type=UtcDateTime)
    boot_id: str = Field(max_length=32)
    counter: int = Field(sa_type=BigInteger)
    interval_s: float
    clock_offset_ms: int = Field(sa_type=BigInteger)
    offset_uncertainty_ms: int | None = Field(default=None)
    mode: TapMode = Field(sa_type=string_enum(TapMode))
    outbox_pending: int
    oldest_pending_age_s: float | None = None
    # Taps the kiosk set aside because the server kept refusing them (kept there, never deleted).
    outbox_quarantined: int = 0
    oldest_quarantined_seq: int | None = Field(default=None, sa_type=BigInteger)
    last_seq: int = Field(sa_type=BigInteger)
    agent_version: str = Field(default="", max_length=64)
    reader_state: ReaderState = Field(sa_type=string_enum(ReaderState))
    reader_name: str = Field(default="", max_length=200)


class EnrolSession(SQLModel, table=True):
    """A secretary waiting for a member's card to be tapped at a kiosk in enrol mode.

    ``status`` is stored as pending/bound/cancelled; a pending session past ``expires_at`` is
    expired without anyone writing it (see :func:`server.cards.tap_binding.session_state`).
    """

    __tablename__ = "enrol_session"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    org_id: int = Field(foreign_key="organisation.id", index=True, description="The member's, at start.")
    kiosk_id: str | None = Field(
        default=None, foreign_key="kiosk.id", max_length=64, description="Only this kiosk, when set."
    )
    status: EnrolSessionStatus = Field(sa_type=string_enum(EnrolSessionStatus), index=True)
    started_by: str = Field(max_length=100, description="Audit actor ref of who started it.")
    started_by_name: str = Field(default="", max_length=100)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    binding_id: int | None = Field(default=None, foreign_key="card_binding.id")
    bound_kiosk_id: str | None = Field(default=None, max_length=64)
    card_masked: str | None = Field(default=None, max_length=32)
    last_problem: str | None = Field(default=None, max_length=32, description="Last refused tap's code.")
