"""The ledger rules (#10 item 5), checked against a scenario whose numbers are worked out by hand
below, not by the code under test.

东街党支部 was founded on 1 July 2024 and entered into the system on 10 March 2025. Its 花名册, in
order: 王芳, 陈静, 赵强 (the three committee members), 李雷, 孙丽 (exempt from 1 June), 周平
(预备). 钱进 belonged to 西街党支部 from 2 January 2025 and was moved to 东街 on 5 June; he never
came to anything. 吴刚 (西街) came to 东街's theme day.

June 2025, at 东街:

* 10 June, 主题党日. Invited: 王芳 陈静 赵强 李雷 孙丽 周平 钱进. 孙丽 is exempt → 应到 6.
  Came: 王芳 陈静 李雷 (实到 3), 孙丽 (免于参加者到会), 吴刚 (列席, another branch's).
  周平 had approved leave (请假 1). 赵强 and 钱进 did not come (缺席 2). 6 = 3 + 1 + 2.
  Rate 实到 ÷ 应到 = 3/6.
* 12 June, 支委会. Invited: the committee, 王芳 陈静 赵强 → 应到 3. Came: 王芳 陈静 (实到 2) and
  李雷, who holds no seat (列席). 赵强 absent (缺席 1). Rate 2/3.
* Ledger totals: 应到 9, 实到 5, 请假 1, 缺席 3; rate 5/9.

On 5 September 2025 钱进 has had no organisational life since 2 January: 8 whole months, the
alert (严重), although he has been in 东街 only 3 months. 赵强 (in the records since 10 March,
never came) is at 5 months: a warning.

For 2024-Q4, before 东街 was entered, its cadence still requires every meeting of a branch without
a committee (founded 1 July 2024, before the middle of each of those periods), all missed;
西街 (entered 1 January 2025, no founding date) owes nothing for 2024-Q4.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from server.attendance.service import record_manual_attendance
from server.caller import CLI_CALLER
from server.cli import admin_app
from server.db import UtcDateTime, unit_of_work
from server.events.service import add_event
from server.keyring import Keyring
from server.leave.service import decide_leave, request_leave
from server.migrate import alembic_config, migrate
from server.orgs.membership import add_exemption, appoint_committee_member, move_member
from server.orgs.service import add_member, add_organisation
from server.records.orgs import Organisation
from server.venues.service import add_venue
from server.vocabulary import CommitteeRole, EventKind, ExemptionReason, MemberCategory, OrgKind
from tests.server.conftest import FakeClock
from tests.server.factories import SHANGHAI
from tests.server.ledgers.helpers import at, token

ROSTER = ["王芳", "陈静", "赵强", "李雷", "孙丽", "周平"]  # 东街's 花名册, in order
COMMITTEE = ["王芳", "陈静", "赵强"]


class Scenario:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids: dict[str, int] = {}
        with unit_of_work(engine) as session:
            party = add_organisation(
                session, name="某街道党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=at("2025-01-01")
            )
            assert party.id is not None
            west = add_organisation(
                session, name="西街党支部", kind=OrgKind.BRANCH, parent_id=party.id, now=at("2025-01-01")
            )
            east = add_organisation(
                session,
                name="东街党支部",
                kind=OrgKind.BRANCH,
                parent_id=party.id,
                now=at("2025-03-10"),
                founded_at=at("2024-07-01", "00:00"),
            )
            assert west.id is not None
            assert east.id is not None
            self.west, self.east = west.id, east.id
            venue = add_venue(session, name="党员活动室", org_id=party.id, now=at("2025-01-01"))
            assert venue.id is not None
            self.venue = venue.id
            for name in ("钱进", "吴刚"):
                self.ids[name] = self._member(session, name, west.id, joined=at("2025-01-02", "00:00"))
            for name in ROSTER:
                category = MemberCategory.PROBATIONARY if name == "周平" else MemberCategory.FULL
                self.ids[name] = self._member(
                    session, name, east.id, joined=at("2025-03-10"), category=category
                )
            for name, role in zip(
                COMMITTEE,
                (CommitteeRole.SECRETARY, CommitteeRole.ORGANISATION, CommitteeRole.PROPAGANDA),
                strict=True,
            ):
                appoint_committee_member(
                    session,
                    org_id=east.id,
                    member_id=self.ids[name],
                    role=role,
                    at=at("2025-03-10"),
                    caller=CLI_CALLER,
                )
            add_exemption(
                session,
                member_id=self.ids["孙丽"],
                reason=ExemptionReason.ILLNESS,
                starts_at=at("2025-06-01", "00:00"),
                ends_at=at("2025-12-31", "00:00"),
                note="病休",
                caller=CLI_CALLER,
                now=at("2025-06-01"),
            )
            move_member(
                session,
                member_id=self.ids["钱进"],
                to_org_id=east.id,
                at=at("2025-06-05"),
                caller=CLI_CALLER,
                reason="调动",
            )
        self.theme_day = self._event("六月主题党日", at("2025-06-10"), EventKind.THEME_DAY)
        self.committee = self._event("六月支委会", at("2025-06-12"), EventKind.COMMITTEE)
        with unit_of_work(engine) as session:
            leave = request_leave(
                session,
                event_id=self.theme_day,
                member_id=self.ids["周平"],
                reason="出差",
                caller=CLI_CALLER,
                now=at("2025-06-08"),
            )
            assert leave.id is not None
            decide_leave(
                session, leave_id=leave.id, approve=True, note="", caller=CLI_CALLER, now=at("2025-06-09")
            )
        for minute, name in enumerate(("王芳", "陈静", "李雷", "孙丽", "吴刚")):
            self._came(self.theme_day, name, at("2025-06-10", f"08:{50 + minute}"))
        for minute, name in enumerate(("王芳", "陈静", "李雷")):
            self._came(self.committee, name, at("2025-06-12", f"08:{50 + minute}"))

    @staticmethod
    def _member(
        session: Any,
        name: str,
        org_id: int,
        *,
        joined: datetime,
        category: MemberCategory = MemberCategory.FULL,
    ) -> int:
        member = add_member(
            session, name=name, org_id=org_id, category=category, joined_org_at=joined, now=joined
        )
        assert member.id is not None
        return member.id

    def _event(self, title: str, start: datetime, kind: EventKind) -> int:
        with unit_of_work(self.engine) as session:
            event = add_event(
                session,
                title=title,
                org_id=self.east,
                venue_id=self.venue,
                kind=kind,
                also_counts_as=[],
                joint_org_ids=[],
                start_at=start,
                end_at=start + timedelta(hours=2),
                chair_member_id=self.ids["王芳"],
                recorder_member_id=self.ids["陈静"],
                topic="学习党章",
                now=start - timedelta(days=7),
                caller=CLI_CALLER,
            )
            assert event.id is not None
            return event.id

    def _came(self, event_id: int, name: str, when: datetime) -> None:
        with unit_of_work(self.engine) as session:
            record_manual_attendance(
                session,
                event_id=event_id,
                member_id=self.ids[name],
                reason="忘带卡",
                at=when,
                caller=CLI_CALLER,
                now=when,
            )


@pytest.fixture
def scenario(engine: Engine) -> Scenario:
    return Scenario(engine)


def _csv(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def _section(rows: list[list[str]], title: str) -> list[list[str]]:
    """The rows of a CSV section (header first), up to the next blank row or section."""
    start = rows.index([f"【{title}】"]) + 1
    found = []
    for row in rows[start:]:
        if not row or not any(row) or row[0].startswith("【"):
            break
        found.append(row)
    return found


def _facts(rows: list[list[str]]) -> dict[str, str]:
    return {row[0]: row[1] for row in rows if len(row) == 2}


COUNT_KEYS = ("expected", "present", "on_leave", "absent", "guests", "exempt_present")


class TestSignInSheet:
    def test_theme_day_counts_labels_and_order(
        self, scenario: Scenario, client: TestClient, clock: FakeClock, keyring: Keyring, engine: Engine
    ) -> None:
        clock.now = at("2025-07-01")
        headers = token(engine, keyring)
        url = f"/api/v1/events/{scenario.theme_day}/attendance"
        sheet = client.get(url, headers=headers).json()
        counts = sheet["counts"]
        assert {key: counts[key] for key in COUNT_KEYS} == {
            "expected": 6,
            "present": 3,
            "on_leave": 1,
            "absent": 2,
            "guests": 1,
            "exempt_present": 1,
        }
        assert counts["expected"] == counts["present"] + counts["on_leave"] + counts["absent"]
        assert counts["attendance_rate"] == pytest.approx(3 / 6)
        assert "实到 ÷ 应到" in sheet["counting_rule"]
        # Names in 花名册 order (not code point order: 周 < 孙 < 李 < 王 < 赵 < 陈).
        assert [m["name"] for m in sheet["expected"]] == ["王芳", "陈静", "赵强", "李雷", "周平", "钱进"]
        assert [m["name"] for m in sheet["absent"]] == ["赵强", "钱进"]
        moved = {m["name"]: m["moved_in_at"] for m in sheet["expected"] if m["moved_in_at"]}
        assert list(moved) == ["钱进"]  # moved in this month; nobody else moved
        assert datetime.fromisoformat(moved["钱进"]) == at("2025-06-05")
        assert [m["name"] for m in sheet["on_leave"]] == ["周平"]
        assert [m["name"] for m in sheet["exempt"]] == ["孙丽"]
        roles = {p["name"]: (p["role_label"], p["expected"], p["guest"]) for p in sheet["present"]}
        assert roles == {
            "王芳": ("应到", True, False),
            "陈静": ("应到", True, False),
            "李雷": ("应到", True, False),
            "孙丽": ("免于参加者到会", False, False),
            "吴刚": ("列席", False, True),
        }

        rows = _csv(client.get(url, params={"format": "csv"}, headers=headers).content)
        facts = _facts(rows)
        assert facts["应到"].startswith("6人")
        assert facts["请假"].startswith("1人")
        assert facts["缺席"].startswith("2人")
        assert facts["列席"] == "1人"
        assert facts["免于参加"] == "1人（其中到会1人）"
        assert facts["出席率"] == "50.0%"
        assert "应到 = 实到 + 请假 + 缺席" in facts["计算方法"]
        present = _section(rows, "出席")
        assert present[0][:5] == ["编号", "姓名", "所在组织", "类别", "身份"]
        assert [(r[0], r[1], r[4]) for r in present[1:]] == [
            ("1", "王芳", "应到"),
            ("2", "陈静", "应到"),
            ("3", "李雷", "应到"),
            ("4", "孙丽", "免于参加者到会"),
            ("5", "吴刚", "列席"),
        ]
        absent = _section(rows, "缺席")
        assert [(r[0], r[1], r[2]) for r in absent[1:]] == [
            ("1", "赵强", "东街党支部"),
            ("2", "钱进", "东街党支部（2025-06-05调入）"),
        ]

    def test_a_member_without_a_seat_at_a_committee_meeting_is_listed_and_counted_as_a_guest(
        self, scenario: Scenario, client: TestClient, clock: FakeClock, keyring: Keyring, engine: Engine
    ) -> None:
        clock.now = at("2025-07-01")
        headers = token(engine, keyring)
        url = f"/api/v1/events/{scenario.committee}/attendance"
        sheet = client.get(url, headers=headers).json()
        assert {key: sheet["counts"][key] for key in COUNT_KEYS} == {
            "expected": 3,
            "present": 2,
            "on_leave": 0,
            "absent": 1,
            "guests": 1,
            "exempt_present": 0,
        }
        li = next(p for p in sheet["present"] if p["name"] == "李雷")
        assert (li["role_label"], li["guest"], li["expected"]) == ("列席", True, False)

        rows = _csv(client.get(url, params={"format": "csv"}, headers=headers).content)
        assert _facts(rows)["列席"] == "1人"
        present = _section(rows, "出席")
        assert [(r[0], r[1], r[4]) for r in present[1:]] == [
            ("1", "王芳", "应到"),
            ("2", "陈静", "应到"),
            ("3", "李雷", "列席"),
        ]


class TestOrgLedger:
    def test_totals_participation_order_and_the_move(
        self, scenario: Scenario, client: TestClient, clock: FakeClock, keyring: Keyring, engine: Engine
    ) -> None:
        clock.now = at("2025-07-01")
        headers = token(engine, keyring)
        url = f"/api/v1/orgs/{scenario.east}/ledger"
        ledger = client.get(url, params={"period": "2025-06"}, headers=headers).json()
        totals = ledger["totals"]
        assert (totals["expected"], totals["present"], totals["on_leave"], totals["absent"]) == (9, 5, 1, 3)
        assert totals["attendance_rate"] == pytest.approx(5 / 9, abs=1e-4)
        assert "实到 ÷ 应到" in ledger["counting_rule"]
        events = {row["title"]: row for row in ledger["events"]}
        assert (events["六月主题党日"]["guests"], events["六月主题党日"]["exempt_present"]) == (1, 1)
        assert (events["六月支委会"]["guests"], events["六月支委会"]["exempt_present"]) == (1, 0)

        members = ledger["members"]
        assert [m["name"] for m in members] == [*ROSTER, "钱进"]  # 钱进 joined the 花名册's end
        tallies = {
            m["name"]: (
                m["expected"],
                m["present"],
                m["on_leave"],
                m["absent"],
                m["exempt"],
                m["exempt_present"],
                m["guest_at"],
            )
            for m in members
        }
        assert tallies == {
            "王芳": (2, 2, 0, 0, 0, 0, 0),
            "陈静": (2, 2, 0, 0, 0, 0, 0),
            "赵强": (2, 0, 0, 2, 0, 0, 0),
            "李雷": (1, 1, 0, 0, 0, 0, 1),
            "孙丽": (0, 0, 0, 0, 1, 1, 0),
            "周平": (1, 0, 1, 0, 0, 0, 0),
            "钱进": (1, 0, 0, 1, 0, 0, 0),
        }
        moved = {
            m["name"]: (m["moved_in_at"], m["moved_out_at"])
            for m in members
            if m["moved_in_at"] or m["moved_out_at"]
        }
        assert list(moved) == ["钱进"]
        assert datetime.fromisoformat(moved["钱进"][0]) == at("2025-06-05")

        west = client.get(
            f"/api/v1/orgs/{scenario.west}/ledger", params={"period": "2025-06"}, headers=headers
        ).json()
        qian = next(m for m in west["members"] if m["name"] == "钱进")
        assert qian["moved_in_at"] is None
        assert datetime.fromisoformat(qian["moved_out_at"]) == at("2025-06-05")

        rows = _csv(client.get(url, params={"period": "2025-06", "format": "csv"}, headers=headers).content)
        assert "实到 ÷ 应到" in _facts(rows)["计算方法"]
        listed = _section(rows, "活动一览")
        assert listed[0][0] == "编号"
        assert [(r[0], r[2]) for r in listed[1:]] == [("1", "六月主题党日"), ("2", "六月支委会")]
        participation = _section(rows, "党员参加情况")
        header = participation[0]
        assert header[:2] == ["编号", "姓名"]
        assert [(r[0], r[1]) for r in participation[1:]] == [
            (str(i), n) for i, n in enumerate([*ROSTER, "钱进"], 1)
        ]
        note = header.index("组织关系变动")
        assert {r[1]: r[note] for r in participation[1:] if r[note]} == {"钱进": "2025-06-05调入"}
        cadence = _section(rows, "三会一课执行情况")
        theme_june = next(r for r in cadence[1:] if r[2] == "主题党日" and r[4] == "2025年6月")
        assert theme_june[-1] == "1"  # the theme day's 编号 in 活动一览, not its database id

    def test_the_cadence_covers_the_branch_from_its_founding(
        self, scenario: Scenario, client: TestClient, clock: FakeClock, keyring: Keyring, engine: Engine
    ) -> None:
        clock.now = at("2025-07-01")
        headers = token(engine, keyring)
        east = client.get(
            f"/api/v1/orgs/{scenario.east}/ledger", params={"period": "2024-Q4"}, headers=headers
        ).json()
        owed = {(row["kind"], row["period_key"]): row["status"] for row in east["cadence"]}
        assert owed == {
            ("branch_general", "2024-Q4"): "missed",
            ("theme_day", "2024-10"): "missed",
            ("theme_day", "2024-11"): "missed",
            ("theme_day", "2024-12"): "missed",
            ("lecture", "2024-Q4"): "missed",
            ("review_meeting", "2024"): "missed",
            ("appraisal", "2024"): "missed",
        }
        west = client.get(
            f"/api/v1/orgs/{scenario.west}/ledger", params={"period": "2024-Q4"}, headers=headers
        ).json()
        assert west["cadence"] == []  # entered on 1 January 2025, no founding date given


class TestReminders:
    def test_the_six_month_clock_runs_across_a_move(
        self, scenario: Scenario, client: TestClient, clock: FakeClock, keyring: Keyring, engine: Engine
    ) -> None:
        clock.now = at("2025-09-05")
        body = client.get(
            "/api/v1/reminders", params={"org": scenario.east}, headers=token(engine, keyring)
        ).json()
        levels = {r["name"]: (r["level"], r["months"]) for r in body["inactivity"]}
        assert levels["钱进"] == ("alert", 8)  # since 2 January, in 西街 then 东街
        assert levels["赵强"] == ("warning", 5)  # since 10 March
        assert not {"孙丽", "王芳"} & set(levels)  # came in June
        qian = next(r for r in body["inactivity"] if r["name"] == "钱进")
        assert datetime.fromisoformat(qian["clock_started_at"]) == at("2025-01-02", "00:00")


def test_org_add_takes_a_founding_date(engine: Engine, database_url: str) -> None:
    result = CliRunner().invoke(
        admin_app,
        ["org", "add", "南街党支部", "--founded", "2023-05-04", "--json", "--db", database_url],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["founded_at"] == "2023-05-04T00:00:00+08:00"
    with unit_of_work(engine) as session:
        org = session.get(Organisation, data["id"])
        assert org is not None
        assert org.founded_at == datetime(2023, 5, 4, tzinfo=SHANGHAI)
        assert org.since == org.founded_at


def test_the_migration_gives_a_moved_member_their_clock_back(engine: Engine) -> None:
    """Before 0014 a move overwrote ``joined_org_at``; the migration takes it back to the start of
    the member's unbroken run of membership periods (and leaves a member who came back after a
    gap from the return on). Existing members get roster positions in the order entered."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0013_evidence")
    org = sa.table(
        "organisation",
        sa.column("id"),
        sa.column("name"),
        sa.column("kind"),
        sa.column("created_at", UtcDateTime()),
    )
    member = sa.table(
        "member",
        sa.column("id"),
        sa.column("name"),
        sa.column("org_id"),
        sa.column("category"),
        sa.column("status"),
        sa.column("joined_org_at", UtcDateTime()),
        sa.column("created_at", UtcDateTime()),
    )
    period = sa.table(
        "membership_period",
        sa.column("member_id"),
        sa.column("org_id"),
        sa.column("category"),
        sa.column("started_at", UtcDateTime()),
        sa.column("ended_at", UtcDateTime()),
    )
    joined, moved = at("2025-01-02"), at("2025-06-05")
    left, back = at("2025-02-01"), at("2025-04-01")
    with engine.begin() as connection:
        connection.execute(
            sa.insert(org),
            [{"id": n, "name": f"支部{n}", "kind": "branch", "created_at": joined} for n in (1, 2)],
        )

        def person(member_id: int, name: str, org_id: int, joined_org_at: datetime) -> dict[str, object]:
            return {
                "id": member_id,
                "name": name,
                "org_id": org_id,
                "category": "full",
                "status": "active",
                "joined_org_at": joined_org_at,
                "created_at": joined,
            }

        connection.execute(
            sa.insert(member),
            [
                # Added on 2 January in 支部1, moved to 支部2 on 5 June (the move overwrote the date).
                person(1, "钱进", 2, moved),
                # Recorded without a date, moved on 5 June.
                person(2, "吴刚", 2, moved),
                # Left on 1 February, back on 1 April: the clock runs from the return.
                person(3, "郑和", 1, back),
            ],
        )
        connection.execute(
            sa.insert(period),
            [
                {"member_id": 1, "org_id": 1, "category": "full", "started_at": joined, "ended_at": moved},
                {"member_id": 1, "org_id": 2, "category": "full", "started_at": moved, "ended_at": None},
                {"member_id": 2, "org_id": 1, "category": "full", "started_at": None, "ended_at": moved},
                {"member_id": 2, "org_id": 2, "category": "full", "started_at": moved, "ended_at": None},
                {"member_id": 3, "org_id": 1, "category": "full", "started_at": joined, "ended_at": left},
                {"member_id": 3, "org_id": 1, "category": "full", "started_at": back, "ended_at": None},
            ],
        )
    migrate(engine)
    with engine.connect() as connection:
        found = dict(connection.execute(sa.select(member.c.id, member.c.joined_org_at)).all())
        positions = dict(connection.execute(sa.text("SELECT id, roster_position FROM member")).all())
    assert found == {1: joined, 2: None, 3: back}
    assert positions == {1: 1, 2: 2, 3: 1}  # per organisation, in the order they were entered
