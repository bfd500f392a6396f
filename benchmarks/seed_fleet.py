"""Seed one fresh database for ``benchmarks/bench.py`` and print what the load generator needs.

Run as a child process (``python benchmarks/seed_fleet.py PLAN``) with the server's environment
(``ECARD_DATABASE_URL``, ``ECARD_DATA_DIR``, ``ECARD_SECRET_KEY``) and, for a "before" run, the
other source tree first on ``PYTHONPATH``: the seed then goes through that tree's own services and
migrations, and nothing of the tree under test is imported into the bench process.

What it writes, through the same services the admin CLI uses:

1. a 联合党委 with ``branches`` 党支部;
2. a 花名册 (.xlsx: 姓名, 性别, 党员类别, 所在支部, 易通卡号, UID) of ``members`` members, imported with
   :func:`server.roster.service.import_roster`, which binds each member's 易通卡 (number and UID);
3. per scenario, ``venues`` venues, each with a 主题党日 of the 联合党委 in progress and
   ``kiosks_per_venue`` kiosks with a one-time enrollment code;
4. an admin API token (to read the sign-in sheets);
5. with ``history``, what a city database already holds when a 主题党日 starts: at another venue,
   ``events`` earlier meetings with ``attended`` members each, and ``kiosks`` kiosks with
   ``taps_per_kiosk`` earlier taps each; then, on PostgreSQL, ``ANALYZE``, as autovacuum keeps the
   statistics of a table that did not just start from empty. Without it the planner works from
   statistics taken when the tables held a handful of rows (a kiosk id then looks unique), which
   no deployment past its first minutes has.

PLAN is JSON: ``{"members": 2000, "branches": 20, "scenarios": [{"name": "ingest_b1", "venues": 1,
"kiosks_per_venue": 10, "accept_uid_only_reads": false}, ...], "history": {"events": 60,
"attended": 250, "kiosks": 100, "taps_per_kiosk": 300}}``. The output is one JSON object on
stdout (see :func:`seed`).
"""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹"
GIVEN_FIRST = "建秀志丽明海晓文春国小雪伟静红玉德新永宏"
GIVEN_SECOND = "国英强华东燕斌梅平军辉芳杰敏霞涛云峰林洁"
BRANCH_NUMERALS = "一二三四五六七八九十"


def member_name(n: int) -> str:
    """A distinct three-character name for every n below 30 × 20 × 20 = 12,000."""
    surname = SURNAMES[n % len(SURNAMES)]
    rest = n // len(SURNAMES)
    return surname + GIVEN_FIRST[rest % len(GIVEN_FIRST)] + GIVEN_SECOND[(rest // len(GIVEN_FIRST)) % 20]


def card_number(n: int) -> str:
    return f"310439{n:013d}"


def card_uid(n: int) -> str:
    return f"5A{n:06X}"


def branch_name(i: int) -> str:
    if i < 10:
        return f"第{BRANCH_NUMERALS[i]}党支部"
    return f"第{i + 1}党支部"


def roster_workbook(members: int, branches: list[str]) -> bytes:
    """A 花名册 as a secretary would upload it: one sheet, a title row, then the header."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "花名册"
    sheet.append(["厦门市某街道联合党委 党员花名册"])
    sheet.append(["序号", "姓名", "性别", "党员类别", "所在支部", "易通卡号", "UID"])
    for n in range(members):
        sheet.append(
            [
                n + 1,
                member_name(n),
                "女" if n % 2 else "男",
                "预备党员" if n % 13 == 0 else "正式党员",
                branches[n % len(branches)],
                card_number(n),
                card_uid(n),
            ]
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def seed(plan: dict[str, Any]) -> dict[str, Any]:
    """Fill the database named by the environment; returns token, members and per-scenario kiosks."""
    from sqlmodel import col, select

    from server.auth.service import create_token
    from server.caller import CLI_CALLER
    from server.config import ServerSettings, load_secret_key
    from server.db import make_engine, unit_of_work
    from server.events.service import add_event
    from server.keyring import Keyring
    from server.kiosks.service import add_kiosk
    from server.migrate import migrate
    from server.orgs.service import add_organisation
    from server.records.orgs import Member
    from server.roster.service import import_roster
    from server.venues.service import add_venue
    from server.vocabulary import EventKind, OrgKind, TokenRole

    settings = ServerSettings()
    keyring = Keyring(load_secret_key(settings))
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    members: int = plan["members"]
    try:
        migrate(engine)
        with unit_of_work(engine) as session:
            committee = add_organisation(
                session, name="厦门市某街道联合党委", kind=OrgKind.BASIC_COMMITTEE, parent_id=None, now=now
            )
            assert committee.id is not None
            branches = [branch_name(i) for i in range(plan["branches"])]
            for name in branches:
                add_organisation(session, name=name, kind=OrgKind.BRANCH, parent_id=committee.id, now=now)
        with unit_of_work(engine) as session:
            report = import_roster(
                session,
                keyring=keyring,
                data=roster_workbook(members, branches),
                caller=CLI_CALLER,
                org_id=committee.id,
                now=now,
            )
            assert report.created == members, report
            assert report.cards_bound == members, report
        with unit_of_work(engine) as session:
            ids = dict(session.exec(select(col(Member.name), col(Member.id))).all())
            scenarios: dict[str, list[dict[str, Any]]] = {}
            for scenario in plan["scenarios"]:
                kiosks: list[dict[str, Any]] = []
                for v in range(scenario["venues"]):
                    venue = add_venue(
                        session,
                        name=f"{scenario['name']} 党群服务中心 {v + 1}号厅",
                        org_id=committee.id,
                        now=now,
                        accept_uid_only_reads=bool(scenario.get("accept_uid_only_reads", False)),
                    )
                    assert venue.id is not None
                    event = add_event(
                        session,
                        title=f"{now:%m}月主题党日：学习党章（{v + 1}号厅）",
                        org_id=committee.id,
                        venue_id=venue.id,
                        kind=EventKind.THEME_DAY,
                        start_at=now - timedelta(minutes=5),
                        end_at=now + timedelta(hours=3),
                        late_after=now + timedelta(hours=2),  # every bench tap counts as on time
                        now=now,
                        caller=CLI_CALLER,
                    )
                    assert event.id is not None
                    for k in range(scenario["kiosks_per_venue"]):
                        issued = add_kiosk(
                            session,
                            keyring=keyring,
                            name=f"{v + 1}号厅签到机{k + 1}",
                            venue_id=venue.id,
                            now=now,
                            code_ttl=settings.enrollment_code_ttl,
                            caller=CLI_CALLER,
                        )
                        kiosks.append({"code": issued.code, "event_id": event.id, "venue_id": venue.id})
                scenarios[scenario["name"]] = kiosks
            if plan.get("history"):
                _seed_history(
                    session,
                    plan["history"],
                    org_id=committee.id,
                    member_ids=sorted(i for i in ids.values() if i is not None),
                    now=now,
                )
            token = create_token(
                session,
                keyring=keyring,
                role=TokenRole.ADMIN,
                org_id=None,
                label="bench",
                caller=CLI_CALLER,
                now=now,
            )
        if plan.get("history") and engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
        return {
            "token": token.token,
            "members": [
                {"member_id": ids[member_name(n)], "card_no": card_number(n), "uid": card_uid(n)}
                for n in range(members)
            ],
            "scenarios": scenarios,
            "server_module": str(Path(sys.modules["server"].__file__ or "").parent),
        }
    finally:
        engine.dispose()


def _seed_history(
    session: Any, history: dict[str, int], *, org_id: int, member_ids: list[int], now: datetime
) -> None:
    """Item 5 of the module docstring, written straight to the tables (the earlier taps' signed
    bytes and evidence are not needed: no run reads them)."""
    from schemas.messages import TapMode
    from server.attendance.service import ATTENDANCE_TABLE
    from server.caller import CLI_CALLER
    from server.db import bulk_insert
    from server.events.service import add_event
    from server.records.kiosks import Kiosk
    from server.records.taps import NewTap, allocate_tap_ids, insert_new_taps
    from server.venues.service import add_venue
    from server.vocabulary import AttendanceSource, EventKind, KioskStatus, TapOutcome

    venue = add_venue(session, name="往期活动 党群服务中心", org_id=org_id, now=now)
    assert venue.id is not None
    events = []
    for n in range(history["events"]):
        start = now - timedelta(days=n + 1)
        event = add_event(
            session,
            title=f"往期主题党日 {n + 1}",
            org_id=org_id,
            venue_id=venue.id,
            kind=EventKind.THEME_DAY,
            start_at=start,
            end_at=start + timedelta(hours=2),
            now=start - timedelta(days=7),
            caller=CLI_CALLER,
        )
        events.append(event)
    attended = history["attended"]
    rows = []
    for n, event in enumerate(events):
        for k in range(attended):
            member_id = member_ids[(n * attended // 4 + k) % len(member_ids)]
            at = event.start_at + timedelta(seconds=k)
            rows.append(
                {
                    "event_id": event.id,
                    "member_id": member_id,
                    "first_tap_at": at,
                    "last_tap_at": at,
                    "tap_count": 1,
                    "source": AttendanceSource.TAP,
                    "note": "",
                    "recorded_by": "",
                }
            )
    bulk_insert(session, ATTENDANCE_TABLE, rows)
    kiosk_ids = [f"history-{n:03d}" for n in range(history["kiosks"])]
    session.add_all(
        Kiosk(id=kiosk_id, name=kiosk_id, venue_id=venue.id, status=KioskStatus.ACTIVE, created_at=now)
        for kiosk_id in kiosk_ids
    )
    session.flush()
    per_kiosk = history["taps_per_kiosk"]
    tap_ids = allocate_tap_ids(session, per_kiosk * len(kiosk_ids))
    taps = []
    for n, kiosk_id in enumerate(kiosk_ids):
        for seq in range(1, per_kiosk + 1):
            tap_id = tap_ids[n * per_kiosk + seq - 1]
            event = events[(n + seq) % len(events)]
            taps.append(
                NewTap(
                    id=tap_id,
                    received_at=event.start_at,
                    kid="history",
                    kiosk_id=kiosk_id,
                    seq=seq,
                    claimed_seq=seq,
                    occurred_at=event.start_at + timedelta(seconds=seq),
                    mode=TapMode.CHECKIN,
                    payload_digest=f"{tap_id:064x}",
                    outcome=TapOutcome.ACCEPTED,
                    member_id=member_ids[(n * per_kiosk + seq) % len(member_ids)],
                    event_id=event.id,
                    display_message="签到成功",
                )
            )
    insert_new_taps(session, taps)


def main() -> None:
    plan = json.loads(sys.argv[1])
    print(json.dumps(seed(plan)))


if __name__ == "__main__":
    main()
