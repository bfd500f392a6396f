"""Transfer-in tables (request, introduction letter, ticked documents) and their API models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from server.db import UtcDateTime, string_enum
from server.taps.models import TAP_ID_TYPE
from server.transfers.kinds import DocumentKind, IssuerKind, TransferSource
from server.transfers.states import TransferAction, TransferState
from server.vocabulary import MemberCategory

DUES_MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class TransferRequest(SQLModel, table=True):
    """One 组织关系转入 application to an organisation of ours.

    The applicant is a known member (``member_id``) or a person unknown to the system, known by
    the name they gave and, when they tapped a card, by its keyed digests (never raw identifiers).
    """

    __tablename__ = "transfer_request"
    # pending_key is "m:<member id>" or "c:<card digest>" while the request is pending and NULL
    # otherwise. NULLs are distinct in a unique constraint (SQLite and PostgreSQL), so this allows
    # any number of finished requests but only one pending request per person and organisation,
    # even when two kiosks race (the loser's savepoint retries and finds the winner's request).
    __table_args__ = (UniqueConstraint("to_org_id", "pending_key"),)

    id: int | None = Field(default=None, primary_key=True)
    state: TransferState = Field(sa_type=string_enum(TransferState), index=True)
    state_since: datetime = Field(sa_type=UtcDateTime, description="When the current state began (SLA).")
    submitted_at: datetime = Field(sa_type=UtcDateTime, index=True)
    source: TransferSource = Field(sa_type=string_enum(TransferSource))
    created_by: str = Field(max_length=100, description="Audit actor ref of whoever filed it.")
    to_org_id: int = Field(foreign_key="organisation.id", index=True)
    committee_id: int = Field(
        foreign_key="organisation.id", index=True, description="The receiving 基层党委 (approves, receives)."
    )
    placement_org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    claimed_name: str | None = Field(default=None, max_length=100)
    card_no_hmac: str | None = Field(default=None, max_length=64)
    uid_hmac: str | None = Field(default=None, max_length=64)
    card_masked: str | None = Field(default=None, max_length=32)
    evidence_tap_id: int | None = Field(default=None, foreign_key="tap.id", sa_type=TAP_ID_TYPE)
    probation_due_on: date | None = Field(default=None, description="预备期满日期, for a 预备党员.")
    note: str = Field(default="", max_length=500)
    pending_key: str | None = Field(default=None, max_length=80)
    received_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class IntroductionLetter(SQLModel, table=True):
    """The 党员组织关系介绍信 (paper or electronic) a request rests on.

    A re-issued letter is a new row; the old one gets ``superseded_at`` and stays for the record.
    """

    __tablename__ = "introduction_letter"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="transfer_request.id", index=True)
    letter_no: str = Field(max_length=50)
    issuer_name: str = Field(max_length=200)
    issuer_kind: IssuerKind = Field(sa_type=string_enum(IssuerKind))
    from_org_name: str = Field(max_length=200)
    to_org_name: str = Field(max_length=200)
    member_category: MemberCategory = Field(sa_type=string_enum(MemberCategory))
    dues_paid_to: str = Field(max_length=7, description="党费已交到 YYYY-MM.")
    issued_on: date
    valid_days: int
    recorded_at: datetime = Field(sa_type=UtcDateTime)
    recorded_by: str = Field(max_length=100)
    superseded_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class TransferDocument(SQLModel, table=True):
    """A document the reviewer has seen and ticked; unticking deletes the row (the audit log keeps both)."""

    __tablename__ = "transfer_document"
    __table_args__ = (UniqueConstraint("request_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="transfer_request.id", index=True)
    kind: DocumentKind = Field(sa_type=string_enum(DocumentKind))
    ticked_at: datetime = Field(sa_type=UtcDateTime)
    ticked_by: str = Field(max_length=100)
    ticked_by_name: str = Field(default="", max_length=100)
    note: str = Field(default="", max_length=200)


# --- API models ---


class LetterIn(BaseModel):
    """介绍信 fields as written on the letter."""

    letter_no: str = PydanticField(min_length=1, max_length=50, description="编号（第 号）.")
    issuer_name: str = PydanticField(min_length=1, max_length=200, description="开具单位（盖章单位）.")
    issuer_kind: IssuerKind
    from_org_name: str = PydanticField(min_length=1, max_length=200, description="转出单位.")
    to_org_name: str = PydanticField(min_length=1, max_length=200, description="去向单位.")
    member_category: MemberCategory
    dues_paid_to: str = PydanticField(pattern=DUES_MONTH_PATTERN, description="党费已交到 YYYY-MM.")
    issued_on: date
    valid_days: int = PydanticField(ge=1, le=366, description="有效期（天）.")


class TransferCreate(BaseModel):
    """File a request. The applicant is ``member_id`` (a member the caller may see), or the member
    behind ``card_no`` (the 易通卡 number they show), or else a new person named ``claimed_name``."""

    to_org_id: int
    member_id: int | None = None
    card_no: str | None = PydanticField(default=None, max_length=40)
    claimed_name: str | None = PydanticField(default=None, max_length=100)
    placement_org_id: int | None = None
    letter: LetterIn | None = None
    probation_due_on: date | None = None
    note: str = PydanticField(default="", max_length=500)


class TransferUpdate(BaseModel):
    """Details a reviewer completes later; ``None`` leaves a field as it is."""

    claimed_name: str | None = PydanticField(default=None, max_length=100)
    placement_org_id: int | None = None
    probation_due_on: date | None = None
    note: str | None = PydanticField(default=None, max_length=500)


class TransitionIn(BaseModel):
    action: TransferAction
    reason: str = PydanticField(default="", max_length=500)
    placement_org_id: int | None = PydanticField(
        default=None, description="For branch_accept/receive: the 党支部 (or 党小组) the member joins."
    )


class DocumentTickIn(BaseModel):
    note: str = PydanticField(default="", max_length=200)


CheckSeverity = Literal["blocker", "warning", "ok"]


class CheckResult(BaseModel):
    """One check shown to the reviewer; a ``blocker`` stops accept, approve and receive."""

    code: str
    severity: CheckSeverity
    message: str


class OrgRef(BaseModel):
    id: int
    name: str


class LetterPublic(LetterIn):
    id: int
    valid_until: date
    recorded_at: datetime
    recorded_by: str
    superseded_at: datetime | None


class DocumentPublic(BaseModel):
    kind: DocumentKind
    label: str
    required: bool
    ticked: bool
    ticked_at: datetime | None = None
    ticked_by_name: str | None = None
    note: str = ""


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    actor_name: str
    action: str
    reason: str
    from_state: TransferState | None
    to_state: TransferState | None


class TransferSummary(BaseModel):
    id: int
    state: TransferState
    state_label: str
    applicant_name: str
    member_id: int | None
    card_masked: str | None
    source: TransferSource
    to_org: OrgRef
    committee: OrgRef
    placement_org: OrgRef | None
    submitted_at: datetime
    state_since: datetime
    waiting_working_days: int
    due_on: date | None = PydanticField(
        description="SLA deadline of the current step; None if not ours to act."
    )
    overdue: bool
    blockers: list[str] = PydanticField(description="Codes of the blocking checks.")
    warnings: list[str]


class TransferDetail(TransferSummary):
    member_category: MemberCategory | None
    member_home_org: OrgRef | None = PydanticField(description="For a known member: where they are now.")
    probation_due_on: date | None
    note: str
    evidence_tap_id: int | None
    letter: LetterPublic | None
    earlier_letters: list[LetterPublic]
    checks: list[CheckResult]
    documents: list[DocumentPublic]
    actions: list[TransferAction] = PydanticField(description="What this caller may do now.")
    history: list[HistoryEntry]


class TransferQueue(BaseModel):
    items: list[TransferSummary]
    total: int
    overdue: int


class TransferSuggestion(BaseModel):
    """A member of another organisation who keeps attending our events (see the service docstring)."""

    member_id: int
    name: str
    home_org: OrgRef
    host_org: OrgRef
    events_attended: int
    last_attended_at: datetime
    evidence_tap_id: int | None
