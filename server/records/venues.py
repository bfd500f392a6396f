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
