"""The sign-in sheet shows how strongly each presence was checked (核验等级), in the API, on the
web page and in the CSV, XLSX and PDF exports (issue #9, item 7).

Taps go through the real ingest pipeline: 王五's genuine card answers the issuer (发卡机构认证),
张三明 signs in with his T-Union card (卡号) and out by UID at a venue that accepts UID-only reads
(仅UID), 李四's card is bound by UID (仅UID), 赵六 is entered by hand (no level).
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine

from firmware_sim.cards import issued_card
from firmware_sim.issuer import SimIssuer
from reader_agent.cardapp import GET_UID, CardChallenger, card_facts, exchange
from schemas.messages import CardFacts, TapBatch
from server.attendance.service import record_manual_attendance
from server.caller import CLI_CALLER
from server.cards.checks import CardCheckPolicy
from server.cards.issuer import IssuerMacCheck
from server.cards.service import bind_card
from server.db import unit_of_work
from server.keyring import Keyring
from server.ledgers.render import ExportFormat, render_ledger
from server.ledgers.service import build_member_history
from server.taps.service import ingest_batch
from server.users.service import add_user
from server.venues.service import set_uid_only_reads
from server.vocabulary import UserRole
from tests.server.factories import EVENT_START, LI_CARD, SHANGHAI, ZHANG_CARD, World
from tests.server.ledgers.helpers import sheet, token

MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
WANG_NO, WANG_UID = "3104393000000042424", "5A3C9E02"
PASSWORD = "sheet-test-password-1"
LABELS = {
    "王五": "发卡机构认证",
    "张三明": "卡号；签退：仅UID",
    "李四": "仅UID",
    "赵六": "",
}


class Issuer:
    def __init__(self) -> None:
        self.issuer = SimIssuer(MASTER_KEY)

    def verify(self, check: IssuerMacCheck) -> bool:
        return self.issuer.verify(
            card_no=check.card_no,
            key_id=check.key_id,
            algorithm=check.algorithm.value,
            challenge=check.challenge,
            response=check.response,
        )


def _upload(engine: Engine, keyring: Keyring, world: World, facts: CardFacts, at: datetime) -> None:
    with unit_of_work(engine) as session:
        result = ingest_batch(
            session,
            TapBatch(envelopes=[world.keys.seal(world.payload(facts, at=at))]),
            keyring=keyring,
            received_at=at + timedelta(minutes=1),
            max_clock_skew=timedelta(minutes=10),
            card_policy=CardCheckPolicy(issuer=Issuer()),
        )
    (receipt,) = result.receipts
    assert receipt.status.value == "accepted", receipt


@pytest.fixture
def checked(engine: Engine, keyring: Keyring, world: World) -> World:
    """The event of ``world`` with a presence at each level, and one without a tap."""
    with unit_of_work(engine) as session:
        bind_card(
            session,
            keyring=keyring,
            member_id=world.members["王五"],
            card_no=WANG_NO,
            uid=WANG_UID,
            now=EVENT_START,
        )
    card = issued_card(WANG_NO, bytes.fromhex(WANG_UID), MASTER_KEY)
    card.activate()
    genuine = card_facts(
        exchange(card.process_apdu, GET_UID), card.process_apdu, CardChallenger(world.kiosk_id)
    )
    _upload(engine, keyring, world, genuine, EVENT_START)
    _upload(engine, keyring, world, ZHANG_CARD, EVENT_START + timedelta(minutes=1))
    _upload(engine, keyring, world, LI_CARD, EVENT_START + timedelta(minutes=2))
    with unit_of_work(engine) as session:
        set_uid_only_reads(session, venue_id=world.venue_id, accept=True, caller=CLI_CALLER, now=EVENT_START)
    uid_read = CardFacts(uid=ZHANG_CARD.uid, application="uid_only")
    _upload(engine, keyring, world, uid_read, EVENT_START + timedelta(minutes=60))  # 签退, by UID
    with unit_of_work(engine) as session:
        record_manual_attendance(
            session,
            event_id=world.event_id,
            member_id=world.members["赵六"],
            reason="忘带卡",
            at=None,
            caller=CLI_CALLER,
            now=EVENT_START,
        )
    return world


def test_the_sheet_carries_each_presences_level(engine: Engine, checked: World) -> None:
    rows = {p.name: p for p in sheet(engine, checked.event_id).present}
    assert {name: p.card_check_label for name, p in rows.items()} == LABELS
    assert {name: (p.card_check, p.checkout_card_check) for name, p in rows.items()} == {
        "王五": ("issuer-mac", None),
        "张三明": ("card-number", "uid"),
        "李四": ("uid", None),
        "赵六": (None, None),
    }


def test_the_api_shows_the_level(
    client: TestClient, engine: Engine, keyring: Keyring, checked: World
) -> None:
    response = client.get(f"/api/v1/events/{checked.event_id}/attendance", headers=token(engine, keyring))
    assert response.status_code == 200, response.text
    present = {p["name"]: p for p in response.json()["present"]}
    assert {name: p["card_check_label"] for name, p in present.items()} == LABELS
    assert present["张三明"]["card_check"] == "card-number"
    assert present["张三明"]["checkout_card_check"] == "uid"
    assert present["赵六"]["card_check"] is None
    assert response.json()["event"]["venue_accepts_uid_only_reads"] is True


def test_the_web_page_and_its_download_show_the_level(
    client: TestClient, engine: Engine, checked: World
) -> None:
    with unit_of_work(engine) as session:
        add_user(
            session,
            username="secretary",
            display_name="书记",
            password=PASSWORD,
            role=UserRole.SECRETARY,
            org_id=checked.branch_id,
            now=EVENT_START,
            caller=CLI_CALLER,
        )
    login = client.get("/web/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert csrf is not None
    signed_in = client.post(
        "/web/login",
        data={"username": "secretary", "password": PASSWORD, "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text

    page = client.get(f"/web/events/{checked.event_id}")
    assert page.status_code == 200
    assert "核验等级</th>" in page.text
    assert "接受仅UID读卡</span>" in page.text  # the venue's option, next to its name
    for name, label in LABELS.items():
        row = re.search(rf"<tr>\s*<td>{name}.*?</tr>", page.text, re.S)
        assert row is not None, name
        assert (label or "—") in row.group(0), (name, row.group(0))

    download = client.get(f"/web/ledgers/events/{checked.event_id}.csv")
    assert download.status_code == 200
    assert "核验等级" in download.content.decode("utf-8-sig")


def _present_table(rows: list[list[str]]) -> dict[str, str]:
    """name → 核验等级, from the 出席 section's rows (header row first)."""
    start = next(i for i, row in enumerate(rows) if "姓名" in row and "核验等级" in row)
    name, column = rows[start].index("姓名"), rows[start].index("核验等级")
    found = {}
    for row in rows[start + 1 :]:
        if len(row) <= column or not row[name] or row[name] == "姓名":
            break
        found[row[name]] = row[column]
    return found


def test_csv_and_xlsx_exports_show_the_level(engine: Engine, checked: World) -> None:
    ledger = sheet(engine, checked.event_id)
    text = render_ledger(ledger, ExportFormat.CSV).content.decode("utf-8-sig")
    assert _present_table(list(csv.reader(io.StringIO(text)))) == LABELS
    assert "党员活动室（串口签到机接受仅UID读卡）" in text

    workbook = load_workbook(io.BytesIO(render_ledger(ledger, ExportFormat.XLSX).content))
    found = None
    for worksheet in workbook.worksheets:
        cells = [["" if v is None else str(v) for v in row] for row in worksheet.iter_rows(values_only=True)]
        if any("姓名" in row and "核验等级" in row for row in cells):
            found = _present_table(cells)
            break
    assert found == LABELS


def test_the_pdf_shows_the_level(engine: Engine, checked: World, tmp_path: Path) -> None:
    path = tmp_path / "sheet.pdf"
    path.write_bytes(render_ledger(sheet(engine, checked.event_id), ExportFormat.PDF).content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "核验等级" in text
    # Rows in the order of the sheet (by 签到); each one's level, in its own column.
    lines = [line for line in text.splitlines() if line.strip()]
    for name, label in (("王五", "发卡机构认证"), ("张三明", "卡号；签退："), ("李四", "仅UID")):
        row = next(line for line in lines if name in line.split()[:2])  # after its 编号
        assert label in row, (name, row)


def test_the_member_history_shows_the_level_of_each_presence_and_card(engine: Engine, checked: World) -> None:
    with unit_of_work(engine) as session:
        history = build_member_history(
            session,
            member_id=checked.members["张三明"],
            period=None,
            caller=CLI_CALLER,
            now=EVENT_START + timedelta(days=1),
            tz=SHANGHAI,
        )
    (row,) = [r for r in history.events if r.event_id == checked.event_id]
    assert (row.card_check, row.card_check_label) == ("card-number", "卡号；签退：仅UID")
    assert [(c.verified_level, c.verified_level_label) for c in history.cards] == [("card-number", "卡号")]
    text = render_ledger(history, ExportFormat.CSV).content.decode("utf-8-sig")
    assert "卡号；签退：仅UID" in text
