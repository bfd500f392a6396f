"""API token table."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import TokenRole


class ApiToken(SQLModel, table=True):
    """A bearer token, stored as a keyed digest; the token itself is shown once at creation."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    role: TokenRole = Field(sa_type=string_enum(TokenRole))
    org_id: int | None = Field(default=None, foreign_key="organisation.id")
    label: str = Field(default="", max_length=200)
    created_at: datetime = Field(sa_type=UtcDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
