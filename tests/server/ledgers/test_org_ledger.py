"""An organisation's ledger for a period (#4 item 4b): events with counts and rates, 三会一课
cadence compliance, member participation; one builder for the API, the CLI and the exports."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.ledgers.cadence import CadencePolicy
from server.ledgers.periods import parse_period
from server.ledgers.schemas import OrgLedger
from server.ledgers.service import build_org_ledger
from server.orgs.membership import appoint_committee_member
from server.vocabulary import Cadence, CommitteeRole, EventKind
from tests.server.conftest import FakeClock
from tests.server.factories import LI_CARD, SHANGHAI, ZHANG_CARD, ZHAO_CARD, World
from tests.server.ledgers.helpers import CALLER, at, meeting, member, tap, token

NOW = at("2025-06-25", "12:00")  # late in Q2: June still running


def ledger(
    engine: Engine,
    world: World,
    period: str = "2025-Q2",
    *,
    org_id: int | None = None,
    lecture: Cadence = Cadence.QUARTERLY,
) -> OrgLedger:
    with unit_of_work(engine) as session:
        return build_org_ledger(
            session,
            org_id=org_id or world.branch_id,
            period=parse_period(period, SHANGHAI),
            caller=CLI_CALLER,
            now=NOW,
            tz=SHANGHAI,
            policy=CadencePolicy(lecture=lecture),
        )


def statuses(result: OrgLedger, org_id: int | None = None) -> dict[tuple[str, str], str]:
    return {
        (row.kind.value, row.period_key): row.status.value
        for row in result.cadence
        if org_id is None or row.organisation.id == org_id
    }


@pytest.fixture
def quarter(engine: Engine, keyring: Keyring, world: World) -> dict[str, int]:
    """A second quarter: a 主题党日 that holds the 党员大会 in April (attended), none in May, one
    planned for late June; a 党课 in May nobody attended; the group met in April only."""
    events = {
        "april": meeting(
            engine,
            world,
            "四月主题党日暨党员大会",
            at("2025-04-10"),
            kinds=[EventKind.THEME_DAY, EventKind.BRANCH_GENERAL],
        ),
        "lecture": meeting(engine, world, "五月党课", at("2025-05-20"), kinds=[EventKind.LECTURE]),
        "june": meeting(engine, world, "六月主题党日", at("2025-06-28"), created=at("2025-06-01")),
        "group": meeting(
            engine, world, "四月党小组会", at("2025-04-12"), kinds=[EventKind.GROUP], org_id=world.group_id
        ),
        "elsewhere": meeting(engine, world, "二支部主题党日", at("2025-04-20"), org_id=world.other_branch_id),
    }
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:55"))
    tap(engine, keyring, world, LI_CARD, at("2025-04-10", "09:10"))  # late
    tap(engine, keyring, world, ZHAO_CARD, at("2025-04-10", "08:57"))  # guest from the second branch
    tap(engine, keyring, world, LI_CARD, at("2025-04-12", "08:58"))
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-20", "09:00"))  # 张三明 as a guest elsewhere
    return events


class TestCadence:
    def test_each_required_meeting_per_period(
        self, engine: Engine, world: World, quarter: dict[str, int]
    ) -> None:
        result = ledger(engine, world)
        assert statuses(result, world.branch_id) == {
            ("branch_general", "2025-Q2"): "met",  # held inside the 主题党日 (one event, two kinds)
            ("theme_day", "2025-04"): "met",
            ("theme_day", "2025-05"): "missed",
            ("theme_day", "2025-06"): "scheduled",
            ("lecture", "2025-Q2"): "due",  # the May lecture had nobody present: not evidence
            ("review_meeting", "2025"): "due",
            ("appraisal", "2025"): "due",
        }
        assert statuses(result, world.group_id) == {
            ("group", "2025-04"): "met",
            ("group", "2025-05"): "missed",
            ("group", "2025-06"): "due",
        }
        april = next(
            row for row in result.cadence if row.period_key == "2025-04" and row.kind == EventKind.THEME_DAY
        )
        assert (april.held_event_ids, april.kind_label, april.status_label) == (
            [quarter["april"]],
            "主题党日",
            "已召开",
        )
        assert (result.totals.cadence_met, result.totals.cadence_missed, result.totals.cadence_open) == (
            3,
            2,
            5,  # the review meeting and the appraisal of the year are still to come
        )

    def test_an_early_sign_in_does_not_make_a_meeting_held_before_it_starts(
        self, engine: Engine, keyring: Keyring, world: World
    ) -> None:
        """Check-in opens 30 min early: a member signed in at 11:40 for a noon meeting leaves the
        month "scheduled" until noon, matching the ledger's event counts; after noon it is "met"."""
        noon = meeting(engine, world, "六月主题党日", at("2025-06-25", "12:10"))
        tap(engine, keyring, world, ZHANG_CARD, at("2025-06-25", "11:50"))
        before = ledger(engine, world, "2025-06")
        assert statuses(before, world.branch_id)[("theme_day", "2025-06")] == "scheduled"
        assert before.totals.events == 0
        with unit_of_work(engine) as session:
            after = build_org_ledger(
                session,
                org_id=world.branch_id,
                period=parse_period("2025-06", SHANGHAI),
                caller=CLI_CALLER,
                now=at("2025-06-25", "12:30"),
                tz=SHANGHAI,
                policy=CadencePolicy(),
            )
        assert statuses(after, world.branch_id)[("theme_day", "2025-06")] == "met"
        june = [
            row for row in after.cadence if row.period_key == "2025-06" and row.kind == EventKind.THEME_DAY
        ]
        assert [row.held_event_ids for row in june] == [[noon]]
        assert after.totals.events == 1

    def test_committee_meetings_are_required_once_the_branch_has_a_committee(
        self, engine: Engine, world: World, quarter: dict[str, int]
    ) -> None:
        assert ("committee", "2025-04") not in statuses(ledger(engine, world))
        zhou = member(engine, "周九", world.branch_id)
        with unit_of_work(engine) as session:
            for member_id in (world.members["张三明"], world.members["王五"], zhou):
                appoint_committee_member(
                    session,
                    org_id=world.branch_id,
                    member_id=member_id,
                    role=CommitteeRole.MEMBER,
                    at=at("2025-01-01"),
                    caller=CALLER,
                )
        assert statuses(ledger(engine, world))[("committee", "2025-04")] == "missed"

    def test_the_lecture_cadence_is_configurable(
        self, engine: Engine, world: World, quarter: dict[str, int]
    ) -> None:
        monthly = statuses(ledger(engine, world, lecture=Cadence.MONTHLY), world.branch_id)
        assert [key for key in monthly if key[0] == "lecture"] == [
            ("lecture", "2025-04"),
            ("lecture", "2025-05"),
            ("lecture", "2025-06"),
        ]

    def test_a_month_ledger_judges_the_whole_quarter(
        self, engine: Engine, world: World, quarter: dict[str, int]
    ) -> None:
        """The June ledger still shows the Q2 党员大会 as held (in April)."""
        assert (
            statuses(ledger(engine, world, "2025-06"), world.branch_id)[("branch_general", "2025-Q2")]
            == "met"
        )


class TestContent:
    def test_events_counts_and_participation(
        self, engine: Engine, world: World, quarter: dict[str, int]
    ) -> None:
        result = ledger(engine, world)
        assert (result.organisation.name, result.period.label) == ("第一党支部", "2025年第二季度")
        assert [row.title for row in result.events] == [
            "四月主题党日暨党员大会",
            "四月党小组会",
            "五月党课",
            "六月主题党日",
        ]
        april, group, lecture, june = result.events
        assert (
            april.kinds_label,
            april.expected,
            april.present,
            april.present_full,
            april.present_probationary,
        ) == (
            "主题党日、支部党员大会",
            3,
            2,
            1,
            1,
        )
        assert (april.absent, april.guests, april.late, april.attendance_rate) == (1, 1, 1, 0.6667)
        assert [q.met for q in april.quorums] == [False]  # 1 of 2 voting members
        assert (group.expected, group.present) == (1, 1)
        assert (lecture.present, lecture.absent) == (0, 3)
        assert (june.upcoming, june.absent, june.attendance_rate) == (True, 0, None)
        assert (result.totals.events, result.totals.expected, result.totals.present) == (3, 7, 3)

        rows = {row.name: row for row in result.members}
        assert sorted(rows) == ["张三明", "李四", "王五"]  # the branch and its group; not 赵六
        zhang, li, wang = rows["张三明"], rows["李四"], rows["王五"]
        assert (zhang.expected, zhang.present, zhang.absent, zhang.elsewhere) == (2, 1, 1, 1)
        assert zhang.last_org_life_at == at("2025-04-20", "09:00")
        assert (li.expected, li.present, li.attendance_rate) == (3, 2, 0.6667)
        assert (wang.present, wang.absent, wang.last_org_life_at) == (0, 2, None)

    def test_a_joint_event_is_in_both_ledgers(self, engine: Engine, world: World) -> None:
        joint = meeting(
            engine,
            world,
            "联合党课",
            at("2025-05-08"),
            kinds=[EventKind.LECTURE],
            joint=[world.other_branch_id],
        )
        first = ledger(engine, world)
        second = ledger(engine, world, org_id=world.other_branch_id)
        assert [row.event_id for row in first.events] == [joint]
        assert [row.event_id for row in second.events] == [joint]
        assert [o.name for o in second.events[0].organisations] == ["第一党支部", "第二党支部"]
        assert statuses(second, world.other_branch_id)[("lecture", "2025-Q2")] == "due"


class TestApi:
    def test_scoping_and_formats(
        self,
        engine: Engine,
        keyring: Keyring,
        world: World,
        client: TestClient,
        clock: FakeClock,
        quarter: dict[str, int],
        tmp_path,
    ) -> None:  # type: ignore[no-untyped-def]
        clock.now = NOW
        url = f"/api/v1/orgs/{world.branch_id}/ledger"
        mine = token(engine, keyring, org_id=world.branch_id)
        other = token(engine, keyring, org_id=world.other_branch_id)
        committee = token(engine, keyring, org_id=world.committee_id)

        assert (
            client.get(url, params={"period": "2025-Q2"}, headers=other).json()["error"]
            == "organisation_not_found"
        )
        assert client.get(url, params={"period": "2025-Q2"}, headers=committee).status_code == 200
        assert client.get(url, params={"period": "2025-Q9"}, headers=mine).json()["error"] == "invalid_period"
        body = client.get(url, params={"period": "2025-Q2"}, headers=mine).json()
        assert body["period"]["key"] == "2025-Q2"
        assert body["events"][0]["title"] == "四月主题党日暨党员大会"

        csv_response = client.get(url, params={"period": "2025-Q2", "format": "csv"}, headers=mine)
        assert csv_response.headers["content-type"].startswith("text/csv")
        assert csv_response.headers["content-disposition"].startswith('attachment; filename="ledger-org-')
        assert csv_response.content.startswith(b"\xef\xbb\xbf")
        text = csv_response.content.decode("utf-8-sig")
        assert "第一党支部 组织生活台账（2025年第二季度）" in text
        assert "四月主题党日暨党员大会" in text
        assert "【三会一课执行情况】" in text

        xlsx = client.get(url, params={"period": "2025-Q2", "format": "xlsx"}, headers=mine)
        assert (
            xlsx.headers["content-type"]
            == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
        workbook = load_xlsx(xlsx.content, tmp_path)
        assert workbook.sheetnames == ["概况", "活动一览", "三会一课执行情况", "党员参加情况"]
        events = workbook["活动一览"]
        assert events.freeze_panes == "A2"
        assert [c.value for c in events[1]][:4] == ["编号", "时间", "活动", "类型"]
        assert events["C2"].value == "四月主题党日暨党员大会"
        assert events["I2"].value == 3  # 应到, a number
        assert events["A1"].font.bold
        assert events.column_dimensions["C"].width >= 20
        participation = {
            row[1]: row for row in workbook["党员参加情况"].iter_rows(min_row=2, values_only=True)
        }
        assert [row[0] for row in participation.values()] == list(range(1, len(participation) + 1))
        assert participation["王五"][7] == 2  # 缺席 (after 编号, 姓名, 所在组织, 类别, 应参加, 出席, 请假)

        pdf = client.get(url, params={"period": "2025-Q2", "format": "pdf"}, headers=mine)
        assert pdf.content.startswith(b"%PDF")
        text = pdf_text(pdf.content, tmp_path)
        for expected in (
            "第一党支部组织生活台账（2025年第二季度）",
            "四月主题党日",
            "三会一课执行情况",
            "书记（主持人）（签字）",
        ):
            assert expected in text, expected


def load_xlsx(content: bytes, tmp_path) -> object:  # type: ignore[no-untyped-def]
    from openpyxl import load_workbook

    path = tmp_path / "ledger.xlsx"
    path.write_bytes(content)
    return load_workbook(path)


def pdf_text(content: bytes, tmp_path) -> str:  # type: ignore[no-untyped-def]
    import subprocess

    path = tmp_path / "ledger.pdf"
    path.write_bytes(content)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True, timeout=60
    ).stdout.replace(" ", "")
