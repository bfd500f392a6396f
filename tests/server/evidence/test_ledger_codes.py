"""Every exported ledger (CSV, XLSX, PDF) carries a verification code; ``ecard admin ledger
verify`` and the web page 台账 › 核验 confirm it against the records, or name what changed."""

from __future__ import annotations

import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, delete, update
from sqlmodel import col, select

from schemas.messages import TapBatch
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.ledgers.exports import read_code
from server.records.attendance import Attendance
from server.records.evidence import LedgerExport, TapEvidence
from server.records.taps import Tap
from server.users.service import add_user
from server.vocabulary import UserRole
from tests.server.conftest import FakeClock
from tests.server.evidence.conftest import Scene
from tests.server.factories import EVENT_START, STRANGER_CARD
from tests.server.ledgers.helpers import token

CODE = re.compile(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")
PASSWORD = "correct horse battery staple 42"


def export(client: TestClient, headers: dict[str, str], scene: Scene, fmt: str, tmp_path: Path) -> Path:
    response = client.get(f"/api/v1/events/{scene.world.event_id}/attendance?format={fmt}", headers=headers)
    assert response.status_code == 200, response.text
    path = tmp_path / f"sheet.{fmt}"
    path.write_bytes(response.content)
    return path


def move_li_earlier(engine: Engine, scene: Scene) -> None:
    with unit_of_work(engine) as session:
        session.exec(
            update(Attendance)
            .where(col(Attendance.id) == scene.attendance["李四"])
            .values(first_tap_at=EVENT_START - timedelta(minutes=20))
        )


@pytest.fixture
def headers(engine: Engine, keyring: Keyring) -> dict[str, str]:
    return token(engine, keyring)


class TestCodes:
    @pytest.mark.parametrize("fmt", ["csv", "xlsx", "pdf"])
    def test_an_export_verifies(
        self, fmt: str, scene: Scene, client: TestClient, headers: dict[str, str], admin: Any, tmp_path: Path
    ) -> None:
        """The code is found in the file and the ledger, built again now, matches (exit 0)."""
        path = export(client, headers, scene, fmt, tmp_path)
        code = read_code(path.read_bytes())
        assert CODE.fullmatch(code)
        exit_code, result = admin("ledger", "verify", str(path))
        assert exit_code == 0, result
        assert result["status"] == "match"
        assert result["code"] == code
        assert result["changes"] == []

    def test_the_code_is_where_people_look(
        self, scene: Scene, client: TestClient, headers: dict[str, str], tmp_path: Path
    ) -> None:
        """PDF footer text, XLSX document properties, the CSV's last line."""
        pdf = export(client, headers, scene, "pdf", tmp_path)
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        code = read_code(pdf.read_bytes())
        assert f"核验码 ecard-verify:{code}" in text
        workbook = load_workbook(export(client, headers, scene, "xlsx", tmp_path))
        assert workbook.properties.keywords.endswith(CODE.search(workbook.properties.keywords).group(0))  # type: ignore[union-attr]
        lines = (
            export(client, headers, scene, "csv", tmp_path)
            .read_text(encoding="utf-8-sig")
            .strip()
            .splitlines()
        )
        assert "ecard-verify:" in lines[-1]
        assert lines[-1].startswith("核验码")

    def test_each_export_has_its_own_code(
        self, scene: Scene, client: TestClient, headers: dict[str, str], tmp_path: Path
    ) -> None:
        first = read_code(export(client, headers, scene, "csv", tmp_path).read_bytes())
        second = read_code(export(client, headers, scene, "csv", tmp_path).read_bytes())
        assert first != second

    def test_an_edit_in_sql_is_named(
        self,
        scene: Scene,
        client: TestClient,
        headers: dict[str, str],
        admin: Any,
        engine: Engine,
        tmp_path: Path,
    ) -> None:
        """李四's 签到 moved in SQL: the check says changed (exit 1) and shows his row before and after."""
        path = export(client, headers, scene, "pdf", tmp_path)
        move_li_earlier(engine, scene)
        exit_code, result = admin("ledger", "verify", str(path))
        assert exit_code == 1
        assert result["status"] == "changed"
        rows = [change for change in result["changes"] if change["change"] == "changed"]
        assert any("李四" in map(str, c["before"]) and "李四" in map(str, c["after"]) for c in rows), result[
            "changes"
        ]
        exit_code, text = admin("ledger", "verify", str(path), as_json=False)
        assert exit_code == 1
        assert "已变化 CHANGED" in text
        assert "李四" in text

    def test_unknown_and_malformed_codes_are_refused(
        self, scene: Scene, admin: Any, tmp_path: Path, client: TestClient, headers: dict[str, str]
    ) -> None:
        exit_code, result = admin("ledger", "verify", "--code", "0000-0000-0000-0000")
        assert (exit_code, result["error"]) == (1, "export_code_not_found")
        assert "核验码不存在" in result["detail"]
        exit_code, result = admin("ledger", "verify", "--code", "12345")
        assert (exit_code, result["error"]) == (1, "invalid_export_code")
        plain = tmp_path / "plain.csv"
        plain.write_text("姓名,签到\n张三明,09:00\n", encoding="utf-8")
        exit_code, result = admin("ledger", "verify", str(plain))
        assert (exit_code, result["error"]) == (1, "export_code_missing")
        response = client.get("/api/v1/ledger-exports/0000-0000-0000-0000", headers=headers)
        assert response.status_code == 404
        assert response.json()["error"] == "export_code_not_found"

    def test_the_api_checks_a_code_within_the_callers_scope(
        self,
        scene: Scene,
        client: TestClient,
        headers: dict[str, str],
        engine: Engine,
        keyring: Keyring,
        tmp_path: Path,
    ) -> None:
        code = read_code(export(client, headers, scene, "xlsx", tmp_path).read_bytes())
        own = client.get(f"/api/v1/ledger-exports/{code.lower()}", headers=headers)
        assert own.status_code == 200
        assert own.json()["status"] == "match"
        other = token(engine, keyring, org_id=scene.world.other_branch_id)
        response = client.get(f"/api/v1/ledger-exports/{code}", headers=other)
        assert response.status_code == 404


class TestWebPage:
    def _sign_in(self, client: TestClient, engine: Engine, org_id: int, username: str) -> None:
        with unit_of_work(engine) as session:
            add_user(
                session,
                username=username,
                display_name="书记",
                password=PASSWORD,
                role=UserRole.SECRETARY,
                org_id=org_id,
                now=EVENT_START,
                caller=CLI_CALLER,
            )
        login = client.get("/web/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert csrf is not None
        signed_in = client.post(
            "/web/login",
            data={"username": username, "password": PASSWORD, "csrf_token": csrf.group(1)},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303, signed_in.text

    def test_typing_the_code(self, scene: Scene, client: TestClient, engine: Engine) -> None:
        """A secretary downloads a sheet, types its code: 一致; after an edit in SQL: 已变化 with the row."""
        self._sign_in(client, engine, scene.world.branch_id, "secretary")
        download = client.get(f"/web/ledgers/events/{scene.world.event_id}.pdf")
        assert download.status_code == 200
        code = read_code(download.content)

        page = client.get("/web/ledgers/verify", params={"code": code})
        assert page.status_code == 200
        assert 'data-status="match"' in page.text
        assert code in page.text

        move_li_earlier(engine, scene)
        page = client.get("/web/ledgers/verify", params={"code": code})
        assert page.status_code == 200
        assert 'data-status="changed"' in page.text
        assert "李四" in page.text

        page = client.get("/web/ledgers/verify", params={"code": "0000-0000-0000-0000"})
        assert page.status_code == 404
        assert 'data-code="export_code_not_found"' in page.text
        assert "核验码不存在" in page.text

    def test_another_branch_cannot_check_it(self, scene: Scene, client: TestClient, engine: Engine) -> None:
        """A code of another organisation's export looks exactly like an unknown one."""
        self._sign_in(client, engine, scene.world.branch_id, "secretary")
        code = read_code(client.get(f"/web/ledgers/events/{scene.world.event_id}.csv").content)
        client.cookies.clear()
        self._sign_in(client, engine, scene.world.other_branch_id, "other")
        page = client.get("/web/ledgers/verify", params={"code": code})
        assert page.status_code == 404
        assert 'data-code="export_code_not_found"' in page.text


def test_a_deleted_chain_head_is_named_by_the_export_that_recorded_it(
    scene: Scene,
    client: TestClient,
    headers: dict[str, str],
    clock: FakeClock,
    engine: Engine,
    admin: Any,
    tmp_path: Path,
) -> None:
    """Deleting a kiosk's last tap leaves its chain whole, but an export made before recorded that
    head: the check names the export whose anchor is gone."""
    clock.now = EVENT_START + timedelta(minutes=100)
    envelope = scene.world.keys.seal(
        scene.world.payload(STRANGER_CARD, at=EVENT_START + timedelta(minutes=99))
    )
    response = client.post("/api/v1/taps", json=TapBatch(envelopes=[envelope]).model_dump(mode="json"))
    assert response.status_code == 200
    export(client, headers, scene, "csv", tmp_path)
    with unit_of_work(engine) as session:
        last = session.exec(select(Tap.id).order_by(col(Tap.id).desc())).first()
        export_id = session.exec(select(LedgerExport.id)).one()
        session.exec(delete(TapEvidence).where(col(TapEvidence.tap_id) == last))
        session.exec(delete(Tap).where(col(Tap.id) == last))
    exit_code, report = admin("audit", "verify")
    assert exit_code == 1
    assert {(p["table"], p["row_id"], p["code"]) for p in report["problems"]} == {
        ("ledger_export", str(export_id), "anchor_lost")
    }
