"""Kiosk tables: kiosks, enrollment codes, key history, latest heartbeats, enrol sessions; and the
read models of kiosk health."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel
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
    last_seq: int = Field(sa_type=BigInteger)
    agent_version: str = Field(default="", max_length=64)
    reader_state: ReaderState = Field(sa_type=string_enum(ReaderState))
    reader_name: str = Field(default="", max_length=200)


class EnrolSession(SQLModel, table=True):
    """A secretary waiting for a member's card to be tapped at a kiosk in enrol mode.

    ``status`` is stored as pending/bound/cancelled; a pending session past ``expires_at`` is
    expired without anyone writing it (see :func:`server.kiosks.enrol.session_state`).
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


class HealthProblem(BaseModel):
    """Something about a kiosk a secretary should look at, with a stable code.

    ``level`` is ``error`` when taps may be going wrong now, ``warning`` for a kiosk that has not
    started working yet (not enrolled, never heard from).
    """

    code: str
    message: str
    level: Literal["error", "warning"] = "error"


class KioskHealth(BaseModel):
    """One kiosk as the kiosk pages and ``GET /api/v1/kiosks`` show it."""

    kiosk_id: str
    name: str
    venue_id: int
    venue_name: str
    org_id: int
    status: KioskStatus
    kid: str | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    key_since: datetime | None = Field(description="When the current key was enrolled or rotated in.")
    last_seen_at: datetime | None = Field(description="Last signed tap or heartbeat the server accepted.")
    heartbeat_at: datetime | None
    heartbeat_interval_s: float | None
    mode: TapMode | None
    agent_version: str
    reader_state: ReaderState | None
    reader_name: str
    clock_offset_ms: int | None = Field(description="Server minus kiosk clock, from the latest heartbeat.")
    offset_uncertainty_ms: int | None
    outbox_pending: int | None = Field(description="Taps waiting on the kiosk, from the latest heartbeat.")
    oldest_pending_age_s: float | None
    reported_last_seq: int | None = Field(description="Last seq the kiosk allocated, per its heartbeat.")
    received_max_seq: int | None = Field(description="Highest seq the server has received.")
    received_count: int = Field(description="Distinct seqs the server has received.")
    seq_gaps: int = Field(description="Seqs below the highest received one that never arrived.")
    problems: list[HealthProblem]


class KioskStatusPublic(BaseModel):
    kiosk_id: str
    status: KioskStatus
    revoked_at: datetime | None


class SeqRange(BaseModel):
    first: int
    last: int


class KioskKeyPublic(BaseModel):
    kid: str
    valid_from: datetime
    retired_at: datetime | None
    last_seq: int | None


class KioskDetail(BaseModel):
    health: KioskHealth
    missing_seqs: list[SeqRange] = Field(description="The first ranges of missing seqs, oldest first.")
    keys: list[KioskKeyPublic] = Field(description="Every key of the kiosk, newest first.")


class EnrolSessionPublic(BaseModel):
    """A bind-card-by-tap request as the secretary's page polls it."""

    id: int
    member_id: int
    kiosk_id: str | None
    state: EnrolSessionState
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    card_masked: str | None = Field(description="The bound card, masked, once bound.")
    last_problem: str | None = Field(description="Code of the last refused tap while waiting.")
    last_problem_message: str | None
