"""``ecard admin`` and ``ecard server migrate`` as scripts use them: the documented forms with
``--json``, refusals with exit codes, and agreement with the server on the secret."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

from schemas.messages import EnrollRequest, TapBatch
from server.app import create_app
from server.audit.service import list_entries
from server.caller import UNSCOPED
from server.cli import admin_app, server_app
from server.config import ServerSettings
from server.db import make_engine
from server.migrate import head_revision
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START
from tests.server.signing import KioskKeys, card, tap_payload

CARD_NO = "3104393000000018901"
UID = "04A1B2C3D4E5F6"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A CLI environment like an operator's: a data dir holding the secret, nothing else set."""
    for name in ("ECARD_DATABASE_URL", "ECARD_SECRET_KEY", "ECARD_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def admin_json(runner: CliRunner, database_url: str, *args: str) -> dict[str, Any]:
    result = runner.invoke(admin_app, [*args, "--json", "--db", database_url])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def build_with_cli(runner: CliRunner, database_url: str) -> dict[str, dict[str, Any]]:
    """The documented forms, in the order an operator's setup script runs them."""
    made: dict[str, dict[str, Any]] = {}
    made["committee"] = admin_json(
        runner, database_url, "org", "add", "某街道党委", "--kind", "basic_committee"
    )
    made["branch"] = admin_json(
        runner,
        database_url,
        "org",
        "add",
        "第一党支部",
        "--parent",
        str(made["committee"]["id"]),
        "--kind",
        "branch",
    )
    branch = str(made["branch"]["id"])
    made["member"] = admin_json(runner, database_url, "member", "add", "张三明", "--org", branch)
    made["probationary"] = admin_json(
        runner, database_url, "member", "add", "李四", "--org", branch, "--category", "probationary"
    )
    made["card"] = admin_json(
        runner, database_url, "card", "bind", str(made["member"]["id"]), "--card-no", CARD_NO, "--uid", UID
    )
    made["venue"] = admin_json(runner, database_url, "venue", "add", "党员活动室", "--org", branch)
    made["event"] = admin_json(
        runner,
        database_url,
        "event",
        "add",
        "三月主题党日",
        "--org",
        branch,
        "--venue",
        str(made["venue"]["id"]),
        "--kind",
        "theme_day",
        "--start",
        "2025-03-01T09:00",
        "--end",
        "2025-03-01T11:00",
    )
    made["kiosk"] = admin_json(
        runner, database_url, "kiosk", "add", "一号机", "--venue", str(made["venue"]["id"])
    )
    made["token"] = admin_json(runner, database_url, "token", "create", "--role", "admin")
    return made


class TestAdminForms:
    def test_documented_forms_print_json_with_ids(self, runner: CliRunner, database_url: str) -> None:
        """Every verb prints one JSON object with the new id (and the code/token where relevant)."""
        made = build_with_cli(runner, database_url)

        assert made["committee"] == {
            "id": 1,
            "name": "某街道党委",
            "kind": "basic_committee",
            "parent_id": None,
        }
        assert made["branch"]["parent_id"] == 1
        assert made["probationary"]["category"] == "probationary"
        assert made["card"]["card_no_masked"] == "3104********8901"
        assert made["card"]["uid_masked"] == "**********E5F6"  # the tail only, as kiosks show it
        assert made["event"]["start_at"] == "2025-03-01T09:00:00+08:00"  # naive input = ECARD_TIMEZONE
        assert made["event"]["checkin_opens_at"] == "2025-03-01T08:30:00+08:00"
        assert len(made["kiosk"]["enrollment_code"]) == 14
        assert made["kiosk"]["expires_at"]
        assert made["token"]["token"].startswith("ecard_")

    def test_attendance_sheet_as_json_and_as_a_table(self, runner: CliRunner, database_url: str) -> None:
        """The sheet prints as the API's JSON, or as a table for people."""
        made = build_with_cli(runner, database_url)
        event_id = str(made["event"]["id"])
        sheet = admin_json(runner, database_url, "event", "attendance", event_id)
        assert sheet["counts"]["expected"] == 2
        assert [m["name"] for m in sheet["absent"]] == ["张三明", "李四"]

        table = runner.invoke(admin_app, ["event", "attendance", event_id, "--db", database_url])
        assert table.exit_code == 0
        assert "签到表" in table.stdout
        assert "应到 2  实到 0  请假 0  缺席 2" in table.stdout

    def test_without_json_a_short_line(self, runner: CliRunner, database_url: str) -> None:
        result = runner.invoke(
            admin_app, ["org", "add", "某党委", "--kind", "basic_committee", "--db", database_url]
        )
        assert result.exit_code == 0
        assert result.stdout.strip() == "organisation 1 added: 某党委 (basic_committee)"

    def test_raw_card_identifiers_never_printed(self, runner: CliRunner, database_url: str) -> None:
        made = build_with_cli(runner, database_url)
        result = runner.invoke(
            admin_app, ["card", "bind", str(made["member"]["id"]), "--card-no", CARD_NO, "--db", database_url]
        )
        assert CARD_NO not in result.output
        assert UID not in json.dumps(made, ensure_ascii=False)

    def test_scheduling_and_binding_are_audited_as_the_cli(
        self, runner: CliRunner, database_url: str
    ) -> None:
        """The services write the audit entries, so the CLI path is audited like the web pages."""
        made = build_with_cli(runner, database_url)
        engine = make_engine(database_url)
        try:
            with Session(engine) as session:
                found = {
                    entry.action: entry
                    for entry in list_entries(session, scope=UNSCOPED)
                    if entry.action in ("event.create", "card.bind")
                }
        finally:
            engine.dispose()
        event, card = found["event.create"], found["card.bind"]
        assert (event.actor, event.object_type, event.object_id) == ("cli", "event", str(made["event"]["id"]))
        assert event.org_id == made["branch"]["id"]
        assert json.loads(event.detail) == {"title": "三月主题党日", "kind": "theme_day"}
        assert (card.actor, card.object_type, card.object_id) == (
            "cli",
            "card_binding",
            str(made["card"]["id"]),
        )
        assert json.loads(card.detail) == {"member_id": made["member"]["id"], "card": "3104********8901"}


class TestRefusals:
    def test_refusal_with_json_is_an_error_object_and_exit_1(
        self, runner: CliRunner, database_url: str
    ) -> None:
        result = runner.invoke(
            admin_app, ["member", "add", "某人", "--org", "99", "--json", "--db", database_url]
        )
        assert result.exit_code == 1
        assert json.loads(result.stdout) == {"error": "organisation_not_found", "detail": "党组织 99 不存在"}

    def test_refusal_without_json_goes_to_stderr(self, runner: CliRunner, database_url: str) -> None:
        result = runner.invoke(admin_app, ["venue", "add", "某处", "--org", "99", "--db", database_url])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "organisation_not_found" in result.stderr

    def test_card_already_bound_to_someone_else(self, runner: CliRunner, database_url: str) -> None:
        made = build_with_cli(runner, database_url)
        other = str(made["probationary"]["id"])
        result = runner.invoke(
            admin_app, ["card", "bind", other, "--uid", UID, "--json", "--db", database_url]
        )
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"] == "card_already_bound"

    def test_bad_time_is_a_usage_error(self, runner: CliRunner, database_url: str) -> None:
        made = build_with_cli(runner, database_url)
        result = runner.invoke(
            admin_app,
            [
                "event",
                "add",
                "x",
                "--org",
                "1",
                "--venue",
                str(made["venue"]["id"]),
                "--start",
                "tomorrow",
                "--end",
                "2025-03-01T11:00",
                "--db",
                database_url,
            ],
        )
        assert result.exit_code == 2
        assert "ISO 8601" in result.output

    def test_placeholder_secret_is_a_configuration_error(
        self, runner: CliRunner, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ECARD_SECRET_KEY", "changeme")
        result = runner.invoke(admin_app, ["org", "add", "x", "--json", "--db", database_url])
        assert result.exit_code == 2
        assert json.loads(result.stdout)["error"] == "invalid_configuration"


class TestServerCommands:
    def test_migrate_reports_the_revision(self, runner: CliRunner, database_url: str) -> None:
        result = runner.invoke(server_app, ["migrate", "--json", "--db", database_url])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["revision"] == head_revision()
        assert "postgres:postgres@" not in result.stdout  # the password is hidden


def test_cli_and_server_share_the_secret(runner: CliRunner, database_url: str, tmp_path: Path) -> None:
    """A card bound by the CLI is recognised by a server started on the same data dir."""
    made = build_with_cli(runner, database_url)
    settings = ServerSettings(data_dir=tmp_path / "data", database_url=database_url)
    keys = KioskKeys()
    clock = FakeClock(EVENT_START)
    with TestClient(create_app(settings, clock=clock)) as client:
        enrolled = client.post(
            "/api/v1/kiosks/enroll",
            json=EnrollRequest(
                code=made["kiosk"]["enrollment_code"], public_key=keys.public_b64
            ).model_dump(),
        )
        assert enrolled.status_code == 200, enrolled.text
        payload = tap_payload(
            kiosk_id=enrolled.json()["kiosk_id"],
            seq=1,
            at=EVENT_START - timedelta(minutes=1),
            card_facts=card(CARD_NO, UID),
        )
        receipts = client.post(
            "/api/v1/taps", json=TapBatch(envelopes=[keys.seal(payload)]).model_dump(mode="json")
        )
    assert receipts.json()["receipts"][0]["status"] == "accepted"
    sheet = admin_json(runner, database_url, "event", "attendance", str(made["event"]["id"]))
    assert [p["name"] for p in sheet["present"]] == ["张三明"]
