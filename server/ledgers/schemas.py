"""What the ledgers contain (pydantic models: the API returns them, the exports render them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from server.attendance.schemas import NamedRef, Quorum
from server.ledgers.cadence import CadenceStatus
from server.vocabulary import (
    AttendanceSource,
    BindingStatus,
    Cadence,
    CardCheckLevel,
    EventKind,
    ExemptionReason,
    LeaveStatus,
    MemberCategory,
    MemberStatus,
    OrgKind,
)


class LedgerPeriod(BaseModel):
    key: str  # 2026-Q3
    label: str  # 2026年第三季度
    start: datetime
    end: datetime  # exclusive


class LedgerOrganisation(NamedRef):
    kind: OrgKind
    kind_label: str


class LedgerEventRow(BaseModel):
    """One event in an organisation's ledger, with its counts."""

    event_id: int
    title: str
    kinds: list[EventKind]
    kinds_label: str
    start_at: datetime
    end_at: datetime
    venue: str
    host: NamedRef
    organisations: list[NamedRef]
    chair: str | None
    recorder: str | None
    topic: str
    upcoming: bool  # not started yet: nobody is counted absent, and it is left out of the totals
    expected: int
    expected_full: int
    expected_probationary: int
    present: int
    present_full: int
    present_probationary: int
    on_leave: int
    absent: int
    exempt: int
    guests: int  # 列席: present but not invited
    exempt_present: int  # 免于参加者到会
    late: int
    attendance_rate: float | None  # 实到 ÷ 应到
    quorums: list[Quorum]


class CadenceRow(BaseModel):
    """Whether one required meeting was held in one period (see ``server.ledgers.cadence``)."""

    organisation: NamedRef
    kind: EventKind
    kind_label: str
    cadence: Cadence
    cadence_label: str
    period_key: str
    period_label: str
    status: CadenceStatus
    status_label: str
    held_event_ids: list[int]
    planned_event_ids: list[int]


class ParticipationRow(BaseModel):
    """A member's part in the ledger's events, and their organisational-life clock."""

    member_id: int
    name: str
    category: MemberCategory  # at the end of the period (or when they left it)
    organisation: NamedRef
    expected: int  # ledger events they were expected at (应到, leave included)
    present: int  # of those, attended
    on_leave: int
    absent: int  # expected = present + on_leave + absent
    exempt: int
    guest_at: int  # ledger events attended without being invited (列席, e.g. a 支委会 without a seat)
    exempt_present: int  # ledger events attended while exempt (免于参加者到会)
    elsewhere: int  # events of other organisations attended in the period (they count too)
    attendance_rate: float | None  # present ÷ expected
    last_org_life_at: datetime | None  # latest presence anywhere, up to the end of the period
    # A move between organisations in the period: into this organisation's subtree from another
    # (调入), or out of it to another (调出).
    moved_in_at: datetime | None = None
    moved_out_at: datetime | None = None


class LedgerTotals(BaseModel):
    events: int
    expected: int
    present: int
    on_leave: int
    absent: int
    attendance_rate: float | None
    cadence_met: int
    cadence_missed: int
    cadence_open: int  # due, scheduled or upcoming


class OrgLedger(BaseModel):
    """An organisation's ledger for a period: its events, cadence compliance, member participation.

    The events are those held (as host or joint partner) by the organisation or its 党小组;
    the members those of its whole subtree during the period.
    """

    organisation: LedgerOrganisation
    period: LedgerPeriod
    generated_at: datetime
    events: list[LedgerEventRow]
    cadence: list[CadenceRow]
    members: list[ParticipationRow]
    totals: LedgerTotals
    counting_rule: str  # how 应到 and the rate are counted, as printed on the ledger


class HistoryMembership(BaseModel):
    organisation: NamedRef
    category: MemberCategory
    started_at: datetime | None
    ended_at: datetime | None


class HistoryCard(BaseModel):
    binding_id: int
    card: str  # masked number or UID
    status: BindingStatus
    status_label: str
    bound_at: datetime
    ended_at: datetime | None
    verified_level: CardCheckLevel  # the strongest level the card has been verified at
    verified_level_label: str


class HistoryEventRow(BaseModel):
    """One event in a member's history: expected there, or attended as a guest."""

    event_id: int
    title: str
    kinds_label: str
    start_at: datetime
    host: NamedRef
    expected: bool
    outcome: str  # present | absent | on_leave | exempt | exempt_present | guest | not_expected | upcoming
    outcome_label: str
    first_tap_at: datetime | None
    checkout_at: datetime | None
    duration_minutes: int | None
    late: bool
    source: AttendanceSource | None
    note: str
    card_check: CardCheckLevel | None = None  # 核验等级 of the 签到 tap (see SheetPresence)
    card_check_label: str = ""


class HistoryLeave(BaseModel):
    leave_id: int
    event_id: int
    title: str
    status: LeaveStatus
    status_label: str
    reason: str
    requested_at: datetime
    decided_at: datetime | None
    decision_note: str


class HistoryExemption(BaseModel):
    exemption_id: int
    reason: ExemptionReason
    reason_label: str
    note: str
    starts_at: datetime
    ends_at: datetime | None


class HistorySummary(BaseModel):
    expected: int  # events held so far where they were expected: present + on_leave + absent
    present: int
    on_leave: int
    absent: int
    guest: int
    exempt_present: int = 0  # events attended while exempt (免于参加者到会)
    attendance_rate: float | None
    last_org_life_at: datetime | None


class MemberHistory(BaseModel):
    """A member's record: where they belonged, their cards, every event, leave and exemptions."""

    member_id: int
    name: str
    category: MemberCategory
    category_label: str
    status: MemberStatus
    status_label: str
    organisation: NamedRef
    period: LedgerPeriod | None  # None: their whole history
    generated_at: datetime
    memberships: list[HistoryMembership]
    cards: list[HistoryCard]
    events: list[HistoryEventRow]
    leave: list[HistoryLeave]
    exemptions: list[HistoryExemption]
    summary: HistorySummary
    counting_rule: str
