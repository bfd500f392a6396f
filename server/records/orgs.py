"""Organisation and member tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.vocabulary import CommitteeRole, ExemptionReason, Gender, MemberCategory, MemberStatus, OrgKind


class Organisation(SQLModel, table=True):
    """A node of the party-organisation tree (基层党委 → 党总支 → 党支部 → 党小组)."""

    __tablename__ = "organisation"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    kind: OrgKind = Field(sa_type=string_enum(OrgKind))
    parent_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    # When it was set up, for an organisation entered after the fact; None: since ``created_at``.
    # Its required meetings (server.ledgers.cadence) run from :attr:`since`.
    founded_at: datetime | None = Field(default=None, sa_type=UtcDateTime)

    @property
    def since(self) -> datetime:
        """Since when the organisation exists for the records: founded, or else entered."""
        return self.founded_at or self.created_at


class Member(SQLModel, table=True):
    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    category: MemberCategory = Field(sa_type=string_enum(MemberCategory))
    status: MemberStatus = Field(sa_type=string_enum(MemberStatus))
    # None: not recorded (members added before the roster import existed, or a roster without 性别).
    gender: Gender | None = Field(default=None, sa_type=string_enum(Gender))
    # When the member's organisational life in this system began, where the six-month clock starts
    # without a presence: the date given when added, or for a transfer in from outside the
    # introduction letter's date. A move between organisations keeps it (time in the previous
    # branch counts). None: not recorded (the clock starts at ``created_at``).
    joined_org_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    created_at: datetime = Field(sa_type=UtcDateTime)
    # Place in the organisation's 花名册 (roster import, ``member add``, a move in: appended);
    # ledgers list names in this order, members without one after, by name.
    roster_position: int | None = Field(default=None)


class MembershipPeriod(SQLModel, table=True):
    """A stretch of time in which a member belonged to one organisation in one category.

    Expected attendance (应到) and the 正式/预备 split are computed from these rows at the event's
    time, so a member who transferred out or became a full member later still shows as they were
    in old ledgers. ``Member.org_id`` / ``category`` / ``status`` mirror the open period; change
    them only through ``server.orgs.service.add_member`` and ``server.orgs.membership``
    (``move_member``, ``change_member_category``, ``change_member_status``), which keep both in
    step. Bulk loaders insert one open period per active member (``started_at`` =
    ``joined_org_at``).
    """

    __tablename__ = "membership_period"
    __table_args__ = (Index("ix_membership_period_org_started", "org_id", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    org_id: int = Field(foreign_key="organisation.id")
    category: MemberCategory = Field(sa_type=string_enum(MemberCategory))
    # None: since before records began (counts as a member at every earlier event).
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class MemberExemption(SQLModel, table=True):
    """An approved, time-boxed exemption from organisational life (docs/domain-rules.md §1.4)."""

    __tablename__ = "member_exemption"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    reason: ExemptionReason = Field(sa_type=string_enum(ExemptionReason))
    note: str = Field(default="", max_length=500)
    starts_at: datetime = Field(sa_type=UtcDateTime)
    ends_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    approved_by: str = Field(max_length=100)
    created_at: datetime = Field(sa_type=UtcDateTime)


class CommitteeSeat(SQLModel, table=True):
    """A seat on an organisation's committee (支部委员会): who is expected at a 支委会 and its quorum."""

    __tablename__ = "committee_seat"

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    role: CommitteeRole = Field(sa_type=string_enum(CommitteeRole))
    started_at: datetime = Field(sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
