"""The 签到表 as it is printed and signed on paper: one row per member, in 花名册 order.

A member who signed in shows the time (刷卡 or 补签); everyone else gets an empty signature line.
Members who hold no active card cannot tap, so they are marked and listed once more on a paper
sheet of their own, with blank rows for people who are not on the list (列席, newly arrived).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from sqlmodel import Session, col, select

from server.attendance.schemas import AttendanceSheet, SheetPresence
from server.attendance.service import build_attendance_sheet
from server.caller import Caller
from server.records.cards import CardBinding
from server.vocabulary import AttendanceSource, BindingStatus, MemberCategory

BLANK_ROWS = 8
"""Empty rows on the paper sheet for people not on the list."""


@dataclass(frozen=True)
class PrintRow:
    member_id: int
    name: str
    category: str  # 正式 | 预备
    organisation: str
    has_card: bool
    presence: SheetPresence | None = None
    how: str = ""  # 刷卡 | 补签, for a member who is present
    remark: str = ""  # 请假：… | 免于参加：… | 列席


@dataclass(frozen=True)
class PrintableSheet:
    sheet: AttendanceSheet
    rows: list[PrintRow]  # every expected member, then exempt members
    guests: list[PrintRow]  # 列席 and others present who were not expected
    without_card: list[PrintRow] = field(default_factory=list)
    blank_rows: int = BLANK_ROWS


def printable_sheet(session: Session, *, event_id: int, caller: Caller, tz: tzinfo) -> PrintableSheet:
    """The event's sign-in sheet arranged for printing.

    Raises:
        EventNotFound: no such event, or outside the caller's scope.
    """
    sheet = build_attendance_sheet(session, event_id=event_id, caller=caller, tz=tz)
    present = {p.member_id: p for p in sheet.present}
    leave = {m.member_id: m.reason for m in sheet.on_leave}
    everyone = [m.member_id for m in sheet.expected] + [m.member_id for m in sheet.exempt] + list(present)
    carded = _members_with_active_card(session, everyone)

    def how(presence: SheetPresence) -> str:
        # A tap the secretary filed under the event is still the member's own tap.
        return "补签" if presence.source is AttendanceSource.MANUAL else "刷卡"

    def category(value: MemberCategory) -> str:
        return "预备" if value is MemberCategory.PROBATIONARY else "正式"

    rows: list[PrintRow] = []
    for member in sheet.expected:
        presence = present.get(member.member_id)
        remark = f"请假：{leave[member.member_id]}" if member.member_id in leave and presence is None else ""
        rows.append(
            PrintRow(
                member_id=member.member_id,
                name=member.name,
                category=category(member.category),
                organisation=member.organisation.name,
                has_card=member.member_id in carded,
                presence=presence,
                how=how(presence) if presence else "",
                remark=remark,
            )
        )
    for exempt in sheet.exempt:
        presence = present.get(exempt.member_id)
        rows.append(
            PrintRow(
                member_id=exempt.member_id,
                name=exempt.name,
                category=category(exempt.category),
                organisation=exempt.organisation.name,
                has_card=exempt.member_id in carded,
                presence=presence,
                how=how(presence) if presence else "",
                remark=f"免于参加：{exempt.reason_label}",
            )
        )
    listed = {row.member_id for row in rows}
    guests = [
        PrintRow(
            member_id=p.member_id,
            name=p.name,
            category=category(p.category),
            organisation=p.organisation.name,
            has_card=p.member_id in carded,
            presence=p,
            how=how(p),
            remark=p.role_label,
        )
        for p in sheet.present
        if p.member_id not in listed
    ]
    without_card = [row for row in rows if not row.has_card and row.presence is None and not row.remark]
    return PrintableSheet(sheet=sheet, rows=rows, guests=guests, without_card=without_card)


def _members_with_active_card(session: Session, member_ids: list[int]) -> set[int]:
    if not member_ids:
        return set()
    found = session.exec(
        select(CardBinding.member_id).where(
            col(CardBinding.member_id).in_(sorted(set(member_ids))),
            CardBinding.status == BindingStatus.ACTIVE,
        )
    ).all()
    return set(found)
