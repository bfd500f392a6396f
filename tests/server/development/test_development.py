"""Recording development stages: order, dates, the member made at admission, 转正, scope."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from server.caller import CLI_CALLER, Actor, Caller
from server.db import unit_of_work
from server.development.service import add_applicant, record_stage, record_talk
from server.errors import (
    DevelopmentDateBeforePrevious,
    DevelopmentDateInFuture,
    DevelopmentRecordNotFound,
    DevelopmentStageOutOfOrder,
    OrganisationNotFound,
)
from server.orgs.service import add_organisation, subtree_scope
from server.records.audit import AuditEntry
from server.records.development import DevelopmentRecord, DevelopmentStage
from server.records.orgs import Member, MembershipPeriod
from server.vocabulary import MemberCategory, OrgKind, UserRole

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture
def branches(engine: Engine) -> tuple[int, int]:
    with unit_of_work(engine) as session:
        committee = add_organisation(
            session, name="某党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=NOW
        )
        assert committee.id is not None
        first = add_organisation(
            session, name="第一党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=NOW
        )
        second = add_organisation(
            session, name="第二党支部", kind=OrgKind.BRANCH, parent_id=committee.id, now=NOW
        )
        assert first.id is not None
        assert second.id is not None
        return first.id, second.id


def applicant(engine: Engine, org_id: int, applied_on: date = date(2024, 3, 1)) -> int:
    with unit_of_work(engine) as session:
        entry = add_applicant(
            session,
            name="陈晓",
            org_id=org_id,
            applied_on=applied_on,
            caller=CLI_CALLER,
            now=NOW,
            tz=SHANGHAI,
        )
        assert entry.id is not None
        return entry.id


def stage(
    engine: Engine, record_id: int, to: DevelopmentStage, on: date, caller: Caller = CLI_CALLER
) -> DevelopmentRecord:
    with unit_of_work(engine) as session:
        entry = record_stage(
            session, record_id=record_id, stage=to, on=on, caller=caller, now=NOW, tz=SHANGHAI
        )
        session.expunge(entry)
        return entry


def test_the_whole_way_to_full_membership(engine: Engine, branches: tuple[int, int]) -> None:
    record_id = applicant(engine, branches[0])
    with unit_of_work(engine) as session:
        record_talk(
            session, record_id=record_id, on=date(2024, 3, 20), caller=CLI_CALLER, now=NOW, tz=SHANGHAI
        )
    stage(engine, record_id, DevelopmentStage.ACTIVIST, date(2024, 4, 1))
    stage(engine, record_id, DevelopmentStage.CANDIDATE, date(2025, 4, 1))
    admitted = stage(engine, record_id, DevelopmentStage.PROBATIONARY, date(2025, 7, 1))
    assert admitted.member_id is not None
    with Session(engine) as session:
        member = session.get(Member, admitted.member_id)
        assert member is not None
        assert (member.name, member.org_id, member.category) == (
            "陈晓",
            branches[0],
            MemberCategory.PROBATIONARY,
        )
    full = stage(engine, record_id, DevelopmentStage.FULL, date(2026, 7, 1))
    assert full.stage == DevelopmentStage.FULL
    assert full.full_on == date(2026, 7, 1)
    with Session(engine) as session:
        member = session.get(Member, admitted.member_id)
        assert member is not None
        assert member.category == MemberCategory.FULL
        periods = session.exec(
            select(MembershipPeriod).where(MembershipPeriod.member_id == admitted.member_id)
        ).all()
        assert sorted(p.category.value for p in periods) == ["full", "probationary"]
        actions = [
            a.action
            for a in session.exec(
                select(AuditEntry).where(AuditEntry.object_type == "development_record")
            ).all()
        ]
        assert actions == ["development.add", "development.talk"] + ["development.stage"] * 4


def test_stages_cannot_be_skipped_or_repeated(engine: Engine, branches: tuple[int, int]) -> None:
    record_id = applicant(engine, branches[0])
    with pytest.raises(DevelopmentStageOutOfOrder, match="入党积极分子"):
        stage(engine, record_id, DevelopmentStage.CANDIDATE, date(2024, 5, 1))
    stage(engine, record_id, DevelopmentStage.ACTIVIST, date(2024, 5, 1))
    with pytest.raises(DevelopmentStageOutOfOrder):
        stage(engine, record_id, DevelopmentStage.ACTIVIST, date(2024, 6, 1))
    with pytest.raises(DevelopmentStageOutOfOrder):
        stage(engine, record_id, DevelopmentStage.APPLICANT, date(2024, 6, 1))


def test_dates_not_in_the_future_nor_before_the_previous_stage(
    engine: Engine, branches: tuple[int, int]
) -> None:
    record_id = applicant(engine, branches[0], applied_on=date(2026, 3, 1))
    with pytest.raises(DevelopmentDateBeforePrevious):
        stage(engine, record_id, DevelopmentStage.ACTIVIST, date(2026, 2, 28))
    with pytest.raises(DevelopmentDateInFuture):
        stage(engine, record_id, DevelopmentStage.ACTIVIST, date(2026, 12, 7))
    same_day = stage(engine, record_id, DevelopmentStage.ACTIVIST, date(2026, 3, 1))
    assert same_day.activist_on == date(2026, 3, 1)
    today = stage(engine, record_id, DevelopmentStage.CANDIDATE, date(2026, 12, 6))
    assert today.candidate_on == date(2026, 12, 6)
    with unit_of_work(engine) as session:
        with pytest.raises(DevelopmentDateBeforePrevious):
            record_talk(
                session, record_id=record_id, on=date(2026, 2, 1), caller=CLI_CALLER, now=NOW, tz=SHANGHAI
            )
        with pytest.raises(DevelopmentDateInFuture):
            add_applicant(
                session,
                name="明天",
                org_id=branches[0],
                applied_on=date(2026, 12, 7),
                caller=CLI_CALLER,
                now=NOW,
                tz=SHANGHAI,
            )


def test_another_branch_s_records_are_out_of_reach(engine: Engine, branches: tuple[int, int]) -> None:
    theirs = applicant(engine, branches[1])
    with unit_of_work(engine) as session:
        secretary = Caller(
            actor=Actor("user:3", "第一党支部书记"),
            role=UserRole.SECRETARY,
            org_id=branches[0],
            scope=subtree_scope(session, branches[0]),
            may_approve=False,
        )
        with pytest.raises(OrganisationNotFound):
            add_applicant(
                session,
                name="陈晓",
                org_id=branches[1],
                applied_on=date(2026, 1, 1),
                caller=secretary,
                now=NOW,
                tz=SHANGHAI,
            )
    with pytest.raises(DevelopmentRecordNotFound):
        stage(engine, theirs, DevelopmentStage.ACTIVIST, date(2024, 5, 1), caller=secretary)
