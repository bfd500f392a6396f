"""Attendance table, and the sign-in sheet (签到表) returned by the API, printed by the CLI and
exported as CSV/XLSX/PDF."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from server.vocabulary import (
    AttendanceSource,
    CardCheckLevel,
    EventKind,
    ExemptionReason,
    MemberCategory,
    PresenceRole,
)


class NamedRef(BaseModel):
    id: int
    name: str


class SheetEvent(BaseModel):
    id: int
    title: str
    kind: EventKind  # the main kind
    kinds: list[EventKind]  # every kind the event counts for, main kind first
    organisation: NamedRef  # the host
    organisations: list[NamedRef]  # host first, then the partners of a joint event
    venue: NamedRef
    # The venue's serial kiosks may check cards bound with their number by UID alone (仅UID).
    venue_accepts_uid_only_reads: bool
    start_at: datetime
    end_at: datetime
    checkin_opens_at: datetime
    checkin_closes_at: datetime
    late_after: datetime
    chair: NamedRef | None
    recorder: NamedRef | None
    topic: str


class SheetMember(BaseModel):
    member_id: int
    name: str
    category: MemberCategory  # at the time of the event
    organisation: NamedRef
    # Moved in from another organisation in the event's month (调入, shown with its date).
    moved_in_at: datetime | None = None


class SheetPresence(SheetMember):
    first_tap_at: datetime  # 签到
    last_tap_at: datetime
    tap_count: int
    expected: bool  # in 应到 (counts in 实到); False: a guest, or an exempt member who came anyway
    guest: bool  # 列席: not invited (another organisation's member; no seat at a 支委会)
    role: PresenceRole  # expected | guest | exempt (免于参加者到会)
    role_label: str  # 应到 | 列席 | 免于参加者到会
    checkout_at: datetime | None  # 签退: a later tap, at least SIGN_OUT_MIN_GAP after 签到
    duration_minutes: int | None
    late: bool
    source: AttendanceSource
    note: str
    # 核验等级: how strongly the card of the 签到 tap (and of the 签退 tap) was shown to be the
    # member's bound card; None without a tap (a manual entry) or for a tap from before levels.
    card_check: CardCheckLevel | None
    checkout_card_check: CardCheckLevel | None
    card_check_label: str  # e.g. 「卡号」, 「发卡机构认证；签退：仅UID」; "" without a level


class SheetLeave(SheetMember):
    reason: str


class SheetExempt(SheetMember):
    reason: ExemptionReason
    reason_label: str


class SheetCounts(BaseModel):
    """应到 = 实到 + 请假 + 缺席 (docs/ledgers.md)."""

    expected: int  # 应到: invited members at the time (leave included), less exemptions
    present: int  # 实到: expected members who came
    absent: int  # 缺席: expected, did not come, no approved leave
    present_full: int
    present_probationary: int
    guests: int  # 列席: present but not invited
    exempt_present: int  # 免于参加者到会: exempt members who came anyway
    expected_full: int
    expected_probationary: int
    absent_full: int
    absent_probationary: int
    on_leave: int  # 请假 (approved, and did not come)
    on_leave_full: int
    on_leave_probationary: int
    exempt: int
    late: int
    signed_out: int
    attendance_rate: float | None  # 实到 ÷ 应到, None when nobody was expected


class Quorum(BaseModel):
    """法定人数: a 支部党员大会 needs more than half of its members with a vote (full members,
    not exempt; members on leave still count in the basis), a 支委会 more than half of its
    committee (支部工作条例 第十一、十二条)."""

    kind: EventKind
    basis: int
    present: int
    required: int
    met: bool | None  # None: nobody in the basis (e.g. no committee recorded)
    message: str


class AttendanceSheet(BaseModel):
    """签到表: who was expected, who came (签到/签退), who was on leave, exempt or absent."""

    event: SheetEvent
    expected: list[SheetMember]
    present: list[SheetPresence]
    absent: list[SheetMember]
    on_leave: list[SheetLeave]
    exempt: list[SheetExempt]
    counts: SheetCounts
    quorums: list[Quorum]
    counting_rule: str  # how 应到 and the rate are counted, as printed on the sheet
