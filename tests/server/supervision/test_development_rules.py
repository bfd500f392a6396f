"""发展党员 rules at their boundaries: the talk on day 30/31 after the application, 364 vs 365 days
as 积极分子, the 转正 reminder 31 vs 30 days ahead and overdue the day after."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from server.db import unit_of_work
from server.orgs.service import add_organisation
from server.records.development import DevelopmentRecord, DevelopmentStage
from server.supervision.development_rules import (
    RULE_CANDIDATE_TOO_EARLY,
    RULE_FULL_DUE,
    RULE_TALK,
    RULE_TALK_LATE,
    find_development,
)
from server.supervision.findings import Finding, RuleFamily
from server.vocabulary import OrgKind, ReminderLevel

SHANGHAI = ZoneInfo("Asia/Shanghai")
SETUP = datetime(2020, 1, 1, tzinfo=SHANGHAI)


def at(day: date) -> datetime:
    return datetime.combine(day, time(9), tzinfo=SHANGHAI)


class Branches:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with unit_of_work(engine) as session:
            committee = add_organisation(
                session, name="某党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=SETUP
            )
            assert committee.id is not None
            first = add_organisation(
                session, name="第一党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=SETUP
            )
            second = add_organisation(
                session, name="第二党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=SETUP
            )
            assert first.id is not None
            assert second.id is not None
            self.branch, self.other = first.id, second.id

    def record(self, stage: DevelopmentStage, *, org: int | None = None, **dates: date) -> int:
        with unit_of_work(self.engine) as session:
            entry = DevelopmentRecord(
                name="陈晓",
                org_id=org or self.branch,
                stage=stage,
                applied_on=dates.pop("applied_on", date(2024, 1, 2)),
                created_at=SETUP,
                updated_at=SETUP,
                **dates,
            )
            session.add(entry)
            session.flush()
            assert entry.id is not None
            return entry.id


@pytest.fixture
def branches(engine: Engine) -> Branches:
    return Branches(engine)


def found(engine: Engine, today: date, org_ids: list[int] | None = None) -> dict[tuple[int, str], Finding]:
    with Session(engine) as session:
        findings = find_development(session, now=at(today), tz=SHANGHAI, org_ids=org_ids)
    assert all(f.family == RuleFamily.DEVELOPMENT for f in findings)
    return {(int(f.subject.removeprefix("development:")), f.rule): f for f in findings}


# An application on 10 April: the month runs to 10 May, the 30th day after it.
APPLIED = date(2026, 4, 10)


def test_a_talk_on_day_30_is_in_time_and_on_day_31_late(engine: Engine, branches: Branches) -> None:
    on_time = branches.record(
        DevelopmentStage.APPLICANT, applied_on=APPLIED, talked_on=APPLIED + timedelta(days=30)
    )
    late = branches.record(
        DevelopmentStage.APPLICANT, applied_on=APPLIED, talked_on=APPLIED + timedelta(days=31)
    )
    findings = found(engine, date(2026, 6, 1))
    assert (on_time, RULE_TALK_LATE) not in findings
    assert (on_time, RULE_TALK) not in findings
    finding = findings[(late, RULE_TALK_LATE)]
    assert finding.level == ReminderLevel.WARNING
    assert finding.period == "applicant"
    assert "一个月" in finding.message
    assert "2026年5月11日" in finding.message


def test_no_talk_yet_is_a_notice_in_the_last_week_and_a_warning_the_day_after(
    engine: Engine, branches: Branches
) -> None:
    waiting = branches.record(DevelopmentStage.APPLICANT, applied_on=APPLIED)
    deadline = date(2026, 5, 10)
    assert (waiting, RULE_TALK) not in found(engine, deadline - timedelta(days=8))
    notice = found(engine, deadline - timedelta(days=7))[(waiting, RULE_TALK)]
    assert notice.level == ReminderLevel.NOTICE
    assert notice.due_on == deadline
    assert found(engine, deadline)[(waiting, RULE_TALK)].level == ReminderLevel.NOTICE
    overdue = found(engine, deadline + timedelta(days=1))[(waiting, RULE_TALK)]
    assert overdue.level == ReminderLevel.WARNING
    assert overdue.identity == notice.identity  # one reminder, its level raised
    assert "收到入党申请书后一个月内派人同入党申请人谈话" in overdue.message


def test_a_talk_due_at_the_end_of_a_short_month(engine: Engine, branches: Branches) -> None:
    waiting = branches.record(DevelopmentStage.APPLICANT, applied_on=date(2026, 1, 31))
    assert found(engine, date(2026, 2, 28))[(waiting, RULE_TALK)].level == ReminderLevel.NOTICE
    assert found(engine, date(2026, 3, 1))[(waiting, RULE_TALK)].level == ReminderLevel.WARNING


# 积极分子 on 1 March 2025: a year later is 1 March 2026, 365 days on (no 29 February between).
ACTIVIST = date(2025, 3, 1)


def test_364_days_as_activist_is_too_early_365_is_not(engine: Engine, branches: Branches) -> None:
    common = {"talked_on": date(2024, 1, 10), "activist_on": ACTIVIST}
    early = branches.record(DevelopmentStage.CANDIDATE, candidate_on=ACTIVIST + timedelta(days=364), **common)
    in_time = branches.record(
        DevelopmentStage.CANDIDATE, candidate_on=ACTIVIST + timedelta(days=365), **common
    )
    findings = found(engine, date(2026, 6, 1))
    finding = findings[(early, RULE_CANDIDATE_TOO_EARLY)]
    assert finding.level == ReminderLevel.WARNING
    assert finding.period == "candidate"
    assert "364天" in finding.message
    assert "一年以上" in finding.message
    assert (in_time, RULE_CANDIDATE_TOO_EARLY) not in findings
    assert not [key for key in findings if key[0] == in_time]


def test_too_early_is_reported_until_admission(engine: Engine, branches: Branches) -> None:
    admitted = branches.record(
        DevelopmentStage.PROBATIONARY,
        talked_on=date(2024, 1, 10),
        activist_on=ACTIVIST,
        candidate_on=ACTIVIST + timedelta(days=200),
        admitted_on=date(2026, 1, 5),
    )
    assert (admitted, RULE_CANDIDATE_TOO_EARLY) not in found(engine, date(2026, 6, 1))


# Admitted 1 July 2025: probation ends 1 July 2026.
ADMITTED = date(2025, 7, 1)
DUE = date(2026, 7, 1)


def test_full_membership_reminder_30_days_ahead_and_overdue_the_day_after(
    engine: Engine, branches: Branches
) -> None:
    probationer = branches.record(
        DevelopmentStage.PROBATIONARY,
        talked_on=date(2024, 1, 10),
        activist_on=date(2024, 2, 1),
        candidate_on=date(2025, 2, 1),
        admitted_on=ADMITTED,
    )
    assert (probationer, RULE_FULL_DUE) not in found(engine, DUE - timedelta(days=31))
    notice = found(engine, DUE - timedelta(days=30))[(probationer, RULE_FULL_DUE)]
    assert notice.level == ReminderLevel.NOTICE
    assert notice.due_on == DUE
    assert notice.period == "probationary"
    assert "2026年7月1日期满" in notice.message
    assert found(engine, DUE)[(probationer, RULE_FULL_DUE)].level == ReminderLevel.NOTICE
    overdue = found(engine, DUE + timedelta(days=1))[(probationer, RULE_FULL_DUE)]
    assert overdue.level == ReminderLevel.WARNING
    assert overdue.identity == notice.identity
    assert "已超过1天" in overdue.message


def test_full_members_and_other_organisations(engine: Engine, branches: Branches) -> None:
    done = branches.record(
        DevelopmentStage.FULL, admitted_on=ADMITTED, full_on=DUE, activist_on=ACTIVIST, candidate_on=ACTIVIST
    )
    theirs = branches.record(DevelopmentStage.APPLICANT, org=branches.other, applied_on=date(2026, 1, 5))
    everywhere = found(engine, date(2026, 12, 1))
    assert not [key for key in everywhere if key[0] == done]
    assert (theirs, RULE_TALK) in everywhere
    assert found(engine, date(2026, 12, 1), org_ids=[branches.branch]) == {}
    assert everywhere[(theirs, RULE_TALK)].org_id == branches.other
