"""Venue table."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from server.db import UtcDateTime


class Venue(SQLModel, table=True):
    __tablename__ = "venue"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    # A serial kiosk here may check a card bound with its number by UID alone (server.cards.checks);
    # off by default, as a magic card copies a UID.
    accept_uid_only_reads: bool = Field(default=False)
