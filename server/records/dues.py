"""Party dues (党费): one row per member and month, with what is owed (应交) and what was paid (实交)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum


class DuesSource(StrEnum):
    """Where a month's figures last came from."""

    XLSX = "xlsx"  # 党费收缴表 workbook
    BANK = "bank"  # bank statement CSV (代收/转账流水)
    SYNTH = "synth"  # the synthetic city data set


class DuesMonth(SQLModel, table=True):
    """A member's dues for one calendar month (``month`` is ``YYYY-MM``).

    Amounts are in fen (分). ``standard_fen`` None: the standard is not known (a bank payment for a
    month no 收缴表 listed); 0: exempt (免交, approved by the branch and the level above).
    A month is **settled** when it is exempt, or something was paid and at least the standard
    (docs/supervision.md, 党费).
    """

    __tablename__ = "dues_month"
    __table_args__ = (UniqueConstraint("member_id", "month"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    month: str = Field(max_length=7)
    standard_fen: int | None = Field(default=None)
    paid_fen: int = Field(default=0)
    paid_on: date | None = Field(default=None)
    source: DuesSource = Field(sa_type=string_enum(DuesSource))
    updated_at: datetime = Field(sa_type=UtcDateTime)
