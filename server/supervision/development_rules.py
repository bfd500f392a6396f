"""发展党员 (member development) rules: the timing of the stages (docs/supervision.md, 发展党员).

Source: 《中国共产党发展党员工作细则》 (2014): the organisation sends someone to talk with an
applicant within one month of receiving the 入党申请书 (第二章, 入党申请); 入党积极分子 are listed as
发展对象 only after 一年以上 of training and assessment (第十三条); probation is one year from the
支部大会's admission, and at its end the branch discusses 转正 in time (第五章; 党章 第七条).

One query: every record not yet 正式党员 (of the given organisations). Irregular steps already taken
are reported while they can still be put right, that is until the next decision: a talk held late
until the person is named 发展对象, a talk never recorded and a 发展对象 named too early until
admission as 预备党员 (the 基层党委's 预审 comes before it).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, tzinfo

from sqlmodel import Session, col, select

from server.dates import add_months, date_text
from server.db import in_chunks
from server.records.development import DevelopmentRecord, DevelopmentStage
from server.supervision.findings import Finding, RuleFamily
from server.vocabulary import ReminderLevel

RULE_TALK = "development.talk"
RULE_TALK_LATE = "development.talk_late"
RULE_CANDIDATE_TOO_EARLY = "development.candidate_too_early"
RULE_FULL_DUE = "development.full_due"

TALK_NOTICE_DAYS = 7  # a notice in the last week of the talk's month
FULL_NOTICE_DAYS = 30  # 转正 reminder: 30 days before probation ends

_BEFORE_CANDIDATE = (DevelopmentStage.APPLICANT, DevelopmentStage.ACTIVIST)


def development_subject(record_id: int) -> str:
    return f"development:{record_id}"


def talk_deadline(applied_on: date) -> date:
    """一个月内: the talk is due by the same day of the next month (applied 4月10日 → 5月10日)."""
    return add_months(applied_on, 1)


def activist_year_ends(activist_on: date) -> date:
    """一年以上: the first day someone named 积极分子 on ``activist_on`` may become 发展对象."""
    return add_months(activist_on, 12)


def probation_ends(admitted_on: date) -> date:
    """预备期一年: the day 转正 is due."""
    return add_months(admitted_on, 12)


def find_development(
    session: Session, *, now: datetime, tz: tzinfo, org_ids: Collection[int] | None = None
) -> list[Finding]:
    """Development records whose timing slipped, as of ``now``. ``org_ids``: only records of
    these organisations (None: the whole city)."""
    today = now.astimezone(tz).date()
    query = select(DevelopmentRecord).where(DevelopmentRecord.stage != DevelopmentStage.FULL)
    records = (
        list(session.exec(query).all())
        if org_ids is None
        else [
            entry
            for chunk in in_chunks(sorted(org_ids))
            for entry in session.exec(query.where(col(DevelopmentRecord.org_id).in_(chunk))).all()
        ]
    )
    findings: list[Finding] = []
    for entry in records:
        assert entry.id is not None
        findings.extend(_talk(entry, entry.id, today))
        findings.extend(_candidate(entry, entry.id))
        findings.extend(_probation(entry, entry.id, today))
    return findings


def _finding(
    entry: DevelopmentRecord,
    record_id: int,
    rule: str,
    level: ReminderLevel,
    period: str,
    message: str,
    due_on: date | None,
) -> Finding:
    return Finding(
        rule=rule,
        family=RuleFamily.DEVELOPMENT,
        level=level,
        org_id=entry.org_id,
        subject=development_subject(record_id),
        period=period,
        message=message,
        due_on=due_on,
    )


def _talk(entry: DevelopmentRecord, record_id: int, today: date) -> list[Finding]:
    if entry.stage not in (*_BEFORE_CANDIDATE, DevelopmentStage.CANDIDATE):
        return []
    deadline = talk_deadline(entry.applied_on)
    applied = date_text(entry.applied_on)
    if entry.talked_on is None:
        if today > deadline:
            return [
                _finding(
                    entry,
                    record_id,
                    RULE_TALK,
                    ReminderLevel.WARNING,
                    DevelopmentStage.APPLICANT.value,
                    f"入党申请人{entry.name}于{applied}提交入党申请书，至今未登记谈话，已超过一个月"
                    f"（应在{date_text(deadline)}前）。按《中国共产党发展党员工作细则》，党组织应当在收到入党申请书后"
                    "一个月内派人同入党申请人谈话；请尽快谈话并登记谈话日期。",
                    deadline,
                )
            ]
        if (deadline - today).days <= TALK_NOTICE_DAYS:
            return [
                _finding(
                    entry,
                    record_id,
                    RULE_TALK,
                    ReminderLevel.NOTICE,
                    DevelopmentStage.APPLICANT.value,
                    f"入党申请人{entry.name}于{applied}提交入党申请书，请在{date_text(deadline)}前派人同其谈话"
                    "（收到入党申请书后一个月内），并登记谈话日期。",
                    deadline,
                )
            ]
        return []
    if entry.talked_on > deadline and entry.stage in _BEFORE_CANDIDATE:
        return [
            _finding(
                entry,
                record_id,
                RULE_TALK_LATE,
                ReminderLevel.WARNING,
                DevelopmentStage.APPLICANT.value,
                f"入党申请人{entry.name}于{applied}提交入党申请书，{date_text(entry.talked_on)}才谈话，"
                f"超过了一个月的期限（{date_text(deadline)}）。请支部说明原因，并在确定发展对象前由上级党组织审核。",
                None,
            )
        ]
    return []


def _candidate(entry: DevelopmentRecord, record_id: int) -> list[Finding]:
    if entry.stage != DevelopmentStage.CANDIDATE or entry.activist_on is None or entry.candidate_on is None:
        return []
    earliest = activist_year_ends(entry.activist_on)
    if entry.candidate_on >= earliest:
        return []
    days = (entry.candidate_on - entry.activist_on).days
    return [
        _finding(
            entry,
            record_id,
            RULE_CANDIDATE_TOO_EARLY,
            ReminderLevel.WARNING,
            DevelopmentStage.CANDIDATE.value,
            f"{entry.name}于{date_text(entry.activist_on)}确定为入党积极分子，{date_text(entry.candidate_on)}即确定为发展对象，"
            f"培养考察仅{days}天，不足一年（最早可在{date_text(earliest)}确定）。按《中国共产党发展党员工作细则》，"
            "入党积极分子须经过一年以上培养教育和考察；请支部核实，接收预备党员前由上级党组织预审纠正。",
            None,
        )
    ]


def _probation(entry: DevelopmentRecord, record_id: int, today: date) -> list[Finding]:
    if entry.stage != DevelopmentStage.PROBATIONARY or entry.admitted_on is None:
        return []
    due = probation_ends(entry.admitted_on)
    left = (due - today).days
    if left > FULL_NOTICE_DAYS:
        return []
    if left >= 0:
        level = ReminderLevel.NOTICE
        message = (
            f"预备党员{entry.name}的预备期将于{date_text(due)}期满（{date_text(entry.admitted_on)}接收为预备党员）。"
            "请支部及时讨论其能否转正：本人提出书面转正申请，支部大会讨论表决，报上级党组织审批。"
        )
    else:
        level = ReminderLevel.WARNING
        message = (
            f"预备党员{entry.name}的预备期已于{date_text(due)}期满，已超过{-left}天仍未登记转正。"
            "请支部尽快召开支部大会讨论其转正（或延长预备期、取消预备党员资格），报上级党组织审批，并登记结果。"
        )
    return [
        _finding(entry, record_id, RULE_FULL_DUE, level, DevelopmentStage.PROBATIONARY.value, message, due)
    ]
