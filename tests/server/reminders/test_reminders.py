"""Reminders (#4 item 6): cadence gaps (about to end, or ended without the meeting) and the
six-month rule at 3/5/6 months — with time passed in, and never changing anyone's membership."""

from __future__ import annotations

from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.ledgers.cadence import CadencePolicy
from server.orgs.membership import add_exemption
from server.records.orgs import Member
from server.reminders.schemas import ReminderReport
from server.reminders.service import build_reminders
from server.vocabulary import ExemptionReason, MemberStatus
from tests.server.conftest import FakeClock
from tests.server.factories import SHANGHAI, ZHANG_CARD, ZHAO_CARD, World
from tests.server.ledgers.helpers import CALLER, at, meeting, tap, token


def reminders(engine: Engine, world: World, now: datetime, org_id: int | None = None) -> ReminderReport:
    with unit_of_work(engine) as session:
        return build_reminders(
            session,
            org_id=org_id or world.committee_id,
            caller=CLI_CALLER,
            now=now,
            tz=SHANGHAI,
            policy=CadencePolicy(),
        )


def inactivity(report: ReminderReport) -> dict[str, tuple[str, int]]:
    return {r.name: (r.level.value, r.months) for r in report.inactivity}


class TestSixMonthRule:
    def test_levels_at_three_five_and_six_months(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Members were recorded on 1 March 2025; 张三明 attended on 10 April (as a guest, which
        counts for him too); 赵六 on 1 March."""
        meeting(engine, world, "二支部四月活动", at("2025-04-10"), org_id=world.other_branch_id)
        tap(engine, keyring, world, ZHAO_CARD, at("2025-03-01", "08:55"))
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:55"))

        assert inactivity(reminders(engine, world, at("2025-05-31"))) == {}
        assert inactivity(reminders(engine, world, at("2025-06-01", "12:00"))) == {
            "李四": ("notice", 3),
            "王五": ("notice", 3),
            "赵六": ("notice", 3),
        }
        report = reminders(engine, world, at("2025-09-01", "12:00"))
        assert inactivity(report) == {
            "李四": ("alert", 6),
            "王五": ("alert", 6),
            "赵六": ("alert", 6),
            "张三明": ("notice", 4),
        }
        wang = next(r for r in report.inactivity if r.name == "王五")
        assert wang.last_org_life_at is None
        assert "党章第九条" in wang.message
        assert "支部大会" in wang.message
        assert inactivity(reminders(engine, world, at("2025-09-10", "12:00")))["张三明"] == ("warning", 5)

    def test_exempt_members_are_shown_excused_and_nothing_changes(self, engine: Engine, world: World) -> None:
        with unit_of_work(engine) as session:
            add_exemption(
                session,
                member_id=world.members["王五"],
                reason=ExemptionReason.ELDERLY_IMMOBILE,
                starts_at=at("2025-04-01"),
                ends_at=None,
                note="",
                caller=CALLER,
                now=at("2025-04-01"),
            )
        report = reminders(engine, world, at("2025-10-01"))
        wang = next(r for r in report.inactivity if r.name == "王五")
        assert (wang.level.value, wang.excused) == ("alert", "年老体弱、行动不便")
        with unit_of_work(engine) as session:
            assert {m.status for m in session.exec(select(Member)).all()} == {MemberStatus.ACTIVE}

    def test_scope_is_the_subtree(self, engine: Engine, world: World) -> None:
        report = reminders(engine, world, at("2025-10-01"), org_id=world.other_branch_id)
        assert set(inactivity(report)) == {"赵六"}


class TestCadenceGaps:
    def test_about_to_end_and_missed(self, engine: Engine, keyring: Keyring, world: World) -> None:
        """On 26 June: June's 主题党日 is not held (notice, 4 days left), May's was missed (warning);
        April's was held. The second branch held nothing at all."""
        meeting(engine, world, "四月主题党日", at("2025-04-10"))
        tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:55"))
        report = reminders(engine, world, at("2025-06-26", "12:00"))
        first = {
            (r.code, r.kind.value, r.period_key)
            for r in report.cadence
            if r.organisation.id == world.branch_id
        }
        assert ("cadence_due_soon", "theme_day", "2025-06") in first
        assert ("cadence_missed", "theme_day", "2025-05") in first
        assert ("cadence_missed", "theme_day", "2025-03") in first
        assert not any(key[2] == "2025-04" and key[1] == "theme_day" for key in first)
        due = next(r for r in report.cadence if r.code == "cadence_due_soon" and r.kind.value == "theme_day")
        assert (due.level.value, due.organisation.name) == ("notice", "第一党支部")
        assert due.message == "第一党支部2025年6月尚未召开主题党日，距期末还有4天"
        group = {(r.code, r.period_key) for r in report.cadence if r.organisation.id == world.group_id}
        assert ("cadence_missed", "2025-05") in group
        second = {r.period_key for r in report.cadence if r.organisation.id == world.other_branch_id}
        assert {"2025-03", "2025-04", "2025-05", "2025-06", "2025-Q2"} <= second  # Q1: before it was recorded
        assert "2025-Q1" not in second
        assert report.counts.warning >= 1
        assert report.counts.notice >= 1


def test_api_defaults_to_the_tokens_organisation_and_is_scoped(
    engine: Engine, keyring: Keyring, world: World, client: TestClient, clock: FakeClock
) -> None:
    clock.now = at("2025-10-01")
    mine = token(engine, keyring, org_id=world.other_branch_id)
    body = client.get("/api/v1/reminders", headers=mine).json()
    assert body["organisation"]["id"] == world.other_branch_id
    assert [r["name"] for r in body["inactivity"]] == ["赵六"]
    refused = client.get("/api/v1/reminders", params={"org": world.branch_id}, headers=mine)
    assert refused.json()["error"] == "organisation_not_found"
    admin = token(engine, keyring)
    assert client.get("/api/v1/reminders", headers=admin).json()["error"] == "org_required"
    assert (
        client.get("/api/v1/reminders", params={"org": world.committee_id}, headers=admin).status_code == 200
    )
