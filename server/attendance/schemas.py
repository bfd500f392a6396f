"""Attendance table, and the sign-in sheet (签到表) returned by the API, printed by the CLI and
exported as CSV/XLSX/PDF."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from server.vocabulary import AttendanceSource, CardCheckLevel, EventKind, ExemptionReason, MemberCategory


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


class SheetPresence(SheetMember):
    first_tap_at: datetime  # 签到
    last_tap_at: datetime
    tap_count: int
    expected: bool  # False: a guest, or an exempt member who came anyway
    guest: bool  # from outside the holding organisations (e.g. a mobile member); counts for them too
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
    expected: int  # 应到: members at the time, less approved leave and exemptions
    present: int  # 实到: expected members who came
    absent: int  # 缺席
    present_full: int
    present_probationary: int
    guests: int  # 列席: present but not expected
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
    attendance_rate: float | None  # present / expected, None when nobody was expected


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
