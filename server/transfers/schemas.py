"""Transfer-in tables (request, introduction letter, ticked documents) and their API models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel
from pydantic import Field as PydanticField

from server.inputs import RowId
from server.records.transfers import (
    DUES_MONTH_PATTERN,
    DocumentKind,
    IssuerKind,
    TransferAction,
    TransferSource,
    TransferState,
)
from server.vocabulary import MemberCategory


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
    """File a request. The applicant is ``member_id`` (a member the caller may see), or the holder
    of ``card_no`` (the 易通卡 number they show), or else a new person named ``claimed_name``.

    A card number reveals nothing outside the caller's scope: a card of a member elsewhere and a
    card nobody holds both file a request in ``awaiting_source`` under the name typed here, which
    the member's organisation releases or the holder's own tap at a kiosk confirms."""

    to_org_id: RowId
    member_id: RowId | None = None
    card_no: str | None = PydanticField(default=None, max_length=40)
    claimed_name: str | None = PydanticField(default=None, max_length=100)
    placement_org_id: RowId | None = None
    letter: LetterIn | None = None
    probation_due_on: date | None = None
    note: str = PydanticField(default="", max_length=500)


class TransferUpdate(BaseModel):
    """Details a reviewer completes later; ``None`` leaves a field as it is."""

    claimed_name: str | None = PydanticField(default=None, max_length=100)
    placement_org_id: RowId | None = None
    probation_due_on: date | None = None
    note: str | None = PydanticField(default=None, max_length=500)


class ReleaseDecisionIn(BaseModel):
    """The member's own organisation on an outgoing request: agree (branch), release (基层党委), or
    refuse with a reason."""

    action: Literal[TransferAction.SOURCE_AGREE, TransferAction.RELEASE, TransferAction.REFUSE_RELEASE]
    reason: str = PydanticField(default="", max_length=500)


class TransitionIn(BaseModel):
    action: TransferAction
    reason: str = PydanticField(default="", max_length=500)
    placement_org_id: RowId | None = PydanticField(
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
    """One request as the receiving side sees it. Until the member's own organisation releases
    them, ``applicant_name`` is what the filer typed (or 未登记持卡人) and ``member_id`` is None."""

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
    member_confirmed_at: datetime | None = PydanticField(
        default=None, description="When the applicant confirmed by tapping their card at a kiosk here."
    )


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


class MemberRef(BaseModel):
    id: int
    name: str


class OutgoingSummary(BaseModel):
    """A request for one of our members to move to another organisation, as their own organisation
    sees it: where to, how far it is, and its own decision; not the receiving side's documents,
    letter or notes."""

    id: int
    state: TransferState
    state_label: str
    member: MemberRef
    from_org: OrgRef
    from_committee: OrgRef
    to_org: OrgRef
    to_committee: OrgRef
    source: TransferSource
    submitted_at: datetime
    state_since: datetime
    member_confirmed_at: datetime | None = PydanticField(
        description="When the member tapped their own card at a kiosk of the receiving venue."
    )
    released_at: datetime | None


class OutgoingDetail(OutgoingSummary):
    actions: list[TransferAction] = PydanticField(description="What this caller may decide now.")
    history: list[HistoryEntry] = PydanticField(
        description="State changes; who acted and why only for this organisation's own decisions."
    )


class OutgoingList(BaseModel):
    items: list[OutgoingSummary]
    total: int
