"""党费 (dues) rules: consecutive months without dues, per active member (docs/supervision.md, 党费).

Sources: 《关于中国共产党党费收缴、使用和管理的规定》 (dues are paid monthly; paying late is
allowed only in special cases, normally by no more than six months); 党章 第九条 (six consecutive
months without paying dues, without good reason, counts as 自行脱党: the 支部大会 decides and the
level above approves). The system only warns; it never changes a member's status.

One query over the whole city (or the given organisations): for each active member with any dues
record, the first recorded month and the last *settled* month (exempt, or paid at least the
standard). The months after the last settled one, up to the last month that has ended, are the
arrears; a member with no settled month owes from their first recorded month. A member with no
dues record at all is not judged (their branch does not keep dues in the system).
"""

from __future__ import annotations

import calendar
from collections.abc import Collection
from datetime import date, datetime, tzinfo

from sqlalchemy import and_, case, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from server.db import in_chunks
from server.records.dues import DuesMonth
from server.records.orgs import Member
from server.supervision.findings import Finding, RuleFamily, member_subject
from server.vocabulary import MemberStatus, ReminderLevel

RULE_ARREARS = "dues.arrears"
NOTICE_MONTHS = 3  # 已连续3个月未交纳党费: the secretary reminds the member
ALERT_MONTHS = 6  # 党章 第九条


def month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def _index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _from_index(index: int) -> str:
    return month_key(index // 12, index % 12 + 1)


def _label(month: str) -> str:
    return f"{int(month[:4])}年{int(month[5:7])}月"


def _last_day(month: str) -> date:
    year, number = int(month[:4]), int(month[5:7])
    return date(year, number, calendar.monthrange(year, number)[1])


def find_dues(
    session: Session, *, now: datetime, tz: tzinfo, org_ids: Collection[int] | None = None
) -> list[Finding]:
    """Members behind with their dues as of ``now``: a notice from 3 consecutive unpaid months, an
    alert from 6. ``org_ids``: only members of these organisations (None: the whole city)."""
    today = now.astimezone(tz).date()
    last_ended = _index(month_key(today.year, today.month)) - 1
    settled = or_(
        col(DuesMonth.standard_fen) == 0,
        and_(
            col(DuesMonth.paid_fen) > 0,
            col(DuesMonth.paid_fen) >= func.coalesce(col(DuesMonth.standard_fen), 0),
        ),
    )
    query = (
        sa_select(
            col(Member.id),
            col(Member.name),
            col(Member.org_id),
            func.min(col(DuesMonth.month)),
            func.max(case((settled, col(DuesMonth.month)), else_=None)),
        )
        .join(DuesMonth, col(DuesMonth.member_id) == col(Member.id))
        .where(col(Member.status) == MemberStatus.ACTIVE)
        .group_by(col(Member.id), col(Member.name), col(Member.org_id))
    )
    connection = session.connection()
    rows = (
        connection.execute(query).all()
        if org_ids is None
        else [
            row
            for chunk in in_chunks(sorted(org_ids))
            for row in connection.execute(query.where(col(Member.org_id).in_(chunk))).all()
        ]
    )
    findings = []
    for member_id, name, org_id, first_month, paid_to in rows:
        start = _index(paid_to) + 1 if paid_to is not None else _index(first_month)
        months = last_ended - start + 1
        if months < NOTICE_MONTHS:
            continue
        since = _from_index(start)
        if months >= ALERT_MONTHS:
            level = ReminderLevel.ALERT
            message = (
                f"{name}已连续{months}个月不交纳党费（自{_label(since)}起）。按党章第九条，由支部核实："
                "没有正当理由连续6个月不交纳党费的，由支部大会讨论、报上级党组织批准后处置；"
                "如已交纳或有正当理由，请补登党费记录或说明情况。系统不会自动处理。"
            )
            due_on = None
        else:
            level = ReminderLevel.NOTICE
            last_chance = _from_index(start + ALERT_MONTHS - 1)
            message = (
                f"{name}已连续{months}个月未交纳党费（自{_label(since)}起）。请支部提醒其按月交纳并补交，"
                f"在党费记录中登记；如到{_label(last_chance)}底仍未交纳，将满6个月（党章第九条）。"
            )
            due_on = _last_day(last_chance)
        findings.append(
            Finding(
                rule=RULE_ARREARS,
                family=RuleFamily.DUES,
                level=level,
                org_id=org_id,
                subject=member_subject(member_id),
                period=since,
                message=message,
                due_on=due_on,
            )
        )
    return findings
