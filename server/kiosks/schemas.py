"""Read models of kiosk health: problems, seq gaps, key history. (The tables are in
``server.records.kiosks``.)"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlmodel import Field

from schemas.messages import ReaderState, TapMode
from server.vocabulary import KioskStatus


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
    outbox_quarantined: int | None = Field(
        default=None, description="Taps the kiosk set aside because the server kept refusing them."
    )
    oldest_quarantined_seq: int | None = Field(default=None, description="Seq of the oldest of those.")
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
