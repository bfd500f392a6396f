"""Organisation and member tables."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import MemberCategory, MemberStatus, OrgKind


class Organisation(SQLModel, table=True):
    """A node of the party-organisation tree (基层党委 → 党总支 → 党支部 → 党小组)."""

    __tablename__ = "organisation"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    kind: OrgKind = Field(sa_type=string_enum(OrgKind))
    parent_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    created_at: datetime = Field(sa_type=UtcDateTime)


class Member(SQLModel, table=True):
    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    category: MemberCategory = Field(sa_type=string_enum(MemberCategory))
    status: MemberStatus = Field(sa_type=string_enum(MemberStatus))
    # When the member joined this organisation; None for members recorded without a date (they
    # count as expected at every event). Transfers will set it.
    joined_org_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(sa_type=UtcDateTime)
