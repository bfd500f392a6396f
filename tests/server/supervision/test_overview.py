"""The superior's view: compliance per family, ranking of the organisations below, branches ×
months of missed meetings, and the XLSX — read from stored reminders, scoped like the rest."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine

from server.db import unit_of_work
from server.keyring import Keyring
from server.supervision.findings import Finding, member_subject, org_subject
from server.supervision.service import apply_findings
from server.vocabulary import ReminderLevel, RuleFamily
from tests.server.factories import SHANGHAI, World
from tests.server.ledgers.helpers import at, token
from tests.server.supervision.test_lifecycle import ESCALATION


def store(engine: Engine, findings: list[Finding]) -> None:
    with unit_of_work(engine) as session:
        apply_findings(
            session,
            findings,
            families=set(RuleFamily),
            now=at("2026-11-20"),
            escalation=ESCALATION,
            tz=SHANGHAI,
        )


def test_the_committee_sees_its_branches_standing(
    engine: Engine, world: World, keyring: Keyring, client: TestClient
) -> None:
    missed = [
        Finding(
            "org_life.cadence_missed",
            RuleFamily.ORG_LIFE,
            ReminderLevel.WARNING,
            world.branch_id,
            f"{org_subject(world.branch_id)}/theme_day",
            period,
            "未召开主题党日",
        )
        for period in ("2026-09", "2026-10")
    ]
    store(
        engine,
        [
            *missed,
            Finding(
                "org_life.cadence_missed",
                RuleFamily.ORG_LIFE,
                ReminderLevel.WARNING,
                world.branch_id,
                f"{org_subject(world.branch_id)}/lecture",
                "2026-Q3",
                "未上党课",
            ),
            # A notice is advice: 第二党支部 stays compliant.
            Finding(
                "org_life.six_month",
                RuleFamily.ORG_LIFE,
                ReminderLevel.NOTICE,
                world.other_branch_id,
                member_subject(world.members["赵六"]),
                "2026-08-01",
                "赵六已连续3个月未参加组织生活",
            ),
            # A 党小组's reminder counts for its branch.
            Finding(
                "org_life.six_month",
                RuleFamily.ORG_LIFE,
                ReminderLevel.ALERT,
                world.group_id,
                member_subject(world.members["李四"]),
                "2026-05-01",
                "李四已连续6个月未参加组织生活",
            ),
        ],
    )
    committee = token(engine, keyring, org_id=world.committee_id)
    got = client.get(
        f"/api/v1/orgs/{world.committee_id}/supervision/overview", params={"year": 2026}, headers=committee
    )
    assert got.status_code == 200, got.text
    body = got.json()
    life = next(f for f in body["families"] if f["family"] == "org_life")
    assert (life["branches"], life["in_breach"], life["share"]) == (2, 1, 0.5)
    assert all(f["in_breach"] == 0 for f in body["families"] if f["family"] != "org_life")
    assert [(r["name"], r["compliant"], r["open_alerts"]) for r in body["ranking"]] == [
        ("第二党支部", 1, 0),
        ("第一党支部", 0, 1),
    ]
    first = next(b for b in body["branches"] if b["org_id"] == world.branch_id)
    assert first["worst"] == "alert"
    assert first["open_by_family"] == {"org_life": 4}
    assert first["missed_by_month"] == [
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1 + 1,
        1,
        0,
        0,
    ]  # September: theme day + Q3 lecture
    assert body["branches"][0]["org_id"] == world.branch_id  # worst first

    workbook = client.get(
        f"/api/v1/orgs/{world.committee_id}/supervision/overview",
        params={"year": 2026, "format": "xlsx"},
        headers=committee,
    )
    assert workbook.status_code == 200
    assert "filename*=UTF-8''" in workbook.headers["content-disposition"]
    sheets = load_workbook(io.BytesIO(workbook.content))
    assert sheets.sheetnames == ["分类达标情况", "下级排名", "支部明细"]
    rows = list(sheets["支部明细"].iter_rows(values_only=True))
    assert rows[1][:2] == ("第一党支部", "严重")


def test_a_branch_cannot_see_its_superiors_overview(
    engine: Engine, world: World, keyring: Keyring, client: TestClient
) -> None:
    branch = token(engine, keyring, org_id=world.branch_id)
    refused = client.get(f"/api/v1/orgs/{world.committee_id}/supervision/overview", headers=branch)
    assert (refused.status_code, refused.json()["error"]) == (404, "organisation_not_found")
    assert (
        client.get(f"/api/v1/orgs/{world.branch_id}/supervision/overview", headers=branch).status_code == 200
    )
    bad = client.get(
        f"/api/v1/orgs/{world.branch_id}/supervision/overview", params={"year": 99999}, headers=branch
    )
    assert bad.status_code == 422
