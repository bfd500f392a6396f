"""Kiosk and enrollment-code tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import KioskStatus


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
