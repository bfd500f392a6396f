"""A member's history (#4 item 4c), and the sign-in sheet's exports (#4 item 5)."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine
from sqlmodel import select

from server.caller import CLI_CALLER
from server.cards.lifecycle import report_card_lost
from server.db import unit_of_work
from server.keyring import Keyring
from server.leave.service import decide_leave, request_leave
from server.ledgers.periods import parse_period
from server.ledgers.service import build_member_history
from server.orgs.membership import move_member
from server.records.cards import CardBinding
from server.vocabulary import EventKind
from tests.server.conftest import FakeClock
from tests.server.factories import LI_CARD, SHANGHAI, ZHANG_CARD, World
from tests.server.ledgers.helpers import CALLER, at, meeting, tap, token


def test_history_lists_every_event_with_its_outcome(engine: Engine, keyring: Keyring, world: World) -> None:
    april = meeting(engine, world, "四月主题党日", at("2025-04-10"))
    meeting(engine, world, "五月主题党日", at("2025-05-10"))
    june = meeting(engine, world, "六月党课", at("2025-06-10"), kinds=[EventKind.LECTURE])
    meeting(engine, world, "二支部活动", at("2025-06-12"), org_id=world.other_branch_id)
    meeting(engine, world, "二支部七月活动", at("2025-07-12"), org_id=world.other_branch_id)
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:50"))
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "10:50"))
    tap(engine, keyring, world, ZHANG_CARD, at("2025-06-12", "09:00"))  # guest at the second branch
    with unit_of_work(engine) as session:
        leave = request_leave(
            session,
            event_id=june,
            member_id=world.members["张三明"],
            reason="出差",
            caller=CALLER,
            now=at("2025-06-01"),
        )
        assert leave.id is not None
        decide_leave(session, leave_id=leave.id, approve=True, note="", caller=CALLER, now=at("2025-06-02"))
        move_member(
            session,
            member_id=world.members["张三明"],
            to_org_id=world.other_branch_id,
            at=at("2025-07-01"),
            caller=CALLER,
        )
        binding_id = session.exec(
            select(CardBinding.id).where(CardBinding.member_id == world.members["张三明"])
        ).one()
        assert binding_id is not None
        report_card_lost(session, binding_id=binding_id, caller=CALLER, now=at("2025-07-02"))

    with unit_of_work(engine) as session:
        history = build_member_history(
            session,
            member_id=world.members["张三明"],
            period=None,
            caller=CLI_CALLER,
            now=at("2025-07-05"),
            tz=SHANGHAI,
        )
    outcomes = [(row.title, row.outcome) for row in history.events]
    assert outcomes == [
        ("三月主题党日", "absent"),
        ("四月主题党日", "present"),
        ("五月主题党日", "absent"),
        ("六月党课", "on_leave"),
        ("二支部活动", "guest"),
        ("二支部七月活动", "upcoming"),  # his new branch, not yet held
    ]
    present = history.events[1]
    assert (present.event_id, present.duration_minutes, present.checkout_at) == (
        april,
        120,
        at("2025-04-10", "10:50"),
    )
    assert [m.organisation.id for m in history.memberships] == [world.branch_id, world.other_branch_id]
    assert [(c.status_label, c.card) for c in history.cards] == [
        ("已挂失", "3104********8901 / **********E5F6")
    ]
    # 应参加 = 出席 1 + 请假 1 + 缺席 2 (leave stays in 应参加, #10); the July event is not held yet.
    assert (history.summary.expected, history.summary.present, history.summary.absent) == (4, 1, 2)
    assert (history.summary.on_leave, history.summary.guest) == (1, 1)
    assert history.summary.last_org_life_at == at("2025-06-12", "09:00")
    assert [leave.title for leave in history.leave] == ["六月党课"]

    with unit_of_work(engine) as session:
        q2 = build_member_history(
            session,
            member_id=world.members["张三明"],
            period=parse_period("2025-Q2", SHANGHAI),
            caller=CLI_CALLER,
            now=at("2025-07-05"),
            tz=SHANGHAI,
        )
    assert [row.title for row in q2.events] == ["四月主题党日", "五月主题党日", "六月党课", "二支部活动"]


def test_history_api_is_scoped_and_exports(
    engine: Engine, keyring: Keyring, world: World, client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    clock.now = at("2025-05-01")
    meeting(engine, world, "四月主题党日", at("2025-04-10"))
    tap(engine, keyring, world, LI_CARD, at("2025-04-10", "08:50"))
    url = f"/api/v1/members/{world.members['李四']}/history"
    mine = token(engine, keyring, org_id=world.branch_id)
    other = token(engine, keyring, org_id=world.other_branch_id)
    assert client.get(url, headers=other).json()["error"] == "member_not_found"
    body = client.get(url, headers=mine).json()
    assert [e["outcome"] for e in body["events"]] == ["absent", "present"]
    xlsx = client.get(url, params={"format": "xlsx", "period": "2025"}, headers=mine)
    path = tmp_path / "history.xlsx"
    path.write_bytes(xlsx.content)
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["概况", "参加活动", "请假", "免于参加组织生活", "组织关系", "卡片"]
    rows = list(workbook["参加活动"].iter_rows(min_row=2, values_only=True))
    # 编号 first, 1, 2 … in the section's order (#10).
    assert [(row[0], row[2], row[5]) for row in rows] == [
        (1, "三月主题党日", "缺席"),
        (2, "四月主题党日", "出席"),
    ]


def test_sheet_exports_carry_the_same_content(
    engine: Engine, keyring: Keyring, world: World, client: TestClient, clock: FakeClock, tmp_path: Path
) -> None:
    """CSV with a BOM, XLSX with one sheet per section, A4 PDF with the chair's and recorder's lines."""
    clock.now = at("2025-04-11")
    event = meeting(
        engine,
        world,
        "四月主题党日",
        at("2025-04-10"),
        chair=world.members["张三明"],
        recorder=world.members["王五"],
    )
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:50"))
    headers = token(engine, keyring, org_id=world.branch_id)
    url = f"/api/v1/events/{event}/attendance"

    raw_csv = client.get(url, params={"format": "csv"}, headers=headers).content
    assert raw_csv.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw_csv.decode("utf-8-sig"))))
    assert rows[0] == ["签到表：四月主题党日"]
    assert ["应到", "3人（正式2人，预备1人）"] in rows
    assert ["主持人", "张三明"] in rows
    present_header = rows.index(["【出席】"]) + 1
    assert rows[present_header][:6] == ["编号", "姓名", "所在组织", "类别", "身份", "签到"]
    assert rows[present_header + 1][:6] == ["1", "张三明", "第一党支部", "正式", "应到", "2025-04-10 08:50"]
    assert rows[-3] == ["主持人（张三明）（签字）：", "记录人（王五）（签字）：", "日期："]
    assert rows[-1][0] == "核验码 / verification code"  # the export's code (server.ledgers.exports)

    xlsx = client.get(url, params={"format": "xlsx"}, headers=headers)
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(xlsx.content)
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["概况", "出席", "请假", "缺席", "免于参加"]
    absent = [row[:2] for row in workbook["缺席"].iter_rows(min_row=2, values_only=True)]
    assert absent == [(1, "王五"), (2, "李四")]  # sequential 编号 (#10)
    assert workbook["缺席"].freeze_panes == "A2"

    pdf = client.get(url, params={"format": "pdf"}, headers=headers)
    pdf_path = tmp_path / "sheet.pdf"
    pdf_path.write_bytes(pdf.content)
    info = subprocess.run(
        ["pdfinfo", str(pdf_path)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "A4" in info
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True, timeout=60, check=True
    ).stdout.replace(" ", "")
    for expected in (
        "签到表：四月主题党日",
        "张三明",
        "主持人（张三明）（签字）",
        "记录人（王五）（签字）",
        "缺席（2）",
    ):
        assert expected in text, expected
