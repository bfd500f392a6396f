"""A reminder's life: one per identity across daily runs, resolved by itself when its condition
clears, reopened when it comes back, escalated after N working days unless acknowledged, sent
down with a note — and all of it scoped and kept in the history."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.errors import ReminderNotEscalated, ReminderNotFound, ReminderNotOpen
from server.keyring import Keyring
from server.orgs.service import add_member
from server.records.dues import DuesMonth, DuesSource
from server.records.supervision import Reminder, ReminderHistory
from server.supervision.findings import Finding, member_subject, org_subject
from server.supervision.service import EscalationPolicy, SweepResult, acknowledge, apply_findings, send_down
from server.transfers.calendar import make_calendar
from server.vocabulary import MemberCategory, ReminderAction, ReminderLevel, ReminderState, RuleFamily
from tests.server.factories import SHANGHAI, World
from tests.server.ledgers.helpers import at, token

# 2026-10-01..07 are holidays, Sunday 2026-09-27 and Saturday 2026-10-10 are make-up working days.
CALENDAR = make_calendar(
    holidays=[date(2026, 10, d) for d in range(1, 8)], makeup_workdays=[date(2026, 9, 27), date(2026, 10, 10)]
)
ESCALATION = EscalationPolicy(calendar=CALENDAR, after_working_days=5)
FAMILIES = {RuleFamily.ORG_SETUP, RuleFamily.ORG_LIFE}


def finding(
    world: World,
    *,
    rule: str = "org_setup.no_secretary",
    level: ReminderLevel = ReminderLevel.WARNING,
    subject: str | None = None,
    family: RuleFamily = RuleFamily.ORG_SETUP,
) -> Finding:
    return Finding(
        rule=rule,
        family=family,
        level=level,
        org_id=world.branch_id,
        subject=subject or org_subject(world.branch_id),
        period="",
        message="第一党支部没有在任的支部书记",
    )


def sweep(engine: Engine, findings: list[Finding], now: datetime) -> SweepResult:
    with unit_of_work(engine) as session:
        return apply_findings(
            session, findings, families=FAMILIES, now=now, escalation=ESCALATION, tz=SHANGHAI
        )


def stored(engine: Engine) -> list[Reminder]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(Reminder).order_by(Reminder.id)))


def actions(engine: Engine, reminder_id: int | None) -> list[str]:
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(ReminderHistory)
            .where(ReminderHistory.reminder_id == reminder_id)
            .order_by(ReminderHistory.id)
        )
        return [row.action.value for row in rows]


class TestIdentity:
    def test_a_daily_run_never_duplicates_and_a_level_change_is_recorded(
        self, engine: Engine, world: World
    ) -> None:
        six_month = finding(
            world,
            rule="org_life.six_month",
            subject=member_subject(world.members["王五"]),
            level=ReminderLevel.NOTICE,
            family=RuleFamily.ORG_LIFE,
        )
        assert sweep(engine, [finding(world), six_month], at("2026-09-01")).opened == 2
        again = sweep(engine, [finding(world), six_month], at("2026-09-02"))
        assert (again.opened, again.updated, again.resolved) == (0, 0, 0)
        worse = Finding(**{**vars(six_month), "level": ReminderLevel.WARNING})
        assert sweep(engine, [finding(world), worse], at("2026-09-03")).updated == 1
        rows = stored(engine)
        assert len(rows) == 2
        assert rows[1].level == ReminderLevel.WARNING
        assert actions(engine, rows[1].id) == ["opened", "level_changed"]

    def test_resolved_by_itself_and_reopened_when_it_comes_back(self, engine: Engine, world: World) -> None:
        sweep(engine, [finding(world)], at("2026-09-01"))
        assert sweep(engine, [], at("2026-09-02")).resolved == 1
        (row,) = stored(engine)
        assert row.state == ReminderState.RESOLVED
        assert sweep(engine, [finding(world)], at("2026-09-03")).reopened == 1
        (row,) = stored(engine)
        assert (row.state, row.resolved_at) == (ReminderState.OPEN, None)
        assert actions(engine, row.id) == ["opened", "resolved", "reopened"]

    def test_a_family_left_out_of_a_run_keeps_its_reminders(self, engine: Engine, world: World) -> None:
        sweep(engine, [finding(world)], at("2026-09-01"))
        with unit_of_work(engine) as session:
            apply_findings(
                session,
                [],
                families={RuleFamily.DUES},
                now=at("2026-09-02"),
                escalation=ESCALATION,
                tz=SHANGHAI,
            )
        assert [r.state for r in stored(engine)] == [ReminderState.OPEN]


class TestEscalation:
    def test_after_five_working_days_counting_holidays_and_makeup_days(
        self, engine: Engine, world: World
    ) -> None:
        # Opened on Wednesday 30 Sep; the working days after it are Thu 8 and Fri 9 Oct (after the
        # 国庆 holidays), Sat 10 Oct (调休), Mon 12 and Tue 13 Oct.
        sweep(engine, [finding(world)], at("2026-09-30"))
        assert sweep(engine, [finding(world)], at("2026-10-12", "23:00")).escalated == 0
        assert sweep(engine, [finding(world)], at("2026-10-13", "07:00")).escalated == 1
        (row,) = stored(engine)
        assert row.escalated_to == world.committee_id
        assert actions(engine, row.id)[-1] == "escalated"
        assert sweep(engine, [finding(world)], at("2026-10-16")).escalated == 0  # once

    def test_an_acknowledged_reminder_is_not_escalated(self, engine: Engine, world: World) -> None:
        sweep(engine, [finding(world)], at("2026-11-02"))
        (row,) = stored(engine)
        with unit_of_work(engine) as session:
            acknowledge(session, row.id or 0, caller=CLI_CALLER, now=at("2026-11-03"), note="正在组织选举")
        assert sweep(engine, [finding(world)], at("2026-11-20")).escalated == 0
        with unit_of_work(engine) as session, pytest.raises(ReminderNotOpen):
            acknowledge(session, row.id or 0, caller=CLI_CALLER, now=at("2026-11-21"))

    def test_sent_down_with_a_note_restarts_the_clock(self, engine: Engine, world: World) -> None:
        sweep(engine, [finding(world)], at("2026-11-02"))
        sweep(engine, [finding(world)], at("2026-11-10"))
        (row,) = stored(engine)
        assert row.escalated_to == world.committee_id
        with unit_of_work(engine) as session:
            send_down(
                session,
                row.id or 0,
                caller=CLI_CALLER,
                now=at("2026-11-10", "10:00"),
                note="请一周内完成补选",
            )
        with unit_of_work(engine) as session, pytest.raises(ReminderNotEscalated):
            send_down(session, row.id or 0, caller=CLI_CALLER, now=at("2026-11-10", "11:00"), note="再次")
        assert sweep(engine, [finding(world)], at("2026-11-16")).escalated == 0  # 4 working days
        assert sweep(engine, [finding(world)], at("2026-11-17")).escalated == 1
        with unit_of_work(engine) as session:
            history = session.exec(
                select(ReminderHistory).where(ReminderHistory.action == ReminderAction.SENT_DOWN)
            ).one()
        assert history.note == "请一周内完成补选"


class TestThroughTheApi:
    def test_the_branch_sees_and_acknowledges_the_superior_sends_down(
        self, engine: Engine, world: World, keyring: Keyring, client: TestClient
    ) -> None:
        sweep(engine, [finding(world)], at("2026-11-02"))
        sweep(engine, [finding(world)], at("2026-11-10"))
        branch = token(engine, keyring, org_id=world.branch_id)
        other = token(engine, keyring, org_id=world.other_branch_id)
        committee = token(engine, keyring, org_id=world.committee_id)

        listed = client.get(f"/api/v1/orgs/{world.branch_id}/supervision/reminders", headers=branch)
        assert listed.status_code == 200, listed.text
        (item,) = [r for r in listed.json() if r["rule"] == "org_setup.no_secretary"]
        assert (item["state_label"], item["family_label"]) == ("待处理", "组织设置")

        # Another branch can neither list, read nor touch it: it does not exist for them.
        assert (
            client.get(f"/api/v1/orgs/{world.branch_id}/supervision/reminders", headers=other).status_code
            == 404
        )
        for path in (
            f"/api/v1/supervision/reminders/{item['id']}/acknowledge",
            f"/api/v1/supervision/reminders/{item['id']}/send-down",
        ):
            refused = client.post(path, json={"note": "x"}, headers=other)
            assert (refused.status_code, refused.json()["error"]) == (404, "reminder_not_found")

        queue = client.get(f"/api/v1/orgs/{world.committee_id}/supervision/queue", headers=committee)
        assert [r["id"] for r in queue.json()] == [item["id"]]
        # The branch cannot send its own reminder down: the 督办 queue is the superior's.
        own = client.post(
            f"/api/v1/supervision/reminders/{item['id']}/send-down", json={"note": "x"}, headers=branch
        )
        assert own.status_code == 404
        empty = client.post(
            f"/api/v1/supervision/reminders/{item['id']}/send-down", json={"note": ""}, headers=committee
        )
        assert empty.status_code == 422
        sent = client.post(
            f"/api/v1/supervision/reminders/{item['id']}/send-down",
            json={"note": "请尽快补选书记"},
            headers=committee,
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["escalated_to"] is None
        acked = client.post(
            f"/api/v1/supervision/reminders/{item['id']}/acknowledge",
            json={"note": "下周召开党员大会"},
            headers=branch,
        )
        assert acked.json()["state"] == "acknowledged"
        history = client.get(f"/api/v1/supervision/reminders/{item['id']}/history", headers=branch).json()
        assert [h["action_label"] for h in history] == ["发现问题", "上报督办", "督办转回", "已知悉"]


def test_the_real_sweep_finds_the_world_and_is_stable(engine: Engine, world: World, settings: object) -> None:
    """Both evaluated families over the test world, twice: the second run opens nothing."""
    from server.config import ServerSettings
    from server.supervision.sweep import run_sweep

    assert isinstance(settings, ServerSettings)
    with unit_of_work(engine) as session:
        add_member(
            session,
            name="新党员",
            org_id=world.other_branch_id,
            category=MemberCategory.FULL,
            joined_org_at=None,
            now=at("2026-01-01"),
        )
        for month in range(5, 12):  # 王五 paid nothing from May to November
            session.add(
                DuesMonth(
                    member_id=world.members["王五"],
                    month=f"2026-{month:02d}",
                    standard_fen=1000,
                    paid_fen=0,
                    source=DuesSource.XLSX,
                    updated_at=at("2026-11-30"),
                )
            )
    with unit_of_work(engine) as session:
        first = run_sweep(session, now=at("2026-12-01"), settings=settings)
    rules = {(r.rule, r.org_id) for r in stored(engine)}
    assert ("dues.arrears", world.branch_id) in rules  # every family runs, dues included
    assert ("org_setup.too_few_full", world.branch_id) in rules
    assert ("org_setup.no_secretary", world.other_branch_id) in rules
    assert any(rule == "org_life.six_month" for rule, _ in rules)
    assert any(rule == "org_life.cadence_missed" for rule, _ in rules)
    with unit_of_work(engine) as session:
        second = run_sweep(session, now=at("2026-12-01", "12:00"), settings=settings)
    assert first.opened == len(stored(engine)) > 0
    assert second.opened == 0
    with unit_of_work(engine) as session, pytest.raises(ReminderNotFound):
        acknowledge(session, 10**9, caller=CLI_CALLER, now=at("2026-12-02"))
