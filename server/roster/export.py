"""The member list as an XLSX file (党员名单): the active members of the caller's organisations.

The columns are the 花名册 import's own (姓名, 性别, 党员类别, 所在支部), so a secretary can edit
the file and import it again; 绑卡情况 says only 已绑定 / 未绑定: card numbers and UIDs never
leave the system in an export (and 绑卡情况 is no column the import reads). Each export is
audited: it is personal data leaving the system.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlmodel import Session, col, select

from server.audit.service import record
from server.caller import Caller
from server.db import in_chunks
from server.orgs.service import organisation_names, roster_order
from server.records.cards import CardBinding
from server.records.orgs import Member
from server.vocabulary import BindingStatus, Gender, MemberCategory, MemberStatus

COLUMNS = ("序号", "姓名", "性别", "党员类别", "所在支部", "绑卡情况")
CARD_BOUND = "已绑定"
CARD_NOT_BOUND = "未绑定"
_GENDERS = {Gender.MALE: "男", Gender.FEMALE: "女"}
_CATEGORIES = {MemberCategory.FULL: "正式党员", MemberCategory.PROBATIONARY: "预备党员"}
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class MemberListFile:
    filename: str  # Chinese: the page sends it RFC 5987-encoded
    content: bytes
    members: int


def export_member_list(session: Session, *, caller: Caller, now: datetime, tz: tzinfo) -> MemberListFile:
    """Every active member in the caller's scope, by organisation and in 花名册 order. Audited."""
    members = list(
        session.exec(
            select(Member).where(caller.scope.condition(Member.org_id), Member.status == MemberStatus.ACTIVE)
        ).all()
    )
    names = organisation_names(session, {m.org_id for m in members})
    members.sort(key=lambda m: (names.get(m.org_id, ""), m.org_id, roster_order(m)))
    with_card = _members_with_active_card(session, [m.id for m in members if m.id is not None])

    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "党员名单"
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for number, member in enumerate(members, start=1):
        sheet.append(
            [
                number,
                member.name,
                _GENDERS[member.gender] if member.gender is not None else "",
                _CATEGORIES[member.category],
                names.get(member.org_id, ""),
                CARD_BOUND if member.id in with_card else CARD_NOT_BOUND,
            ]
        )
    for letter, width in zip("ABCDEF", (8, 14, 8, 12, 30, 12), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    workbook.save(buffer)

    scope_name = organisation_names(session, {caller.org_id}).get(caller.org_id, "") if caller.org_id else ""
    record(
        session,
        actor=caller.actor,
        action="roster.export",
        object_type="roster",
        object_id=caller.org_id or 0,
        org_id=caller.org_id,
        at=now,
        detail={"members": len(members)},
    )
    day = now.astimezone(tz).strftime("%Y%m%d")
    filename = f"党员名单-{scope_name or '全部党组织'}-{day}.xlsx"
    return MemberListFile(filename=filename, content=buffer.getvalue(), members=len(members))


def _members_with_active_card(session: Session, member_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for chunk in in_chunks(sorted(member_ids)):
        found.update(
            session.exec(
                select(CardBinding.member_id).where(
                    col(CardBinding.member_id).in_(chunk), CardBinding.status == BindingStatus.ACTIVE
                )
            ).all()
        )
    return found
