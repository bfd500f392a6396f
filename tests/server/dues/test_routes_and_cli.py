"""``POST /api/v1/imports/dues`` and ``ecard admin dues import`` / ``ecard admin development`` as
a script or an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.cli import admin_app
from server.db import unit_of_work
from server.dues.routes import MAX_DUES_BYTES
from server.keyring import Keyring
from server.records.development import DevelopmentRecord
from server.records.dues import DuesMonth
from server.records.orgs import Member
from server.vocabulary import MemberCategory, TokenRole
from tests.server.conftest import TEST_SECRET, FakeClock
from tests.server.dues.conftest import NOW, Tree

URL = "/api/v1/imports/dues"
STATEMENT = (
    "交易日期,金额,户名,备注\n2026-02-10,12.00,赵六,2026年2月党费\n2026-02-10,12.00,王五,2026年2月党费\n"
)


def token(engine: Engine, keyring: Keyring, *, org_id: int | None) -> str:
    role = TokenRole.SECRETARY if org_id is not None else TokenRole.ADMIN
    with unit_of_work(engine) as session:
        return create_token(
            session, keyring=keyring, role=role, org_id=org_id, label="dues", caller=CLI_CALLER, now=NOW
        ).token


def test_a_branch_token_imports_its_own_branch_only(
    client: TestClient, engine: Engine, keyring: Keyring, clock: FakeClock, tree: Tree
) -> None:
    clock.now = NOW
    bearer = {"Authorization": f"Bearer {token(engine, keyring, org_id=tree.branch)}"}
    files = {"file": ("流水.csv", STATEMENT.encode(), "text/csv")}
    response = client.post(URL, files=files, headers=bearer, params={"format": "bank"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rows"], body["accepted_rows"], body["created"]) == (2, 1, 1)
    assert [(p["row"], p["code"]) for p in body["problems"]] == [(2, "member_unknown")]

    other = client.post(
        URL, files=files, headers=bearer, params={"format": "bank", "org_id": str(tree.second)}
    )
    assert other.status_code == 404
    assert other.json()["error"] == "organisation_not_found"

    with Session(engine) as session:
        written = session.exec(select(DuesMonth)).all()
        assert [(d.member_id, d.month, d.paid_fen) for d in written] == [
            (tree.members["王五"], "2026-02", 1200)
        ]


def test_unreadable_and_oversized_uploads(
    client: TestClient, engine: Engine, keyring: Keyring, tree: Tree
) -> None:
    bearer = {"Authorization": f"Bearer {token(engine, keyring, org_id=None)}"}
    junk = client.post(URL, files={"file": ("x.xlsx", b"PK\x03\x04junk", "application/zip")}, headers=bearer)
    assert junk.status_code == 400
    assert junk.json()["error"] == "dues_unreadable"
    huge = client.post(
        URL, files={"file": ("x.csv", b"0" * (MAX_DUES_BYTES + 1), "text/csv")}, headers=bearer
    )
    assert huge.status_code == 413
    assert huge.json()["error"] == "dues_file_too_large"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in ("ECARD_DATABASE_URL", "ECARD_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ECARD_SECRET_KEY", TEST_SECRET)
    return CliRunner()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_imports_a_statement_and_lists_rejected_rows(
    runner: CliRunner, database_url: str, tmp_path: Path, tree: Tree
) -> None:
    path = tmp_path / "流水.csv"
    path.write_bytes(STATEMENT.encode("gb18030"))
    result = runner.invoke(
        admin_app, ["dues", "import", str(path), "--org", str(tree.branch), "--db", database_url]
    )
    assert result.exit_code == 0, result.output
    assert "退回1行" in result.stdout
    assert "第2行“户名”列" in result.stdout
    assert "[member_unknown]" in result.stdout
    again = runner.invoke(
        admin_app, ["dues", "import", str(path), "--org", str(tree.branch), "--json", "--db", database_url]
    )
    assert json.loads(again.stdout)["unchanged"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_development_from_application_to_admission(
    runner: CliRunner, database_url: str, engine: Engine, tree: Tree
) -> None:
    def run(*args: str) -> dict[str, object]:
        result = runner.invoke(admin_app, ["development", *args, "--json", "--db", database_url])
        assert result.exit_code == 0, result.output
        data: dict[str, object] = json.loads(result.stdout)
        return data

    added = run("add", "--name", "陈晓", "--org", str(tree.branch), "--applied-on", "2024-03-01")
    record_id = str(added["id"])
    run("talk", record_id, "--on", "2024-03-15")
    run("stage", record_id, "activist", "--on", "2024-04-01")
    skipped = runner.invoke(
        admin_app,
        [
            "development",
            "stage",
            record_id,
            "probationary",
            "--on",
            "2025-05-01",
            "--json",
            "--db",
            database_url,
        ],
    )
    assert skipped.exit_code == 1
    assert json.loads(skipped.stdout)["error"] == "development_stage_out_of_order"
    run("stage", record_id, "candidate", "--on", "2025-04-01")
    admitted = run("stage", record_id, "probationary", "--on", "2025-07-01")
    assert admitted["stage"] == "probationary"
    with Session(engine) as session:
        entry = session.get(DevelopmentRecord, int(record_id))
        assert entry is not None
        assert entry.member_id is not None
        member = session.get(Member, entry.member_id)
        assert member is not None
        assert (member.name, member.category) == ("陈晓", MemberCategory.PROBATIONARY)
