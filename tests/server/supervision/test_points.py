"""积分 and 星级: points from attendance, duties and dues with the configured weights; stars from
the year's cadence, participation and dues; scoped like every read."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from server.db import unit_of_work
from server.keyring import Keyring
from server.records.dues import DuesMonth, DuesSource
from server.vocabulary import EventKind
from tests.server.factories import ZHANG_CARD, World
from tests.server.ledgers.helpers import at, meeting, tap, token


def test_a_members_points_and_the_branches_stars(
    engine: Engine, world: World, keyring: Keyring, client: TestClient
) -> None:
    zhang, wang = world.members["张三明"], world.members["王五"]
    theme = meeting(engine, world, "五月主题党日", at("2026-05-10"), chair=zhang, recorder=wang)
    review = meeting(
        engine,
        world,
        "年度组织生活会",
        at("2026-06-10"),
        kinds=[EventKind.REVIEW_MEETING, EventKind.APPRAISAL],
    )
    tap(engine, keyring, world, ZHANG_CARD, at("2026-05-10", "08:55"))
    tap(engine, keyring, world, ZHANG_CARD, at("2026-06-10", "08:55"))
    with unit_of_work(engine) as session:
        for month, paid in (("2026-04", 1000), ("2026-05", 1000), ("2026-06", 500)):  # June: paid too little
            session.add(
                DuesMonth(
                    member_id=zhang,
                    month=month,
                    standard_fen=1000,
                    paid_fen=paid,
                    source=DuesSource.XLSX,
                    updated_at=at("2026-06-30"),
                )
            )
    assert theme
    assert review
    client.app.state.clock.now = at("2026-07-01")  # type: ignore[attr-defined]
    branch_token = token(engine, keyring, org_id=world.branch_id)

    mine = client.get(f"/api/v1/members/{zhang}/points", params={"year": 2026}, headers=branch_token)
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert (body["core_meetings"], body["review_meetings"], body["duties"], body["dues_months"]) == (
        1,
        1,
        1,
        2,
    )
    assert body["points"] == 2 + 3 + 2 + 2 * 1  # theme day, review meeting, chairing, two settled months

    report = client.get(f"/api/v1/orgs/{world.branch_id}/points", params={"year": 2026}, headers=branch_token)
    assert report.status_code == 200, report.text
    members = {m["name"]: m["points"] for m in report.json()["members"]}
    assert members["张三明"] == 9
    assert members["王五"] == 2  # minuted the theme day, attended nothing
    (branch,) = report.json()["organisations"]
    assert branch["name"] == "第一党支部"
    assert branch["participation_share"] == 1 / 3  # 张三明 of 张三明, 王五 and 李四 (in the 党小组)
    assert 1 <= branch["stars"] <= 5

    other = token(engine, keyring, org_id=world.other_branch_id)
    assert client.get(f"/api/v1/members/{zhang}/points", headers=other).status_code == 404
    assert client.get(f"/api/v1/orgs/{world.branch_id}/points", headers=other).status_code == 404
