"""党费 rules at their boundaries: 2 vs 3 months in arrears (notice), 5 vs 6 (党章第九条 alert)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from server.db import unit_of_work
from server.orgs.service import add_member, add_organisation
from server.records.dues import DuesMonth, DuesSource
from server.records.orgs import Member
from server.supervision.dues_rules import RULE_ARREARS, find_dues
from server.supervision.findings import Finding, RuleFamily, member_subject
from server.vocabulary import MemberCategory, MemberStatus, OrgKind, ReminderLevel

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=SHANGHAI)  # the last month that has ended is 2026-11
SETUP = datetime(2025, 1, 1, tzinfo=SHANGHAI)


def months(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


class City:
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

    def member(
        self, name: str, *, paid_to: str | None, assessed_from: str = "2026-01", org: int | None = None
    ) -> int:
        """A member assessed 10 元 a month from ``assessed_from`` to 2026-12, paid up to ``paid_to``."""
        with unit_of_work(self.engine) as session:
            member = add_member(
                session,
                name=name,
                org_id=org or self.branch,
                category=MemberCategory.FULL,
                joined_org_at=None,
                now=SETUP,
            )
            assert member.id is not None
            for month in months(assessed_from, "2026-12"):
                paid = paid_to is not None and month <= paid_to
                session.add(
                    DuesMonth(
                        member_id=member.id,
                        month=month,
                        standard_fen=1000,
                        paid_fen=1000 if paid else 0,
                        paid_on=date(int(month[:4]), int(month[5:]), 5) if paid else None,
                        source=DuesSource.XLSX,
                        updated_at=SETUP,
                    )
                )
            return member.id


@pytest.fixture
def city(engine: Engine) -> City:
    return City(engine)


def findings(engine: Engine, now: datetime = NOW, org_ids: list[int] | None = None) -> dict[int, Finding]:
    with Session(engine) as session:
        found = find_dues(session, now=now, tz=SHANGHAI, org_ids=org_ids)
    by_member = {int(f.subject.split(":")[1]): f for f in found}
    assert len(by_member) == len(found)
    return by_member


def test_two_months_behind_is_fine_three_is_a_notice(engine: Engine, city: City) -> None:
    two = city.member("两个月", paid_to="2026-09")
    three = city.member("三个月", paid_to="2026-08")
    found = findings(engine)
    assert two not in found
    notice = found[three]
    assert (notice.rule, notice.family, notice.level) == (RULE_ARREARS, RuleFamily.DUES, ReminderLevel.NOTICE)
    assert (notice.subject, notice.period, notice.org_id) == (member_subject(three), "2026-09", city.branch)
    assert "已连续3个月未交纳党费" in notice.message
    assert "2026年9月" in notice.message
    assert notice.due_on == date(2027, 2, 28)  # the sixth month (2027-02) ends


def test_five_months_is_still_a_notice_six_is_the_article_nine_alert(engine: Engine, city: City) -> None:
    five = city.member("五个月", paid_to="2026-06")
    six = city.member("六个月", paid_to="2026-05")
    found = findings(engine)
    assert found[five].level == ReminderLevel.NOTICE
    alert = found[six]
    assert alert.level == ReminderLevel.ALERT
    assert alert.period == "2026-06"
    assert "连续6个月不交纳党费" in alert.message
    assert "按党章第九条，由支部核实" in alert.message
    assert "不会自动处理" in alert.message
    # The same streak keeps its identity as it grows from notice to alert.
    assert found[five].identity[:2] == (RULE_ARREARS, member_subject(five))


def test_the_month_turns_in_the_deployment_time_zone(engine: Engine, city: City) -> None:
    three = city.member("三个月", paid_to="2026-08")
    # 2026-11-30 23:59 in Xiamen: November has not ended, two months behind.
    assert three not in findings(engine, datetime(2026, 11, 30, 15, 59, tzinfo=UTC))
    # 2026-12-01 00:00 in Xiamen (still 30 November in UTC): November has ended.
    assert findings(engine, datetime(2026, 11, 30, 16, 0, tzinfo=UTC))[three].level == ReminderLevel.NOTICE


def test_never_paid_counts_from_the_first_assessed_month(engine: Engine, city: City) -> None:
    assessed = city.member("新党员", paid_to=None, assessed_from="2026-09")
    recent = city.member("更新党员", paid_to=None, assessed_from="2026-10")
    found = findings(engine)
    assert found[assessed].period == "2026-09"
    assert recent not in found


def test_exempt_months_are_settled_and_part_payments_are_not(engine: Engine, city: City) -> None:
    exempt = city.member("免交", paid_to="2026-05")
    part = city.member("少交", paid_to="2026-10")
    with unit_of_work(engine) as session:
        for row in session.exec(
            select(DuesMonth).where(DuesMonth.member_id == exempt, col(DuesMonth.month) >= "2026-06")
        ):
            row.standard_fen = 0  # 免交, approved
        for row in session.exec(
            select(DuesMonth).where(DuesMonth.member_id == part, col(DuesMonth.month) >= "2026-06")
        ):
            row.paid_fen = 500  # half the standard
            row.paid_on = date(2026, 7, 1)
    found = findings(engine)
    assert exempt not in found
    assert found[part].period == "2026-06"
    assert found[part].level == ReminderLevel.ALERT


def test_members_without_dues_records_or_no_longer_active_are_not_judged(engine: Engine, city: City) -> None:
    gone = city.member("已转出", paid_to="2026-01")
    with unit_of_work(engine) as session:
        add_member(
            session,
            name="无记录",
            org_id=city.branch,
            category=MemberCategory.FULL,
            joined_org_at=None,
            now=SETUP,
        )
        member = session.get(Member, gone)
        assert member is not None
        member.status = MemberStatus.TRANSFERRED_OUT
    assert findings(engine) == {}


def test_only_the_given_organisations(engine: Engine, city: City) -> None:
    mine = city.member("本支部", paid_to="2026-01")
    theirs = city.member("外支部", paid_to="2026-01", org=city.other)
    assert set(findings(engine)) == {mine, theirs}
    assert set(findings(engine, org_ids=[city.other])) == {theirs}
    assert findings(engine, org_ids=[]) == {}
